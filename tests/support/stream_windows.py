"""Random event streams for windowed aggregations kept by tiles, and what the online value must be.

An event stream is a list in arrival order (so its times are out of order). The expected online
value at *T* is the oracle's (``window_oracle.py``) over the events the tiles accepted: per key,
in arrival order, an event more than the allowed lateness behind the key's latest accepted
event time is too late (``online/tile_writer.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import strategies as st

import provender as pv
from tests.support import window_oracle

BASE = datetime(2026, 1, 1, tzinfo=UTC)
LATENESS = timedelta(minutes=10)
RIDER = pv.Entity(name="rider", value_type=pv.ValueType.INT64)
AGGREGATIONS = [
    pv.Aggregation(column="fare", function="count", window=timedelta(minutes=5), name="fare_count_5m"),
    pv.Aggregation(column="fare", function="sum", window=timedelta(minutes=5), name="fare_sum_5m"),
    pv.Aggregation(column="fare", function="sum", window=timedelta(minutes=20), name="fare_sum_20m"),
    pv.Aggregation(column="fare", function="mean", window=timedelta(minutes=20), name="fare_mean_20m"),
    pv.Aggregation(column="fare", function="min", window=timedelta(minutes=5), name="fare_min_5m"),
    pv.Aggregation(column="fare", function="max", window=timedelta(minutes=20), name="fare_max_20m"),
    pv.Aggregation(column="fare", function="last", window=timedelta(minutes=5), name="fare_last_5m"),
    pv.Aggregation(column="city", function="count_distinct", window=timedelta(minutes=20), name="cities_20m"),
    pv.Aggregation(column="city", function="last", window=timedelta(minutes=20), name="city_last_20m"),
    pv.Aggregation(column="city", function="approx_count_distinct", window=timedelta(minutes=5), name="cities_5m"),
]

# rider, second (many on the minute grid, so window bounds fall on event times), microsecond
# jitter, fare (integral: sums are exact), city
events_strategy = st.lists(
    st.tuples(
        st.integers(1, 3),
        st.one_of(st.integers(0, 40).map(lambda m: m * 60), st.integers(0, 2400)),
        st.sampled_from([0, 0, 1, -1]),
        st.one_of(st.none(), st.integers(-50, 50).map(float)),
        st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
    ),
    max_size=60,
)


# The trips source's columns, as events are written to files and streams.
SCHEMA = pa.schema(
    [
        ("rider", pa.int64()),
        ("fare", pa.float64()),
        ("city", pa.string()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("created_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


def rows_of(events: Sequence[dict[str, Any]]) -> pa.Table:
    """The events as an Arrow table of the trips source's columns (:data:`SCHEMA`)."""
    return pa.Table.from_pylist(list(events), schema=SCHEMA)


def trips_table(
    path: str,
    *,
    aggregations: Sequence[pv.Aggregation] = AGGREGATIONS,
    topic: str = "trips",
    bootstrap_servers: str = "127.0.0.1:1",
) -> pv.FeatureTable:
    """The table: fare and city, a file batch source (the offline log) and a JSON stream source."""
    return pv.FeatureTable(
        name="trips",
        entities=["rider"],
        features=[pv.Feature("fare", pv.ValueType.DOUBLE), pv.Feature("city", pv.ValueType.STRING)],
        batch_source=pv.FileSource(
            path=path, event_timestamp_column="event_timestamp", created_timestamp_column="created_timestamp"
        ),
        stream_source=pv.KafkaSource(
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            message_format=pv.JsonFormat(),
            event_timestamp_column="ts",
            created_timestamp_column="created",
        ),
        aggregations=list(aggregations),
    )


def make_events(raw: Sequence[tuple[int, int, int, float | None, str | None]]) -> list[dict[str, Any]]:
    """Events (by source column, arrival order) from generated tuples; created times are unique."""
    return [
        {
            "rider": rider,
            "fare": fare,
            "city": city,
            "event_timestamp": BASE + timedelta(seconds=second, microseconds=jitter),
            "created_timestamp": BASE + timedelta(microseconds=n),
        }
        for n, (rider, second, jitter, fare, city) in enumerate(raw)
    ]


def message(event: dict[str, Any]) -> dict[str, object]:
    """The JSON record of an event."""
    return {
        "rider": event["rider"],
        "fare": event["fare"],
        "city": event["city"],
        "ts": event["event_timestamp"].isoformat(),
        "created": event["created_timestamp"].isoformat(),
    }


def accepted(events: Sequence[dict[str, Any]], lateness: timedelta = LATENESS) -> tuple[list[dict[str, Any]], int]:
    """The events the tiles keep (per key, in arrival order), and how many were too late."""
    watermark: dict[object, datetime] = {}
    kept, late = [], 0
    for event in events:
        key, at = event["rider"], event["event_timestamp"]
        latest = watermark.get(key)
        if latest is not None and at < latest - lateness:
            late += 1
            continue
        watermark[key] = at if latest is None else max(latest, at)
        kept.append(event)
    return kept, late


def read_times(events: Sequence[dict[str, Any]], rider: int, lateness: timedelta = LATENESS) -> list[datetime]:
    """Times to read rider's values at: on and around event times and window bounds, all at or
    after the key's watermark minus the lateness (where reads are exact)."""
    mine = [e["event_timestamp"] for e in events if e["rider"] == rider]
    if not mine:
        return [BASE]
    floor = max(mine) - lateness
    candidates = {floor, max(mine), max(mine) + timedelta(minutes=3), max(mine) + timedelta(minutes=25)}
    for at in mine:
        for window in (timedelta(0), timedelta(minutes=5), timedelta(minutes=20)):
            for nudge in (timedelta(0), timedelta(microseconds=-1)):
                candidates.add(at + window + nudge)
    return sorted(t for t in candidates if t >= floor)


def assert_matches_oracle(
    found: Sequence[object],
    events: Sequence[dict[str, Any]],
    rider: int,
    at: datetime,
    aggregations: Sequence[pv.Aggregation] = AGGREGATIONS,
) -> None:
    """``found`` (one value per aggregation) equals the oracle over ``events`` for ``rider`` at ``at``."""
    for value, aggregation in zip(found, aggregations, strict=True):
        expected = window_oracle.aggregate(events, aggregation, key={"rider": rider}, at=at)
        where = f"rider {rider} at {at.isoformat()}: {aggregation.name}"
        if isinstance(expected, float) and value is not None:
            assert value == pytest.approx(expected, rel=1e-12), where
        else:
            assert value == expected, where
