"""Every value type survives the JSON and the protobuf encodings exactly (NaN, bytes, UTC times, nulls)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provender.definitions import ValueType
from provender.errors import DataError
from provender.wire import codec
from provender.wire._proto import serving_pb2 as pb
from tests.support.online import same

_SCALARS: dict[ValueType, st.SearchStrategy[Any]] = {
    ValueType.BOOL: st.booleans(),
    ValueType.INT32: st.integers(-(2**31), 2**31 - 1),
    ValueType.INT64: st.integers(-(2**63), 2**63 - 1),
    ValueType.FLOAT: st.floats(width=32).map(float),
    ValueType.DOUBLE: st.floats(),
    ValueType.STRING: st.text(),
    ValueType.BYTES: st.binary(),
    ValueType.UNIX_TIMESTAMP: st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
}


def values_of(value_type: ValueType) -> st.SearchStrategy[Any]:
    if value_type.is_list:
        return st.none() | st.lists(st.none() | _SCALARS[value_type.element], max_size=4)
    return st.none() | _SCALARS[value_type]


columns = st.sampled_from(list(ValueType)).flatmap(
    lambda value_type: st.tuples(st.just(value_type), st.lists(values_of(value_type), max_size=6))
)


@settings(max_examples=150, deadline=None)
@given(column=columns)
def test_json_round_trip(column: tuple[ValueType, list[object]]) -> None:
    value_type, values = column
    encoded = {"c": list(values)}
    if value_type in codec.FLOAT_TYPES:
        codec.name_non_finite(encoded, ["c"])
    wire = orjson.loads(orjson.dumps(encoded, default=codec.json_default))["c"]
    back = [codec.from_json_value(value, value_type) for value in wire]
    assert same(back, values)


@settings(max_examples=150, deadline=None)
@given(column=columns)
def test_protobuf_round_trip(column: tuple[ValueType, list[object]]) -> None:
    value_type, values = column
    message = pb.Column(name="c")
    codec.fill_column(message, values, value_type)
    back = codec.read_column(pb.Column.FromString(message.SerializeToString()))
    assert same(back, values)


def test_non_finite_floats_have_names_in_json() -> None:
    columns: dict[str, list[object]] = {"c": [math.nan, math.inf, -math.inf, 1.0, None], "l": [[math.nan, None]]}
    codec.name_non_finite(columns, ["c", "l"])
    assert columns == {"c": ["NaN", "Infinity", "-Infinity", 1.0, None], "l": [["NaN", None]]}


def test_entity_columns_are_typed_from_their_python_values() -> None:
    assert codec.infer_value_type("a", [None, 1, 2]) is ValueType.INT64
    assert codec.infer_value_type("a", [True]) is ValueType.BOOL
    assert codec.infer_value_type("a", [b"x"]) is ValueType.BYTES
    assert codec.infer_value_type("a", [None]) is ValueType.INT64
    with pytest.raises(DataError, match="mixes"):
        codec.infer_value_type("a", [1, "x"])
    with pytest.raises(DataError, match="cannot be sent"):
        codec.infer_value_type("a", [object()])


def test_bad_base64_and_times_are_data_errors() -> None:
    with pytest.raises(DataError, match="base64"):
        codec.decode_base64("!!")
    with pytest.raises(DataError, match="RFC 3339"):
        codec.from_json_value("yesterday", ValueType.UNIX_TIMESTAMP)
