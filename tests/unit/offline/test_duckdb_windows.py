"""Windowed aggregations on DuckDB against the brute-force oracle (tests/support/window_oracle.py)."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import provender as pv
from provender.errors import DataError
from tests.support import window_oracle
from tests.support.builders import make_client

BASE = datetime(2026, 1, 1, tzinfo=UTC)
RIDER = pv.Entity(name="rider", value_type=pv.ValueType.INT64)
AGGREGATIONS = [
    pv.Aggregation(
        column=column, function=function, window=timedelta(minutes=minutes), name=f"{column}_{function}_{minutes}m"
    )
    for column, function in [
        ("fare", "count"), ("fare", "sum"), ("fare", "mean"), ("fare", "min"), ("fare", "max"), ("fare", "last"),
        ("fare", "approx_count_distinct"),
        ("city", "count_distinct"), ("city", "last"), ("city", "approx_count_distinct"),
    ]
    for minutes in (1, 5)
] + [pv.Aggregation(column="fare", function="sum", window=timedelta(minutes=7), name="fare_sum_7m")]  # fmt: skip


def trips_table(path: Path, aggregations: Sequence[pv.Aggregation] = AGGREGATIONS) -> pv.FeatureTable:
    return pv.FeatureTable(
        name="trips",
        entities=["rider"],
        features=[pv.Feature("fare", pv.ValueType.DOUBLE), pv.Feature("city", pv.ValueType.STRING)],
        batch_source=pv.FileSource(
            path=str(path), event_timestamp_column="event_timestamp", created_timestamp_column="created_timestamp"
        ),
        aggregations=list(aggregations),
    )


def write_schema() -> pa.Schema:
    return pa.schema(
        [
            ("rider", pa.int64()),
            ("fare", pa.float64()),
            ("city", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("created_timestamp", pa.timestamp("us", tz="UTC")),
        ]
    )


def write_events(events: Sequence[dict[str, Any]], path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(events), schema=write_schema()), path / "part-0.parquet")


def retrieve(
    root: Path,
    events: Sequence[dict[str, Any]],
    entity_rows: Sequence[tuple[int, datetime]],
    refs: Sequence[str],
    table: pv.FeatureTable | None = None,
    offline: dict[str, object] | None = None,
) -> list[dict[str, Any]]:
    write_events(events, root / "trips")
    frame = pd.DataFrame({"rider": [r for r, _ in entity_rows], "event_timestamp": [t for _, t in entity_rows]})
    with make_client(root / "project", offline=offline) as client:
        client.apply([RIDER, table or trips_table(root / "trips")])
        rows: list[dict[str, Any]] = client.get_historical_features(list(refs), frame).to_arrow().to_pylist()
    return rows


def expected_value(events: Sequence[dict[str, Any]], aggregation: pv.Aggregation, rider: int, at: datetime) -> Any:
    return window_oracle.aggregate(events, aggregation, key={"rider": rider}, at=at)


def assert_same(found: Any, expected: Any, where: str) -> None:
    if isinstance(expected, float) and found is not None:
        assert found == pytest.approx(expected, rel=1e-12), where
    else:
        assert found == expected, where


events_strategy = st.lists(
    st.tuples(
        st.integers(1, 3),  # rider
        st.integers(0, 12),  # minute: many duplicate timestamps
        st.one_of(st.none(), st.integers(-50, 50).map(float)),  # fare: integral, so sums are exact
        st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
    ),
    max_size=40,
)
entity_strategy = st.lists(st.tuples(st.integers(1, 4), st.integers(-1, 20)), min_size=1, max_size=15)


def check_against_oracle(
    raw_events: list[tuple[int, int, float | None, str | None]],
    raw_rows: list[tuple[int, int]],
    offline: dict[str, object] | None = None,
) -> None:
    """Retrieve every aggregation for the generated rows and compare each value with the oracle."""
    events = [
        {
            "rider": rider,
            "fare": fare,
            "city": city,
            "event_timestamp": BASE + timedelta(minutes=minute),
            "created_timestamp": BASE + timedelta(microseconds=n),  # unique: "last" is never a tie
        }
        for n, (rider, minute, fare, city) in enumerate(raw_events)
    ]
    # entity times on the minute grid, so T - window often equals an event time (the bounds matter)
    entity_rows = [(rider, BASE + timedelta(minutes=minute)) for rider, minute in raw_rows]
    with tempfile.TemporaryDirectory() as tmp:
        rows = retrieve(Path(tmp), events, entity_rows, ["trips"], offline=offline)
    assert len(rows) == len(entity_rows)
    for n, (row, (rider, at)) in enumerate(zip(rows, entity_rows, strict=True)):
        assert row["rider"] == rider and row["event_timestamp"] == at
        for aggregation in AGGREGATIONS:
            expected = expected_value(events, aggregation, rider, at)
            assert_same(row[f"trips__{aggregation.name}"], expected, f"row {n}, {aggregation.name}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_events=events_strategy, raw_rows=entity_strategy)
def test_duckdb_windows_agree_with_oracle(
    raw_events: list[tuple[int, int, float | None, str | None]], raw_rows: list[tuple[int, int]]
) -> None:
    check_against_oracle(raw_events, raw_rows)


def test_window_bounds_are_exclusive_below_and_inclusive_above(tmp_path: Path) -> None:
    week = timedelta(days=7)
    at = BASE + timedelta(days=10)
    stamps = [at - week, at - week + timedelta(microseconds=1), at, at + timedelta(microseconds=1)]
    events = [
        {"rider": 1, "fare": float(n + 1), "city": "x", "event_timestamp": t, "created_timestamp": t}
        for n, t in enumerate(stamps)
    ]
    aggs = [
        pv.Aggregation(column="fare", function="sum", window=week, name="fare_sum_7d"),
        pv.Aggregation(column="fare", function="count", window=week, name="fare_count_7d"),
        pv.Aggregation(column="fare", function="last", window=week, name="fare_last_7d"),
    ]
    table = trips_table(tmp_path / "trips", aggs)
    refs = ["trips:fare_sum_7d", "trips:fare_count_7d", "trips:fare_last_7d", "trips:fare"]
    rows = retrieve(tmp_path, events, [(1, at), (2, at)], refs, table=table)
    # T - window (fare 1) is out, T - window + 1us (2) and T (3) are in, after T (4) is out
    names = ("fare_sum_7d", "fare_count_7d", "fare_last_7d", "fare")
    assert [rows[0][f"trips__{n}"] for n in names] == [5.0, 2, 3.0, 3.0]
    assert [rows[1][f"trips__{n}"] for n in names] == [None, 0, None, None]


def test_statistics_of_aggregations_are_refused(tmp_path: Path) -> None:
    write_events([], tmp_path / "trips")
    with make_client(tmp_path / "project") as client:
        client.apply([RIDER, trips_table(tmp_path / "trips")])
        with pytest.raises(DataError, match="aggregations"):
            client.get_statistics("trips", start=BASE, end=BASE + timedelta(days=1))


def test_approx_count_distinct_is_within_its_stated_error_and_equal_online(tmp_path: Path) -> None:
    from provender.definitions import sketch
    from provender.online.keys import encode_arrow_keys
    from provender.online.memory import MemoryStore
    from provender.online.tile_writer import TileWriter
    from provender.online.tiles import read_values

    at = BASE + timedelta(minutes=10)
    events = [
        {"rider": 1, "fare": 1.0, "city": f"c{(n * 7919) % 30_000}", "event_timestamp": at - timedelta(seconds=n % 600),
         "created_timestamp": BASE}
        for n in range(40_000)
    ]  # fmt: skip
    exact = len({e["city"] for e in events})
    windowed = [pv.Aggregation(column="city", function="approx_count_distinct", window=timedelta(minutes=30), name="n")]
    table = trips_table(tmp_path / "trips", windowed)
    [row] = retrieve(tmp_path, events, [(1, at)], ["trips:n"], table=table)
    offline = row["trips__n"]
    assert abs(offline - exact) <= 4 * sketch.RELATIVE_STANDARD_ERROR * exact, (offline, exact)
    online_table = dataclasses.replace(table, stream_source=None)
    store = MemoryStore()
    TileWriter(store, online_table, allowed_lateness=timedelta(hours=1)).apply(
        pa.Table.from_pylist(events, schema=write_schema())
    )
    keys = encode_arrow_keys(pa.table({"rider": pa.array([1], pa.int64())}), ["rider"])
    online = read_values(store, online_table, keys, int(at.timestamp() * 1_000_000))[0]
    assert online == [offline]  # the same registers offline and online: the same estimate


AWKWARD_DOUBLES = [0.1, 1 / 3, 1e7, 12345678.9, 1e15, 1e16, 1.5e300, 1e-4, 1e-5, 5e-324, -0.0, 2.0**53, -7.25]


def check_float_sketch(tmp_path: Path, offline: dict[str, object] | None = None) -> None:
    """``approx_count_distinct`` of doubles: DuckDB or Spark, the tiles and the oracle give the same estimate.

    The values include those whose text differs between Java and Python (``1.0E7`` vs ``10000000.0``):
    every engine must hash a double by the same text (``sketch.register``: its ``repr``).
    """
    from provender.online.keys import encode_arrow_keys
    from provender.online.memory import MemoryStore
    from provender.online.tile_writer import TileWriter
    from provender.online.tiles import read_values

    at = BASE + timedelta(minutes=10)
    values = [*AWKWARD_DOUBLES, *(n * 1.1e5 + 0.3 for n in range(300)), None]
    events = [
        {"rider": 1 + n % 2, "fare": v, "city": "a", "event_timestamp": at - timedelta(seconds=n)}
        for n, v in enumerate(values)
    ]
    for event in events:
        event["created_timestamp"] = BASE
    aggregation = pv.Aggregation(column="fare", function="approx_count_distinct", window=timedelta(hours=1), name="n")
    table = trips_table(tmp_path / "trips", [aggregation])
    rows = retrieve(tmp_path, events, [(1, at), (2, at)], ["trips:n"], table=table, offline=offline)
    expected = [expected_value(events, aggregation, rider, at) for rider in (1, 2)]
    assert [row["trips__n"] for row in rows] == expected
    online_table = dataclasses.replace(table, stream_source=None)
    store = MemoryStore()
    TileWriter(store, online_table, allowed_lateness=timedelta(hours=1)).apply(
        pa.Table.from_pylist(events, schema=write_schema())
    )
    keys = encode_arrow_keys(pa.table({"rider": pa.array([1, 2], pa.int64())}), ["rider"])
    online = read_values(store, online_table, keys, int(at.timestamp() * 1_000_000))
    present = [values for values in online if values is not None]
    assert len(present) == len(online)  # both keys have tiles
    assert [values[0] for values in present] == expected


def test_approx_count_distinct_of_doubles_is_the_same_offline_and_online(tmp_path: Path) -> None:
    check_float_sketch(tmp_path)
