"""Entity-key encoding: deterministic, typed, injective, and the same from Python and Arrow."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provender import DataError, ValueType
from provender.online.keys import KeyEncoder, decode_key, encode_arrow_keys

KEY_VALUES: dict[ValueType, st.SearchStrategy[Any]] = {
    ValueType.INT32: st.integers(-(2**31), 2**31 - 1),
    ValueType.INT64: st.integers(-(2**63), 2**63 - 1),
    ValueType.STRING: st.text(),
    ValueType.BYTES: st.binary(),
    ValueType.BOOL: st.booleans(),
}
NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def entity_sets(draw: st.DrawFn) -> list[tuple[str, ValueType]]:
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    return [(name, draw(st.sampled_from(sorted(KEY_VALUES)))) for name in names]


@st.composite
def keyed_rows(draw: st.DrawFn) -> tuple[list[tuple[str, ValueType]], list[dict[str, Any]]]:
    entities = draw(entity_sets())
    rows = draw(
        st.lists(st.fixed_dictionaries({name: KEY_VALUES[vt] for name, vt in entities}), min_size=1, max_size=10)
    )
    return entities, rows


@settings(max_examples=200)
@given(case=keyed_rows())
def test_keys_round_trip(case: tuple[list[tuple[str, ValueType]], list[dict[str, Any]]]) -> None:
    entities, rows = case
    encoded = KeyEncoder(entities).encode_rows(rows)
    assert [decode_key(key) for key in encoded] == rows


@settings(max_examples=200)
@given(case=keyed_rows())
def test_distinct_keys_never_collide(case: tuple[list[tuple[str, ValueType]], list[dict[str, Any]]]) -> None:
    entities, rows = case
    encoded = KeyEncoder(entities).encode_rows(rows)
    distinct_rows = {tuple(sorted(row.items())) for row in rows}
    assert len(set(encoded)) == len(distinct_rows)


@settings(max_examples=200)
@given(case=keyed_rows())
def test_arrow_and_python_encodings_agree(case: tuple[list[tuple[str, ValueType]], list[dict[str, Any]]]) -> None:
    entities, rows = case
    table = pa.table({name: pa.array([row[name] for row in rows], vt.to_arrow()) for name, vt in entities})
    assert encode_arrow_keys(table, [name for name, _ in entities]) == KeyEncoder(entities).encode_rows(rows)


def test_encoding_is_readable_sorted_by_entity_name_and_order_independent() -> None:
    a = KeyEncoder([("driver_id", ValueType.INT64), ("customer_id", ValueType.INT64)])
    b = KeyEncoder([("customer_id", ValueType.INT64), ("driver_id", ValueType.INT64)])
    row = {"driver_id": 1001, "customer_id": 7}
    assert a.encode_rows([row]) == b.encode_rows([row]) == [b"customer_id=i:7,driver_id=i:1001"]


def test_keys_are_typed() -> None:
    as_int = KeyEncoder([("id", ValueType.INT64)]).encode_rows([{"id": 1001}])
    as_str = KeyEncoder([("id", ValueType.STRING)]).encode_rows([{"id": "1001"}])
    as_int32 = KeyEncoder([("id", ValueType.INT32)]).encode_rows([{"id": 1001}])
    assert as_int != as_str
    assert as_int == as_int32  # an entity's type is fixed; integer widths share one encoding


def test_string_values_with_separators_are_safe() -> None:
    encoder = KeyEncoder([("a", ValueType.STRING), ("b", ValueType.STRING)])
    one, two = encoder.encode_rows([{"a": "x,b=s1:y", "b": "z"}, {"a": "x", "b": "y,b=s1:z"}])
    assert one != two
    assert decode_key(one) == {"a": "x,b=s1:y", "b": "z"}


def test_numpy_integers_are_accepted() -> None:
    encoder = KeyEncoder([("id", ValueType.INT64)])
    assert encoder.encode_rows([{"id": np.int64(5)}, {"id": np.int32(6)}]) == [b"id=i:5", b"id=i:6"]


@pytest.mark.parametrize(
    ("value_type", "value", "message"),
    [
        (ValueType.INT64, "abc", r"entity_rows\[1\]\['id'\] is 'abc' \(str\), not a valid INT64 key; pass an int\."),
        (ValueType.INT64, 1.0, r"is 1\.0 \(float\), not a valid INT64 key"),
        (ValueType.INT64, True, r"is True \(bool\), not a valid INT64 key"),
        (ValueType.INT64, 2**63, r"not a valid INT64 key; pass an int in range"),
        (ValueType.INT32, 2**31, r"not a valid INT32 key; pass an int in range"),
        (ValueType.STRING, 5, r"is 5 \(int\), not a valid STRING key; pass a str"),
        (ValueType.BYTES, "x", r"not a valid BYTES key; pass bytes"),
        (ValueType.BOOL, 1, r"not a valid BOOL key; pass a bool"),
        (ValueType.INT64, None, r"is None \(NoneType\)"),
    ],
)
def test_a_value_of_the_wrong_type_names_row_and_column(value_type: ValueType, value: object, message: str) -> None:
    good = {ValueType.INT64: 1, ValueType.INT32: 1, ValueType.STRING: "a", ValueType.BYTES: b"a", ValueType.BOOL: True}
    encoder = KeyEncoder([("id", value_type)])
    with pytest.raises(DataError, match=message):
        encoder.encode_rows([{"id": good[value_type]}, {"id": value}])


def test_a_missing_entity_column_names_row_and_column() -> None:
    encoder = KeyEncoder([("driver_id", ValueType.INT64), ("customer_id", ValueType.INT64)])
    with pytest.raises(
        DataError, match=r"entity_rows\[1\] lacks the entity column 'customer_id'; it has \['driver_id'\]"
    ):
        encoder.encode_rows([{"driver_id": 1, "customer_id": 2}, {"driver_id": 1}])


def test_a_row_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(DataError, match=r"entity_rows\[0\] is a list, not a mapping"):
        KeyEncoder([("id", ValueType.INT64)]).encode_rows([[1]])  # type: ignore[list-item]


def test_arrow_keys_refuse_nulls_and_unkeyable_types() -> None:
    with pytest.raises(DataError, match="null in 1 row"):
        encode_arrow_keys(pa.table({"id": pa.array([1, None])}), ["id"])
    with pytest.raises(DataError, match="cannot be an entity key"):
        encode_arrow_keys(pa.table({"id": pa.array([1.5])}), ["id"])
    with pytest.raises(DataError, match="lack the entity column 'id'"):
        encode_arrow_keys(pa.table({"x": pa.array([1])}), ["id"])


@pytest.mark.parametrize("bad", [b"id", b"id=q:1", b"id=i:1,", b"id=s5:abc", b"id=b:2", b"id=i1"])
def test_decoding_garbage_is_an_error(bad: bytes) -> None:
    with pytest.raises(DataError, match="not an encoded entity key"):
        decode_key(bad)
