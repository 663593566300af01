"""Offline-to-online ingestion of windowed aggregations: online at ``end`` equals historical at ``end``.

On real SQLite and Redis stores (DuckDB; Redis also with ``key_ttl_from_max_age``), and Redis written by Spark's
executors, over random events (duplicate times, nulls, events on the window bounds and after ``end``;
approx_count_distinct too), checked against the brute-force oracle too. ``max_age`` does not apply to the aggregates
(a table with a short one still reads them, while its plain features are OUTSIDE_MAX_AGE).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

import provender as pv
from tests.support import window_oracle
from tests.support.builders import make_client, write_parquet

END = datetime(2026, 3, 1, tzinfo=UTC)
START = END - timedelta(days=2)
DAY, WEEK = timedelta(days=1), timedelta(days=7)
RIDER = pv.Entity(name="rider", value_type=pv.ValueType.INT64)
RIDERS = list(range(1, 9))  # 7: only events older than every window; 8: no events at all
AGGREGATIONS = [
    pv.Aggregation(column="fare", function="sum", window=WEEK, name="fare_sum_7d"),
    pv.Aggregation(column="fare", function="count", window=DAY, name="fare_count_1d"),
    pv.Aggregation(column="fare", function="mean", window=WEEK, name="fare_mean_7d"),
    pv.Aggregation(column="fare", function="max", window=DAY, name="fare_max_1d"),
    pv.Aggregation(column="fare", function="last", window=WEEK, name="fare_last_7d"),
    pv.Aggregation(column="city", function="count_distinct", window=WEEK, name="cities_7d"),
    pv.Aggregation(column="city", function="approx_count_distinct", window=DAY, name="cities_approx_1d"),
    pv.Aggregation(column="fare", function="approx_count_distinct", window=WEEK, name="fares_approx_7d"),
]


def _events() -> list[dict[str, Any]]:
    rng = random.Random(16)
    stamps = [END, END - DAY, END - WEEK, END + timedelta(microseconds=1), END - WEEK + timedelta(microseconds=1)]
    events = []
    for n in range(300):
        rider = rng.choice(RIDERS[:6])
        at = rng.choice(stamps) if n % 5 == 0 else END - timedelta(hours=rng.randrange(0, 9 * 24))
        fare = None if n % 11 == 0 else rng.randrange(1, 40) * 1e6  # Java's text of 1.0E7 is not Python's
        city = rng.choice(["a", "b", "c", None])
        events.append({"rider": rider, "fare": fare, "city": city, "ts": at, "created": END + timedelta(seconds=n)})
    events.append({"rider": 7, "fare": 5.0, "city": "a", "ts": END - timedelta(days=30), "created": END})
    return events


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.service),
        pytest.param("redis+ttl", marks=pytest.mark.service),  # rows expire max_age after their event time
        pytest.param("spark+redis", marks=[pytest.mark.service, pytest.mark.slow]),
    ]
)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[pv.Client]:
    online: dict[str, object] | None = None
    offline = None
    if "redis" in request.param:
        online = {"store": "redis", "url": request.getfixturevalue("redis_server").url}
        if "ttl" in request.param:
            online["key_ttl_from_max_age"] = True
    if "spark" in request.param:  # the aggregates are computed and written by Spark's executors
        request.getfixturevalue("spark_engine")
        offline = dict(request.getfixturevalue("spark_options"))
    with make_client(tmp_path / "project", online=online, offline=offline, project=f"p{tmp_path.name[-12:]}") as c:
        yield c


def _trips(events: list[dict[str, Any]], tmp_path: Path, max_age: timedelta | None = None) -> pv.FeatureTable:
    """The events as a Parquet source and the table aggregating them."""
    schema = pa.schema(
        [
            ("rider", pa.int64()),
            ("fare", pa.float64()),
            ("city", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("created", pa.timestamp("us", tz="UTC")),
        ]
    )
    path = write_parquet(pa.Table.from_pylist(events, schema=schema), tmp_path / "trips" / "part-0.parquet")
    return pv.FeatureTable(
        name="trips",
        entities=["rider"],
        features=[pv.Feature("fare", pv.ValueType.DOUBLE), pv.Feature("city", pv.ValueType.STRING)],
        batch_source=pv.FileSource(
            path=str(path.parent), event_timestamp_column="ts", created_timestamp_column="created"
        ),
        aggregations=AGGREGATIONS,
        max_age=max_age,
    )


def test_online_aggregates_after_batch_ingestion_equal_historical_at_end(client: pv.Client, tmp_path: Path) -> None:
    events = _events()
    client.apply([RIDER, _trips(events, tmp_path)])
    client.start_offline_to_online_ingestion("trips", start=START, end=END).wait()

    refs = [f"trips:{a.name}" for a in AGGREGATIONS]
    online = client.get_online_features(refs, [{"rider": r} for r in RIDERS]).to_dict()
    entity_rows = pd.DataFrame({"rider": RIDERS, "event_timestamp": [END] * len(RIDERS)})
    historical = client.get_historical_features(refs, entity_rows).to_arrow().to_pydict()
    oracle_events = [e | {"event_timestamp": e["ts"], "created_timestamp": e["created"]} for e in events]
    lower = min(START, END - WEEK)  # keys with an event in [min(start, end - longest window), end] are written
    written = {e["rider"] for e in events if lower <= e["ts"] <= END}
    assert 7 not in written and 8 not in written and len(written) == 6
    for aggregation in AGGREGATIONS:
        column = f"trips__{aggregation.name}"
        for n, rider in enumerate(RIDERS):
            expected = window_oracle.aggregate(oracle_events, aggregation, key={"rider": rider}, at=END)
            where = f"rider {rider}, {aggregation.name}"
            assert historical[column][n] == pytest.approx(expected), where
            if rider in written or aggregation.counts:  # never written: counts are 0, as historical says
                assert online[column][n] == pytest.approx(historical[column][n]), where
            else:  # never written: no stored row, so the online value is missing
                assert online[column][n] is None, where
    statuses = client.get_online_features(["trips:fare_count_1d"], [{"rider": 7}]).statuses()
    assert statuses["trips__fare_count_1d"] == ["NOT_FOUND"]  # rider 7's only event is older than every window
    assert client.get_online_features(["trips:fare_count_1d"], [{"rider": 8}]).to_dict()["trips__fare_count_1d"] == [0]


def test_max_age_does_not_apply_to_aggregates_read_online(client: pv.Client, tmp_path: Path) -> None:
    """A table with a short max_age: read long after ``end``, the aggregates are historical's at ``end``.

    The rows batch ingestion wrote are stamped ``end``, months before now: the plain features are
    OUTSIDE_MAX_AGE (null), the aggregates PRESENT (or NULL_VALUE when historical says null), in the same row.
    """
    events = _events()
    client.apply([RIDER, _trips(events, tmp_path, max_age=timedelta(hours=1))])
    client.start_offline_to_online_ingestion("trips", start=START, end=END).wait()

    aggregates = [f"trips:{a.name}" for a in AGGREGATIONS]
    refs = ["trips:fare", *aggregates, "trips:city"]
    response = client.get_online_features(refs, [{"rider": r} for r in RIDERS])
    online, statuses = response.to_dict(), response.statuses()
    entity_rows = pd.DataFrame({"rider": RIDERS, "event_timestamp": [END] * len(RIDERS)})
    historical = client.get_historical_features(aggregates, entity_rows).to_arrow().to_pydict()
    lower = min(START, END - WEEK)
    written = {e["rider"] for e in events if lower <= e["ts"] <= END}
    assert len(written) == 6
    for n, rider in enumerate(RIDERS):
        for plain in ("trips__fare", "trips__city"):
            assert online[plain][n] is None, (rider, plain)
            assert statuses[plain][n] == ("OUTSIDE_MAX_AGE" if rider in written else "NOT_FOUND"), (rider, plain)
        for aggregation in AGGREGATIONS:
            column, where = f"trips__{aggregation.name}", f"rider {rider}, {aggregation.name}"
            if rider not in written:
                assert statuses[column][n] == "NOT_FOUND", where
                assert online[column][n] == (0 if aggregation.counts else None), where
                continue
            assert online[column][n] == pytest.approx(historical[column][n]), where
            assert statuses[column][n] == ("NULL_VALUE" if historical[column][n] is None else "PRESENT"), where
    assert any(historical["trips__fare_max_1d"][n] is not None for n in range(len(RIDERS)))
