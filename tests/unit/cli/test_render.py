"""How the command line writes values, durations and counts for people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from provender.cli.render import format_duration, format_value, plural


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(days=1), "1d"),
        (timedelta(hours=24), "1d"),
        (timedelta(hours=36), "1d12h"),
        (timedelta(hours=2), "2h"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(seconds=45), "45s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(0), "0s"),
        (timedelta(days=7, seconds=1), "7d1s"),
    ],
)
def test_durations_read_like_people_write_them(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text
    assert "day," not in format_duration(duration)


def test_float32_values_print_short_and_read_back_exactly() -> None:
    stored = float(np.float32(0.4626))  # what a FLOAT feature comes back as: 0.46260005235671997
    assert format_value(stored) == "0.4626"
    assert np.float32(format_value(stored)) == np.float32(stored)
    assert format_value(float(np.float32(0.46260005))) == "0.46260005"


def test_double_values_keep_every_digit_they_need() -> None:
    assert format_value(0.1) == "0.1"
    assert format_value(1 / 3) == repr(1 / 3)
    assert float(format_value(1 / 3)) == 1 / 3
    assert format_value(float("nan")) == "nan"
    assert format_value(1e300) == "1e+300"


def test_other_values() -> None:
    assert format_value([float(np.float32(0.1)), None]) == "[0.1, null]"
    assert format_value(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00+00:00"
    assert format_value(b"\x00") == "b'\\x00'"
    assert format_value(7) == "7"
    assert format_value(True) == "True"


@pytest.mark.parametrize(("count", "text"), [(0, "0 rows"), (1, "1 row"), (2, "2 rows"), (1680, "1,680 rows")])
def test_plural(count: int, text: str) -> None:
    assert plural(count, "row") == text
