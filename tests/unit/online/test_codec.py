"""Packed rows: version bytes order like (event, created), batches keep the newest row per key."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import provender as pv
from provender.definitions.request import CREATED_TIMESTAMP
from provender.online.codec import (
    HEADER_BYTES,
    codec_for,
    encode_batch,
    pack_version,
    to_datetime,
    unpack_version,
)
from tests.support.online import ALL_TYPES_TABLE, DRIVER_STATS, SOURCE, at, batch

MICROS = st.integers(-(2**62), 2**62)


@given(a=st.tuples(MICROS, st.none() | MICROS), b=st.tuples(MICROS, st.none() | MICROS))
def test_version_bytes_order_like_event_then_created_with_missing_lowest(
    a: tuple[int, int | None], b: tuple[int, int | None]
) -> None:
    def rank(v: tuple[int, int | None]) -> tuple[int, int, int]:
        return (v[0], 0 if v[1] is None else 1, v[1] or 0)

    assert (pack_version(*a) < pack_version(*b)) == (rank(a) < rank(b))
    assert unpack_version(pack_version(*a)) == a


def test_encode_batch_keeps_the_newest_row_per_key_in_first_seen_order() -> None:
    rows = [
        {"driver_id": 2, "trips": 1, "event_timestamp": at(1)},
        {"driver_id": 1, "trips": 2, "event_timestamp": at(5)},
        {"driver_id": 2, "trips": 3, "event_timestamp": at(3)},
    ]
    encoded = encode_batch(DRIVER_STATS, batch(DRIVER_STATS, rows))
    assert encoded.keys == [b"driver_id=i:2", b"driver_id=i:1"]
    decode = codec_for(DRIVER_STATS).decode
    decoded = [decode(row) for row in encoded.rows]
    assert [row.values[2] for row in decoded if row] == [3, 2]
    assert encoded.event_us == [int(at(3).timestamp() * 1e6), int(at(5).timestamp() * 1e6)]


def test_a_row_of_another_schema_decodes_as_missing() -> None:
    packed = encode_batch(DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": 1, "trips": 1}])).rows[0]
    retyped = pv.FeatureTable(
        name=DRIVER_STATS.name,
        entities=["driver_id"],
        features=[pv.Feature(f.name, pv.ValueType.STRING) for f in DRIVER_STATS.features],
        batch_source=SOURCE,
    )
    assert codec_for(DRIVER_STATS).decode(packed) is not None
    assert codec_for(retyped).decode(packed) is None
    assert codec_for(DRIVER_STATS).decode(None) is None


def test_packed_rows_are_small() -> None:
    packed = encode_batch(
        DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": 1, "conv_rate": 0.5, "acc_rate": 0.25, "trips": 12}])
    ).rows[0]
    assert len(packed) <= HEADER_BYTES + 20


def test_to_datetime_is_exact_and_utc() -> None:
    assert to_datetime(1) == at(0).replace(year=1970, month=1, day=1, microsecond=1)
    assert to_datetime(-1).isoformat() == "1969-12-31T23:59:59.999999+00:00"


# -- fixed-width features are packed with numpy: the same bytes as msgpack's packer --------------

FIXED = pv.FeatureTable(
    name="fixed",
    entities=["driver_id"],
    features=[
        pv.Feature("b", pv.ValueType.BOOL),
        pv.Feature("i32", pv.ValueType.INT32),
        pv.Feature("i64", pv.ValueType.INT64),
        pv.Feature("f", pv.ValueType.FLOAT),
        pv.Feature("d", pv.ValueType.DOUBLE),
        pv.Feature("ts", pv.ValueType.UNIX_TIMESTAMP),
        pv.Feature("empty", pv.ValueType.INT64),
    ],
    batch_source=SOURCE,
)
EDGES = [0, 1, -1, 31, 32, -32, -33, 127, 128, -128, -129, 255, 256, -(2**15), -(2**15) - 1, 2**16 - 1, 2**16]
EDGES += [2**31 - 1, -(2**31), -(2**31) - 1, 2**32 - 1, 2**32, 2**63 - 1, -(2**63)]
INT64S = st.sampled_from(EDGES) | st.integers(-(2**63), 2**63 - 1)
INT32S = st.sampled_from([e for e in EDGES if -(2**31) <= e < 2**31]) | st.integers(-(2**31), 2**31 - 1)
FIXED_ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "b": st.none() | st.booleans(),
            "i32": st.none() | INT32S,
            "i64": st.none() | INT64S,
            "f": st.none() | st.floats(width=32),
            "d": st.none() | st.floats(),
            "ts": st.none() | st.datetimes(timezones=st.just(UTC)),
            "created": st.none() | st.integers(0, 10**6),
        }
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(rows=FIXED_ROWS)
def test_fixed_width_rows_packed_with_numpy_equal_msgpack_packing(rows: list[dict[str, Any]]) -> None:
    values = [
        r
        | {
            "driver_id": n,
            "event_timestamp": at(n),
            CREATED_TIMESTAMP: None if r["created"] is None else at(r["created"]),
        }
        for n, r in enumerate(rows)
    ]
    arrow = batch(FIXED, values)
    codec = codec_for(FIXED)
    assert codec.packs_columns
    fast = encode_batch(FIXED, arrow)
    codec.packs_columns = False
    try:
        slow = encode_batch(FIXED, arrow)
    finally:
        codec.packs_columns = True
    assert fast == slow
    assert [codec.decode(row).values[1] for row in fast.rows] == [r["i32"] for r in rows]  # type: ignore[union-attr]


def test_tables_with_other_features_are_packed_by_msgpack() -> None:
    assert not codec_for(ALL_TYPES_TABLE).packs_columns
    assert codec_for(DRIVER_STATS).packs_columns
