"""``provender ingest --start/--end``: ISO-8601 times, ``now`` and ``now-<N><unit>`` (scheduled windows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest

from provender.cli.ingest import parse_time


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("now", timedelta(0)),
        ("now-2h", timedelta(hours=2)),
        ("NOW - 30m", timedelta(minutes=30)),
        ("now-1d", timedelta(days=1)),
        ("now-45s", timedelta(seconds=45)),
    ],
)
def test_relative_times_count_back_from_now(text: str, ago: timedelta) -> None:
    before = datetime.now(UTC)
    parsed = parse_time(text)
    after = datetime.now(UTC)
    assert before - ago <= parsed <= after - ago


def test_iso_times_without_zone_are_utc() -> None:
    assert parse_time("2026-11-20T12:00") == datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.mark.parametrize("text", ["now-2w", "now+2h", "yesterday", "now-h"])
def test_other_text_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(click.BadParameter, match="now-2h"):
        parse_time(text)
