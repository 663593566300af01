"""pv.OnDemandFeatures: validation, the function's import path, the registry codec."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import provender as pv
from provender.definitions import Feature, OnDemandFeatures, ValueType
from provender.errors import DefinitionError
from provender.registry import codec
from tests.support import on_demand_functions

PATH = "tests.support.on_demand_functions:ratios"


def odf(**changes: object) -> OnDemandFeatures:
    values: dict[str, object] = {
        "name": "ratios",
        "inputs": ["stats:trips"],
        "request_schema": {"amount": ValueType.DOUBLE},
        "features": [Feature("per_trip", ValueType.DOUBLE)],
        "function": PATH,
    }
    return OnDemandFeatures(**(values | changes))  # type: ignore[arg-type]


@contextmanager
def definition_error(field: str, text: str) -> Iterator[None]:
    with pytest.raises(DefinitionError, match=re.escape(text)) as info:
        yield
    assert info.value.obj == "OnDemandFeatures 'ratios'"
    assert info.value.field == field


def test_exported_and_normalized() -> None:
    made = odf(inputs=("stats:trips", "stats:conv_rate"), request_schema={"amount": "DOUBLE"})
    assert pv.OnDemandFeatures is OnDemandFeatures
    assert made.inputs == ("stats:trips", "stats:conv_rate")
    assert made.input_columns == ("stats__trips", "stats__conv_rate")
    assert dict(made.request_schema) == {"amount": ValueType.DOUBLE}
    assert made.feature_names == ("per_trip",)
    assert made.output_column("per_trip") == "ratios__per_trip"
    assert (made.mode, made.function_version, made.function_digest) == ("pandas", None, None)


def test_a_function_is_stored_as_its_import_path() -> None:
    assert odf(function=on_demand_functions.ratios).function == PATH


def nested() -> object:
    def inner(frame: object) -> object:
        return frame

    return inner


@pytest.mark.parametrize(
    ("function", "text"),
    [
        ("tests.support.on_demand_functions.ratios", "is not an import path like 'package.module:function'"),
        ("tests support:ratios", "is not an import path"),
        ("tests.support:", "is not an import path"),
        (lambda frame: frame, "cannot be imported by path by another process"),
        (nested(), "cannot be imported by path by another process"),
        (42, "must be an import path or a function, got int"),
    ],
)
def test_a_function_that_no_other_process_could_import_is_refused(function: object, text: str) -> None:
    with definition_error("function", text):
        odf(function=function)


def test_a_function_defined_in_a_definition_file_is_refused() -> None:
    def ratios(frame: object) -> object:
        return frame

    ratios.__module__, ratios.__qualname__ = "_provender_definitions_0_features", "ratios"
    with definition_error("function", "is defined in a definition file"):
        odf(function=ratios)


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"name": "bad name"}, "name", "is not an identifier"),
        ({"inputs": "stats:trips"}, "inputs", "must be a list of feature refs"),
        ({"inputs": ["stats"]}, "inputs", "is a bare table ref"),
        ({"inputs": ["stats:trips:x"]}, "inputs", "expected '<table>:<feature>'"),
        ({"inputs": ["stats:trips", "stats:trips"]}, "inputs", "lists a ref twice"),
        ({"inputs": [], "request_schema": {}}, "inputs", "has no inputs and no request_schema"),
        ({"request_schema": {"amount": "MONEY"}}, "request_schema", "field 'amount': 'MONEY' is not a ValueType"),
        ({"request_schema": {"a__b": "DOUBLE"}}, "request_schema", "contains '__'"),
        ({"features": []}, "features", "lists no features"),
        ({"features": [Feature("x", ValueType.DOUBLE)] * 2}, "features", "feature name 'x' appears twice"),
        (
            {"features": [Feature("x", ValueType.DOUBLE, expect=[pv.expect.not_null()])]},
            "features",
            "expectations are not supported",
        ),
        ({"mode": "spark"}, "mode", "'spark' is not one of ['pandas', 'python']"),
        ({"function_digest": 3}, "function_digest", "must be a string or None"),
    ],
)
def test_invalid_definitions_name_the_field(changes: dict[str, object], field: str, text: str) -> None:
    obj = f"OnDemandFeatures {changes.get('name', 'ratios')!r}"
    with pytest.raises(DefinitionError, match=re.escape(text)) as info:
        odf(**changes)
    assert (info.value.obj, info.value.field) == (obj, field)


def test_request_only_features_are_fine() -> None:
    assert odf(inputs=[]).inputs == ()


def test_codec_round_trip_is_version_5() -> None:
    made = odf(mode="python", function_version="acme==1.2", function_digest="abc", labels={"team": "x"})
    data = codec.to_dict(made)
    assert (data["format_version"], data["kind"]) == (5, "on_demand_features")
    assert codec.from_json(codec.to_json(made)) == made
    assert codec.FORMAT_VERSION >= 5


def test_a_malformed_record_names_the_kind() -> None:
    data = json.loads(codec.to_json(odf()))
    del data["spec"]["function"]
    with pytest.raises(DefinitionError, match="registry record on_demand_features"):
        codec.from_dict(data)
