"""Tiles (``online/tiles.py``, ``online/tile_writer.py``) against the brute-force oracle.

The writer is fed random event streams (out of order, late, in batches of random sizes) on the
in-memory and SQLite stores; reads at many times must equal the oracle over the accepted events.
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import provender as pv
from provender.online import tiles
from provender.online.keys import encode_arrow_keys
from provender.online.memory import MemoryStore
from provender.online.sqlite import SQLiteStore
from provender.online.store import OnlineStore
from provender.online.tile_writer import TileWriter
from tests.support.stream_windows import (
    AGGREGATIONS,
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


def read(store: OnlineStore, rider: int, at: Any, table: pv.FeatureTable = TABLE) -> list[object] | None:
    keys = encode_arrow_keys(pa.table({"rider": pa.array([rider], pa.int64())}), ["rider"])
    at_us = (at - BASE) // timedelta(microseconds=1) + int(BASE.timestamp()) * 1_000_000
    return tiles.read_values(store, table, keys, at_us)[0]


@pytest.fixture(params=["memory", "sqlite"])
def store_factory(request: pytest.FixtureRequest) -> Iterator[Any]:
    with tempfile.TemporaryDirectory() as tmp:
        made: list[OnlineStore] = []

        def make() -> OnlineStore:
            store: OnlineStore
            store = MemoryStore() if request.param == "memory" else SQLiteStore(Path(tmp) / f"online-{len(made)}.db")
            made.append(store)
            return store

        yield make
        for store in made:
            store.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=events_strategy, cuts=st.lists(st.integers(1, 60), max_size=8))
def test_reads_equal_the_oracle_over_the_accepted_events(
    store_factory: Any, raw: list[tuple[int, int, int, float | None, str | None]], cuts: list[int]
) -> None:
    events = make_events(raw)
    store = store_factory()
    writer = TileWriter(store, TABLE, allowed_lateness=LATENESS)
    bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
    late = 0
    for start, end in itertools.pairwise(bounds):
        report = writer.apply(rows_of(events[start:end]), [0] * (end - start), list(range(start, end)))
        late += report.too_late
    kept, expected_late = accepted(events)
    assert late == expected_late
    for rider in (1, 2, 3):
        for at in read_times(kept, rider):
            found = read(store, rider, at)
            if not any(e["rider"] == rider for e in kept):
                assert found is None
                continue
            assert found is not None
            assert_matches_oracle(found, kept, rider, at)


def test_replayed_records_are_not_counted_twice(store_factory: Any) -> None:
    store = store_factory()
    writer = TileWriter(store, TABLE, allowed_lateness=LATENESS)
    events = make_events([(1, 60 * n, 0, 1.0, "a") for n in range(6)])
    first = writer.apply(rows_of(events[:4]), [0, 0, 1, 1], [0, 1, 0, 1])
    assert first == (4, 0, 0)
    # after a crash the uncommitted records come back, with later ones
    again = writer.apply(rows_of(events[1:]), [0, 1, 1, 0, 0], [1, 0, 1, 2, 3])
    assert again == (2, 0, 3)
    found = read(store, 1, BASE + timedelta(minutes=5))
    assert found is not None
    assert found[AGGREGATIONS.index(AGGREGATIONS[2])] == 6.0  # fare_sum_20m: each event once


def test_events_leave_the_window_at_the_exact_microsecond(store_factory: Any) -> None:
    store = store_factory()
    writer = TileWriter(store, TABLE, allowed_lateness=LATENESS)
    events = make_events([(1, 7, 0, 2.0, "a"), (1, 300, 0, 3.0, "b")])
    writer.apply(rows_of(events))
    five = timedelta(minutes=5)
    first, second = events[0]["event_timestamp"], events[1]["event_timestamp"]
    count = AGGREGATIONS.index(next(a for a in AGGREGATIONS if a.name == "fare_count_5m"))
    assert read(store, 1, first - timedelta(microseconds=1))[count] == 0  # type: ignore[index]
    assert read(store, 1, first)[count] == 1  # type: ignore[index]  # upper bound inclusive
    assert read(store, 1, second)[count] == 2  # type: ignore[index]
    assert read(store, 1, first + five - timedelta(microseconds=1))[count] == 2  # type: ignore[index]
    assert read(store, 1, first + five)[count] == 1  # type: ignore[index]  # lower bound exclusive
    assert read(store, 1, second + five)[count] == 0  # type: ignore[index]


def test_old_tiles_are_deleted_once_no_read_can_reach_them() -> None:
    store = MemoryStore()
    writer = TileWriter(store, TABLE, allowed_lateness=LATENESS)
    writer.apply(rows_of(make_events([(1, 0, 0, 1.0, "a")])))
    writer.apply(rows_of(make_events([(1, 3 * 3600, 0, 1.0, "a")])))
    layout = tiles.layout_for(TABLE)
    assert layout is not None
    keys = encode_arrow_keys(pa.table({"rider": pa.array([1], pa.int64())}), ["rider"])
    present = store.read_tiles(TABLE, layout, keys, [tiles.TILE_SET])[0][0]
    assert present is not None
    import msgpack  # type: ignore[import-untyped]

    assert msgpack.unpackb(present) == [(3 * 3600 * 1_000_000 + int(BASE.timestamp()) * 1_000_000) // layout.tile_us]


def test_tile_sizes() -> None:
    minute, day = timedelta(minutes=1), timedelta(days=1)
    assert tiles.tile_size([timedelta(minutes=5)]) == 10_000_000
    assert tiles.tile_size([7 * day]) == 6 * 3600 * 1_000_000
    assert tiles.tile_size([7 * day, 30 * day]) == 6 * 3600 * 1_000_000  # 120 tiles for 30 days
    assert tiles.tile_size([minute, 30 * day]) == 6 * 3600 * 1_000_000  # at most 512 tiles per window
    assert tiles.tile_size([timedelta(seconds=4)]) == 500_000
    assert tiles.tile_size([timedelta(microseconds=3)]) == 1


def test_a_changed_layout_reads_no_old_tiles() -> None:
    store = MemoryStore()
    TileWriter(store, TABLE, allowed_lateness=LATENESS).apply(rows_of(make_events([(1, 0, 0, 1.0, "a")])))
    longer = dataclasses.replace(AGGREGATIONS[-1], window=AGGREGATIONS[-1].window + timedelta(minutes=1))
    changed = trips_table("unused", aggregations=[*AGGREGATIONS[:-1], longer])
    assert read(store, 1, BASE, changed) is None
    assert read(store, 1, BASE) is not None


def test_an_event_exactly_the_allowed_lateness_behind_counts_one_microsecond_more_does_not() -> None:
    store = MemoryStore()
    writer = TileWriter(store, TABLE, allowed_lateness=LATENESS)
    late = int(LATENESS.total_seconds())
    first = writer.apply(rows_of(make_events([(1, 2000, 0, 1.0, "a")])))
    on_bound = writer.apply(rows_of(make_events([(1, 2000 - late, 0, 1.0, "a")])))
    beyond = writer.apply(rows_of(make_events([(1, 2000 - late, -1, 1.0, "a")])))
    assert (first.applied, on_bound.applied, beyond.applied, beyond.too_late) == (1, 1, 0, 1)
