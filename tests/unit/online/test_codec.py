"""Packed rows: version bytes order like (event, created), batches keep the newest row per key."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import provender as pv
from provender.online.codec import (
    HEADER_BYTES,
    codec_for,
    encode_batch,
    pack_version,
    to_datetime,
    unpack_version,
)
from tests.support.online import DRIVER_STATS, SOURCE, at, batch

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
