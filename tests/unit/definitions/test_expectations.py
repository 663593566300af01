"""Expectations in definitions: checked when the feature or table is built, stored by the codec."""

from __future__ import annotations

import json

import pytest

import provender as pv
from provender.registry import codec
from tests.unit.definitions.expect import definition_error

FLOAT, STRING, INT64 = pv.ValueType.FLOAT, pv.ValueType.STRING, pv.ValueType.INT64
SOURCE = pv.FileSource(path="data/", event_timestamp_column="ts")


def _table(**changes: object) -> pv.FeatureTable:
    values: dict[str, object] = {
        "name": "driver_statistics",
        "entities": ["driver_id"],
        "features": [
            pv.Feature("conv_rate", FLOAT, expect=[pv.expect.not_null(), pv.expect.between(0, 1)]),
            pv.Feature("city", STRING, expect=[pv.expect.one_of(["paris", "lyon"]), pv.expect.matches("[a-z]+")]),
            pv.Feature("trips", INT64, expect=[pv.expect.between(min=0), pv.expect.max_null_fraction(0.1)]),
        ],
        "batch_source": SOURCE,
        "expect": [pv.expect.row_count_between(1, 1000)],
        "validation_policy": "skip",
    }
    return pv.FeatureTable(**(values | changes))  # type: ignore[arg-type]


def test_declared_expectations_are_kept() -> None:
    table = _table()
    assert table.features[0].expect == (pv.expect.not_null(), pv.expect.between(0, 1))
    assert table.expect == (pv.expect.row_count_between(1, 1000),)
    assert table.validation_policy == "skip"
    assert [e.describe() for e in table.features[1].expect] == ["one_of('paris', 'lyon')", "matches('[a-z]+')"]


@pytest.mark.parametrize(
    ("value_type", "expectation", "problem"),
    [
        (FLOAT, pv.expect.between(1, 0), r"min \(1\) is greater than max \(0\)"),
        (FLOAT, pv.expect.between(), "needs a min or a max"),
        (FLOAT, pv.expect.between(float("nan"), 1), "min must be a number"),
        (STRING, pv.expect.between(0, 1), "between applies to numbers"),
        (STRING, pv.expect.matches("(unclosed"), r"'\(unclosed' is not a valid regular expression"),
        (STRING, pv.expect.matches("(?=lookahead)"), "is not a valid regular expression"),
        (INT64, pv.expect.matches("a"), "matches applies to STRING"),
        (INT64, pv.expect.one_of([1, "2"]), "'2' is not a INT64 value"),
        (STRING, pv.expect.one_of([]), "needs at least one value"),
        (FLOAT, pv.expect.one_of([1.0]), "one_of applies to"),
        (FLOAT, pv.expect.max_null_fraction(1.5), r"fraction must be a number in \[0, 1\]"),
        (FLOAT, pv.expect.row_count_between(1), "row_count_between is a feature table's expectation"),
        (FLOAT, "not_null", "is not an expectation"),
    ],
)
def test_bad_feature_expectations_name_the_feature(value_type: pv.ValueType, expectation: object, problem: str) -> None:
    with definition_error("Feature 'conv_rate'", "expect") as info:
        pv.Feature("conv_rate", value_type, expect=[expectation])  # type: ignore[list-item]
    assert info.match(problem)


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"expect": [pv.expect.row_count_between(5, 1)]}, "expect", r"min \(5\) is greater than max \(1\)"),
        ({"expect": [pv.expect.row_count_between(-1)]}, "expect", "non-negative integer"),
        ({"expect": [pv.expect.not_null()]}, "expect", "declare value expectations on the Feature"),
        ({"validation_policy": "ignore"}, "validation_policy", r"'ignore' is not one of \['fail', 'skip', 'warn'\]"),
    ],
)
def test_bad_table_expectations_name_the_table(changes: dict[str, object], field: str, problem: str) -> None:
    with definition_error("FeatureTable 'driver_statistics'", field) as info:
        _table(**changes)
    assert info.match(problem)


def test_codec_round_trip() -> None:
    table = _table()
    data = codec.to_dict(table)
    assert data["format_version"] == 2
    assert codec.from_json(codec.to_json(table)) == table
    spec = data["spec"]
    assert isinstance(spec, dict)
    assert spec["features"][0]["expect"] == [{"type": "not_null"}, {"type": "between", "min": 0, "max": 1}]
    assert spec["expect"] == [{"type": "row_count_between", "min": 1, "max": 1000}]


def test_a_version_1_record_still_loads() -> None:
    """A record written before expectations existed (format_version 1) reads as no expectations, policy fail."""
    text = json.dumps(
        {
            "format_version": 1,
            "kind": "feature_table",
            "spec": {
                "name": "driver_statistics",
                "entities": ["driver_id"],
                "features": [{"name": "conv_rate", "value_type": "FLOAT", "description": ""}],
                "batch_source": codec.to_dict(_table())["spec"]["batch_source"],  # type: ignore[index]
                "stream_source": None,
                "max_age_us": None,
                "labels": {},
            },
        }
    )
    table = codec.from_json(text)
    assert isinstance(table, pv.FeatureTable)
    assert table.features[0].expect == ()
    assert (table.expect, table.validation_policy) == ((), "fail")


def test_a_stored_bad_expectation_is_a_clear_error() -> None:
    data = codec.to_dict(_table())
    data["spec"]["features"][0]["expect"] = [{"type": "sometimes"}]  # type: ignore[index]
    with pytest.raises(pv.DefinitionError, match="feature 'conv_rate': unknown expectation type 'sometimes'"):
        codec.from_dict(data)


def test_pickled_tables_keep_their_expectations() -> None:
    import pickle

    table = _table()
    assert pickle.loads(pickle.dumps(table)) == table
