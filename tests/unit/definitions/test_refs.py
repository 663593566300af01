"""FeatureRef: "<table>:<feature>" or a bare "<table>", parsed once at the edge."""

from __future__ import annotations

import dataclasses

import pytest

from provender.definitions import FeatureRef
from provender.errors import FeatureRefError, ProvenderError


def test_parse_table_and_feature() -> None:
    ref = FeatureRef.parse("driver_statistics:conv_rate")
    assert ref == FeatureRef(table="driver_statistics", feature="conv_rate")
    assert ref.column == "driver_statistics__conv_rate"
    assert str(ref) == "driver_statistics:conv_rate"


def test_parse_bare_table_means_all_features() -> None:
    ref = FeatureRef.parse("driver_statistics")
    assert ref.table == "driver_statistics"
    assert ref.feature is None
    assert str(ref) == "driver_statistics"


def test_bare_table_ref_has_no_single_column() -> None:
    with pytest.raises(FeatureRefError, match="bare table ref"):
        _ = FeatureRef.parse("driver_statistics").column


@pytest.mark.parametrize("text", ["a:b", "t", "driver_statistics:avg_daily_trips"])
def test_str_round_trips(text: str) -> None:
    assert str(FeatureRef.parse(text)) == text
    assert FeatureRef.parse(str(FeatureRef.parse(text))) == FeatureRef.parse(text)


@pytest.mark.parametrize("text", ["a:b:c", "", ":f", "t:", ":", "::", " t:f", "t:f ", "t: f", "t :f"])
def test_malformed_refs_are_refused(text: str) -> None:
    with pytest.raises(FeatureRefError) as excinfo:
        FeatureRef.parse(text)
    assert excinfo.value.ref == text
    assert repr(text) in str(excinfo.value)
    assert "'<table>:<feature>'" in str(excinfo.value)


@pytest.mark.parametrize("value", [None, 5, b"t:f", ("t", "f")])
def test_non_string_refs_are_refused(value: object) -> None:
    with pytest.raises(FeatureRefError, match="must be a string"):
        FeatureRef.parse(value)  # type: ignore[arg-type]


def test_feature_ref_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        FeatureRef.parse("a:b:c")
    assert issubclass(FeatureRefError, ProvenderError)


def test_feature_ref_is_frozen() -> None:
    ref = FeatureRef.parse("t:f")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.table = "other"  # type: ignore[misc]
    assert ref.table == "t"
