"""ValueType: every type of DESIGN.md exists, with its list form, element type and Arrow type."""

from __future__ import annotations

import pyarrow as pa
import pytest

from provender.definitions import ValueType
from provender.definitions.types import ENTITY_KEY_TYPES

SCALAR_ARROW = {
    "BOOL": pa.bool_(),
    "INT32": pa.int32(),
    "INT64": pa.int64(),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "STRING": pa.string(),
    "BYTES": pa.binary(),
    "UNIX_TIMESTAMP": pa.timestamp("us", tz="UTC"),
}
# Named in DESIGN.md explicitly; the "…" there means every scalar has a list form.
DESIGN_LISTS = ["INT64_LIST", "FLOAT_LIST", "DOUBLE_LIST", "STRING_LIST"]


def test_value_types_are_exactly_the_scalars_and_their_lists() -> None:
    expected = set(SCALAR_ARROW) | {f"{name}_LIST" for name in SCALAR_ARROW}
    assert {t.name for t in ValueType} == expected
    assert set(DESIGN_LISTS) <= expected


@pytest.mark.parametrize("name", list(SCALAR_ARROW))
def test_scalar_type(name: str) -> None:
    value_type = ValueType[name]
    assert value_type.value == name
    assert ValueType(name) is value_type
    assert not value_type.is_list
    assert value_type.element is value_type
    assert value_type.to_arrow() == SCALAR_ARROW[name]


@pytest.mark.parametrize("name", list(SCALAR_ARROW))
def test_list_type(name: str) -> None:
    value_type = ValueType[f"{name}_LIST"]
    assert value_type.is_list
    assert value_type.element is ValueType[name]
    assert value_type.to_arrow() == pa.list_(SCALAR_ARROW[name])


def test_timestamps_are_utc_microseconds() -> None:
    arrow_type = ValueType.UNIX_TIMESTAMP.to_arrow()
    assert pa.types.is_timestamp(arrow_type)
    assert arrow_type.unit == "us"
    assert arrow_type.tz == "UTC"


def test_value_type_is_a_string_enum() -> None:
    assert ValueType.INT64 == "INT64"
    assert f"{ValueType.FLOAT_LIST}" == "FLOAT_LIST"


@pytest.mark.parametrize("bad", ["INT", "int64", "LIST", ""])
def test_unknown_value_type_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a valid ValueType"):
        ValueType(bad)


def test_entity_key_types() -> None:
    assert {
        ValueType.INT32,
        ValueType.INT64,
        ValueType.STRING,
        ValueType.BYTES,
        ValueType.BOOL,
    } == ENTITY_KEY_TYPES
