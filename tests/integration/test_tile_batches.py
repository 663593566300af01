"""Micro-batches folded per (key, tile) (``online/tile_writer.py``) on the in-memory, SQLite and Redis stores.

Several records of one key in a batch, out of order within it, spanning tile boundaries, too
late against an earlier record of the same batch, replayed, and Redis's appended states (read
as their merge, compacted after ``MAX_APPENDED_STATES``): reads at many times must equal the
brute-force oracle over the accepted events, and the reports must count what the record-by-record
semantics count.
"""

from __future__ import annotations

import itertools
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import provender as pv
from provender.online import tiles
from provender.online.keys import encode_arrow_keys
from provender.online.memory import MemoryStore
from provender.online.redis import RedisStore
from provender.online.sqlite import SQLiteStore
from provender.online.store import OnlineStore
from provender.online.tile_writer import TileWriter, _Batch, _Msgpack
from tests.support.services import RedisCluster, RedisServer
from tests.support.stream_windows import (
    BASE,
    LATENESS,
    accepted,
    assert_matches_oracle,
    events_strategy,
    make_events,
    read_times,
    rows_of,
    trips_table,
)

TABLE = trips_table("unused")
_LAYOUT = tiles.layout_for(TABLE)
assert _LAYOUT is not None
LAYOUT: tiles.TileLayout = _LAYOUT


def key_of(rider: int) -> list[bytes]:
    return encode_arrow_keys(pa.table({"rider": pa.array([rider], pa.int64())}), ["rider"])


def micros(at: datetime) -> int:
    return (at - BASE) // timedelta(microseconds=1) + int(BASE.timestamp()) * 1_000_000


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("redis", marks=pytest.mark.service),
        pytest.param("redis-cluster", marks=pytest.mark.service),  # script calls grouped by slot
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    with tempfile.TemporaryDirectory() as tmp:
        made: OnlineStore
        project = f"p{uuid.uuid4().hex[:8]}"
        if request.param == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            made = RedisStore.from_options({"url": server.url}, base_dir=Path(tmp), project=project)
        elif request.param == "redis-cluster":
            cluster: RedisCluster = request.getfixturevalue("redis_cluster")
            made = RedisStore.from_options({"url": cluster.url, "cluster": True}, base_dir=Path(tmp), project=project)
        elif request.param == "sqlite":
            made = SQLiteStore(Path(tmp) / "online.db")
        else:
            made = MemoryStore()
        yield made
        made.close()


def assert_reads_match(
    store: OnlineStore, events: Sequence[dict[str, Any]], riders: Sequence[int], table: pv.FeatureTable = TABLE
) -> None:
    kept, _ = accepted(events)
    for rider in riders:
        if not any(e["rider"] == rider for e in kept):
            continue
        for at in read_times(kept, rider):
            found = tiles.read_values(store, table, key_of(rider), micros(at))[0]
            assert found is not None
            assert_matches_oracle(found, kept, rider, at, table.aggregations)


# numbers only: folded with numpy and encoded at once (no Python value per row)
NUMERIC = trips_table(
    "unused",
    aggregations=[
        pv.Aggregation(column="fare", function=function, window=window, name=f"fare_{function}_{minutes}m")
        for minutes, window in ((5, timedelta(minutes=5)), (20, timedelta(minutes=20)))
        for function in ("count", "sum", "mean", "min", "max", "last")
    ],
)


_EXAMPLES = itertools.count(1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=events_strategy, cuts=st.lists(st.integers(1, 60), max_size=4))
def test_numeric_tables_fold_with_numpy_equal_the_oracle(
    store: OnlineStore, raw: list[tuple[int, int, int, float | None, str | None]], cuts: list[int]
) -> None:
    events = make_events(raw)
    base = 10 * next(_EXAMPLES)
    for event in events:
        event["rider"] += base  # keys of their own within the store the examples share
    writer = TileWriter(store, NUMERIC, allowed_lateness=LATENESS)
    bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
    late = 0
    for start, end in itertools.pairwise(bounds):
        late += writer.apply(rows_of(events[start:end]), [0] * (end - start), list(range(start, end))).too_late
    assert late == accepted(events)[1]
    assert_reads_match(store, events, sorted({e["rider"] for e in events}), NUMERIC)


def test_rows_of_fixed_width_fields_encode_as_msgpack() -> None:
    ints = np.array([0, -1, 2**62, -(2**63), 57])
    floats = np.array([0.5, -0.0, 1e300, 3.0, float("inf")])
    flags = np.array([True, False, True, False, True])
    valid = np.array([True, False, True, True, False])
    encoder = _Msgpack(5)
    encoder.header(4)
    encoder.add("i", ints, None)
    encoder.add("f", floats, valid)
    encoder.add("b", flags, valid[::-1].copy())
    encoder.nil()
    groups = encoder.slices(np.array([0, 2, 3]))
    expected = [
        [int(i), float(f) if ok else None, bool(b) if ok_b else None, None]
        for i, f, b, ok, ok_b in zip(ints, floats, flags, valid, valid[::-1], strict=True)
    ]
    unpacker = msgpack.Unpacker()
    unpacker.feed(b"".join(groups))
    assert list(unpacker) == expected
    assert [len(list(msgpack.Unpacker(io))) for io in map(_stream, groups)] == [2, 1, 2]


def test_a_batch_encodes_each_keys_items_for_redis_in_one_pass() -> None:
    """``_Batch.appends``: every eligible key's items (``tiles.TileAppends``), whatever its partitions and tiles."""
    lateness = LATENESS // timedelta(microseconds=1)
    # rider 1: two partitions, three tiles, out of order; rider 2: offsets not rising (not eligible); rider 3: one
    events = make_events(
        [(1, 25, 0, 1.0, "a"), (2, 3, 0, 2.0, None), (1, 3, 0, None, "b"), (3, 4, 0, 4.0, "c"), (2, 5, 0, 5.0, "d"),
         (1, 12, 1, 6.0, "a")]
    )  # fmt: skip
    partitions, offsets = [0, 1, 1, 0, 1, 0], [10, 7, 8, 11, 7, 12]
    batch = _Batch.of(rows_of(events), TABLE, LAYOUT, lateness, partitions, offsets)
    members = np.flatnonzero(batch.eligible)
    assert [batch.keys[k] for k in members] == key_of(1) + key_of(3)
    appends = batch.appends(members)
    groups = batch.tiles

    def items(data: bytes, start: int, end: int) -> list[Any]:
        unpacker = msgpack.Unpacker(raw=True)
        unpacker.feed(data[start:end])
        return list(unpacker)

    for i, k in enumerate(members.tolist()):
        parts, tiles_of = batch.offsets[k], groups[k]
        limit, latest, encoded, earliest, p, g = items(
            appends.heads, i * appends.head_width, (i + 1) * appends.head_width
        )
        assert (limit, latest, earliest) == (batch.limits[k], batch.latest_list[k], batch.earliest_list[k])
        assert msgpack.unpackb(encoded) == latest and (p, g) == (len(parts), len(tiles_of))
        width = appends.entry_width
        entries = items(appends.entries, appends.entry_bounds[i] * width, appends.entry_bounds[i + 1] * width)
        assert len(entries) == 3 * p
        for (partition, first, last), (index, low, high) in zip(
            parts, zip(*[iter(entries)] * 3, strict=True), strict=True
        ):
            assert appends.partitions[index - 1] == tiles.offset_field(partition)
            assert (low, msgpack.unpackb(high)) == (first, last)
        width = appends.group_width
        indexes = items(appends.groups, appends.group_bounds[i] * width, appends.group_bounds[i + 1] * width)
        states = items(appends.states, appends.state_bounds[i], appends.state_bounds[i + 1])
        packed = items(appends.events, appends.event_bounds[i], appends.event_bounds[i + 1])
        assert len(indexes) == len(states) == len(packed) == g
        for (tile, group), index, state, events in zip(tiles_of, indexes, states, packed, strict=True):
            assert appends.tiles[index - 1] == tile
            assert tiles.decode_state(state) == tiles.decode_state(tiles.encode_state(batch.fold.states()[group]))
            assert events == batch.fold.events[group]
    assert len(groups[members[0]]) == 3 and len(batch.offsets[members[0]]) == 2  # 10 s tiles


def _stream(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def test_several_records_of_a_key_out_of_order_across_tiles_in_one_batch(store: OnlineStore) -> None:
    # tiles are 10 s: rider 1's records span five tiles, out of order; the fifth is 16 minutes
    # behind the batch's earlier records (too late: lateness 10 minutes); rider 2 ties on event time
    raw = [
        (1, 1000, 0, 5.0, "a"), (1, 1000, 0, 7.0, "b"), (1, 985, 0, 1.0, "c"), (1, 1012, 3, None, "a"),
        (1, 40, 0, 100.0, "z"), (2, 600, 0, 2.0, "x"), (1, 1031, 0, 4.0, None), (2, 600, 0, 3.0, "y"),
        (1, 1009, -1, -2.0, "b"), (2, 599, 0, None, None),
    ]  # fmt: skip
    events = make_events(raw)
    # rider 2's two records at 600 s: the later to arrive was created first, so the earlier is `last`
    events[7]["created_timestamp"] = events[0]["created_timestamp"]
    writer = TileWriter(store, TABLE, allowed_lateness=LATENESS)
    report = writer.apply(rows_of(events), [0] * len(events), list(range(len(events))))
    assert report == (len(events) - 1, 1, 0)
    assert_reads_match(store, events, (1, 2))


def test_a_batch_is_refused_and_merged_when_a_record_is_too_late_against_the_stored_watermark(
    store: OnlineStore,
) -> None:
    writer = TileWriter(store, TABLE, allowed_lateness=LATENESS)
    first = make_events([(1, 2000, 0, 1.0, "a"), (2, 100, 0, 1.0, "a")])
    second = make_events(
        [(1, 2005, 0, 2.0, "b"), (1, 1300, 0, 50.0, "c"), (1, 1500, 0, 3.0, "a"), (2, 110, 0, 4.0, "d")]
    )
    assert writer.apply(rows_of(first), [0, 1], [0, 0]) == (2, 0, 0)
    # rider 1: 1300 s is 11.7 minutes behind 2000 s (stored): too late; 1500 s is not
    assert writer.apply(rows_of(second), [0, 0, 0, 1], [1, 2, 3, 1]) == (3, 1, 0)
    assert_reads_match(store, first + second, (1, 2))


def test_replays_within_a_batch_are_skipped_and_the_rest_counted_once(store: OnlineStore) -> None:
    writer = TileWriter(store, TABLE, allowed_lateness=LATENESS)
    events = make_events([(1, 60 * n, 0, float(n), "abc"[n % 3]) for n in range(8)])
    assert writer.apply(rows_of(events[:5]), [0] * 5, list(range(5))) == (5, 0, 0)
    # the last two records of partition 0 come back after a restart, with three new ones
    assert writer.apply(rows_of(events[3:]), [0] * 5, list(range(3, 8))) == (3, 0, 2)
    # offsets that do not rise within a partition: merged record by record
    assert writer.apply(rows_of(events[:2]), [1, 1], [5, 5]) == (1, 0, 1)
    assert_reads_match(store, events + events[:1], (1,))


def test_appended_states_read_as_their_merge_and_are_compacted(store: OnlineStore) -> None:
    writer = TileWriter(store, TABLE, allowed_lateness=LATENESS)
    events = make_events([(1, 3 + n % 5, 0, float(n), "abcd"[n % 4]) for n in range(20)])  # one 10 s tile
    for n, event in enumerate(events):
        assert writer.apply(rows_of([event]), [0], [n]) == (1, 0, 0)
        assert_reads_match(store, events[: n + 1], (1,))
    tile = micros(events[0]["event_timestamp"]) // LAYOUT.tile_us
    fields = [tiles.state_field(tile), tiles.count_field(tile)]
    state, count = store.read_tiles(TABLE, LAYOUT, key_of(1), fields)[0]
    assert state is not None
    unpacker = msgpack.Unpacker(strict_map_key=False)
    unpacker.feed(state)
    appended = len(list(unpacker))
    assert 1 <= appended < tiles.MAX_APPENDED_STATES
    assert (count is None) == (appended == 1)
    # the key's newest tile moves on: the previous one is compacted to one state
    later = make_events([(1, 45, 0, 1.0, "a")])
    writer.apply(rows_of(later), [0], [len(events)])
    state, count = store.read_tiles(TABLE, LAYOUT, key_of(1), fields)[0]
    assert state is not None and count is None
    assert msgpack.unpackb(state, strict_map_key=False) is not None  # one state: no extra data
    assert_reads_match(store, events + later, (1,))


def test_times_beyond_the_exact_range_of_lua_numbers_are_merged_exactly(store: OnlineStore) -> None:
    writer = TileWriter(store, TABLE, allowed_lateness=LATENESS)
    far = 2**53 // 1_000_000 - int(BASE.timestamp()) + 86_400  # seconds after BASE: past 2^53 us
    events = make_events([(1, far, 0, 1.0, "a"), (1, far + 1, 1, 2.0, "b"), (1, far + 2, 0, 3.0, "a")])
    assert micros(events[1]["event_timestamp"]) > 2**53
    assert writer.apply(rows_of(events), [0, 0, 0], [0, 1, 2]) == (3, 0, 0)
    assert_reads_match(store, events, (1,))
