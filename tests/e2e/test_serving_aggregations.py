"""Aggregates batch ingestion wrote, served over HTTP and gRPC: ``max_age`` does not apply to them.

A table with windowed aggregations and a short ``max_age`` (1 hour) is ingested with ``end`` two
days ago, so every stored row is older than ``max_age`` when read. A real ``provender serve``
process serves the project (its online store SQLite, or the session's Redis, which the server
reads on its event loop). On every path (in-process, HTTP, gRPC) the aggregates equal historical
retrieval at ``end`` with status PRESENT (NULL_VALUE where historical says null), while the plain
features of the same rows are null with status OUTSIDE_MAX_AGE (docs/transformations.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

import provender as pv
from tests.e2e.test_serving import ProjectFolder, Server, start_server
from tests.support.builders import write_parquet
from tests.support.registries import registry_url
from tests.support.services import read_log

END = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
RIDER = pv.Entity(name="rider", value_type=pv.ValueType.INT64)
AGGREGATIONS = [
    pv.Aggregation(column="fare", function="sum", window=timedelta(days=7), name="fare_sum_7d"),
    pv.Aggregation(column="fare", function="count", window=timedelta(days=1), name="fare_count_1d"),
    pv.Aggregation(column="fare", function="mean", window=timedelta(days=7), name="fare_mean_7d"),
    pv.Aggregation(column="fare", function="max", window=timedelta(days=1), name="fare_max_1d"),
]
RIDERS = [1, 2, 3, 4]  # 3: events older than one day only (1-day aggregates null/0); 4: no events
EVENTS = [
    {"rider": 1, "fare": 10.0, "ts": END - timedelta(hours=30)},
    {"rider": 1, "fare": 4.0, "ts": END - timedelta(hours=2)},
    {"rider": 1, "fare": 6.0, "ts": END},  # on the upper bound: counted
    {"rider": 1, "fare": 99.0, "ts": END + timedelta(hours=1)},  # after end: not counted
    {"rider": 2, "fare": 7.5, "ts": END - timedelta(minutes=30)},
    {"rider": 3, "fare": 3.0, "ts": END - timedelta(days=3)},
    {"rider": 3, "fare": 5.0, "ts": END - timedelta(days=7)},  # on the lower bound of 7 days: not counted
]
REFS = ["trips:fare", *(f"trips:{a.name}" for a in AGGREGATIONS)]
AGGREGATE_COLUMNS = [f"trips__{a.name}" for a in AGGREGATIONS]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("redis", marks=pytest.mark.service)])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp(f"aggregations_{request.param}")
    online: dict[str, object] = {"store": "sqlite", "path": "online.db"}
    if request.param == "redis":
        online = {"store": "redis", "url": request.getfixturevalue("redis_server").url, "key_prefix": root.name}
    config = {"project": "aggregates", "registry": registry_url(root, "sqlite:///registry.db"), "online": online}
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    schema = pa.schema([("rider", pa.int64()), ("fare", pa.float64()), ("ts", pa.timestamp("us", tz="UTC"))])
    path = write_parquet(pa.Table.from_pylist(EVENTS, schema=schema), root / "trips" / "part-0.parquet")
    table = pv.FeatureTable(
        name="trips",
        entities=["rider"],
        features=[pv.Feature("fare", pv.ValueType.DOUBLE)],
        batch_source=pv.FileSource(path=str(path.parent), event_timestamp_column="ts"),
        aggregations=AGGREGATIONS,
        max_age=timedelta(hours=1),
    )
    with pv.Client(root / "provender.yaml") as client:
        client.apply([RIDER, table])
        client.start_offline_to_online_ingestion("trips", start=END - timedelta(days=1), end=END).wait()
    return root


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[Server]:
    server = start_server(ProjectFolder(project))
    try:
        yield server
    finally:
        assert server.stop() == 0, read_log(server.log)


@pytest.fixture(scope="module")
def historical(project: Path) -> dict[str, list[object]]:
    """Historical retrieval of the aggregates at ``end``."""
    entity_df = pd.DataFrame({"rider": RIDERS, "event_timestamp": [END] * len(RIDERS)})
    with pv.Client(project / "provender.yaml") as client:
        table = client.get_historical_features(REFS[1:], entity_df).to_arrow()
    return {name: table.column(name).to_pylist() for name in AGGREGATE_COLUMNS}


def test_historical_values_at_end(historical: dict[str, list[object]]) -> None:
    """The reference the online paths are compared with (bounds: T - window excluded, T included)."""
    assert historical == {
        "trips__fare_sum_7d": [20.0, 7.5, 3.0, None],
        "trips__fare_count_1d": [2, 1, 0, 0],
        "trips__fare_mean_7d": [pytest.approx(20.0 / 3), 7.5, 3.0, None],
        "trips__fare_max_1d": [6.0, 7.5, None, None],
    }


@pytest.mark.parametrize("via", ["in-process", "http", "grpc"])
def test_online_aggregates_equal_historical_while_plain_features_are_outside_max_age(
    project: Path, server: Server, historical: dict[str, list[object]], via: str
) -> None:
    url = {"in-process": None, "http": server.http_url, "grpc": server.grpc_url}[via]
    with pv.Client(project / "provender.yaml", serving_url=url) as client:
        response = client.get_online_features(REFS, [{"rider": r} for r in RIDERS])
        values, statuses = response.to_dict(), response.statuses()
    for column in AGGREGATE_COLUMNS:
        assert values[column] == historical[column], column
        expected = ["NULL_VALUE" if v is None else "PRESENT" for v in historical[column][:3]] + ["NOT_FOUND"]
        assert statuses[column] == expected, column
    assert values["trips__fare"] == [None] * len(RIDERS)
    assert statuses["trips__fare"] == ["OUTSIDE_MAX_AGE"] * 3 + ["NOT_FOUND"]
