"""A SQL source's inputs are read for what the read needs, with the rows of a whole read.

The SQL source joins date-partitioned trips (local Parquet, or a Delta table with one commit
per day) with drivers; its event time is the trips' ``ts`` unchanged, so each retrieval and
ingestion reads only the trips of its window (the longest aggregation window and ``max_age``
back from the earliest entity row). On every engine the results equal those of a read with the
planning switched off (every input read whole), including a 3-day window that reaches back to
the pruning bound; the partitions outside the window are then made unreadable, and the pruned
read still gives the same rows, where a whole read fails.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import provender as pv
from provender.errors import BackendError, DataError
from provender.offline import sql_source
from tests.support.builders import DRIVER
from tests.support.engines import EngineCase
from tests.support.services import RedisServer

END = datetime(2026, 5, 10, tzinfo=UTC)
DAY = timedelta(days=1)
DAYS = 9
QUERY = """
    SELECT t.driver_id, t.ts, t.fare * 2 AS fare2, upper(d.city) AS city
    FROM trips AS t JOIN drivers AS d ON t.driver_id = d.driver_id
    WHERE d.active
"""
REFS = ["rides:fare2", "rides:city", "rides:fare2_sum_3d", "rides:trips_3d"]
ENTITY_TIMES = [END - 2 * DAY, END - 2 * DAY + timedelta(hours=5), END - DAY, END - timedelta(minutes=1), END]
BOUND = END - 5 * DAY  # the earliest entity time minus the longest window: older partitions are pruned


def trips() -> pa.Table:
    """Trips over the 9 days before END, an unused wide column, and one exactly on the pruning bound."""
    rng = np.random.default_rng(16)
    n = 40 * DAYS
    start = int((END - DAYS * DAY).timestamp() * 1_000_000)
    micros = np.sort(rng.integers(start, int(END.timestamp() * 1_000_000), n))
    micros[n // 2] = int(BOUND.timestamp() * 1_000_000)
    return pa.table(
        {
            "driver_id": pa.array(rng.integers(1, 5, n), pa.int64()),
            "fare": pa.array(rng.integers(4, 200, n) / 4),  # quarters: sums are exact in any order
            "ts": pa.array(micros, pa.timestamp("us", tz="UTC")),
            "note": pa.array([f"trip {i} " * 8 for i in range(n)]),
        }
    )


def write_trips(root: Path) -> list[Path]:
    """One Parquet file per day under ``root/day=YYYY-MM-DD``; the files, oldest first."""
    table = trips()
    days = pd.Series(table.column("ts").to_pandas()).dt.strftime("%Y-%m-%d")
    files = []
    for day in sorted(set(days)):
        path = root / f"day={day}" / "part-0.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pa.array(days == day)), path)
        files.append(path)
    return files


def make_table(root: Path, trips_source: pv.FileSource | pv.DeltaSource) -> pv.FeatureTable:
    drivers = pa.table({"driver_id": [1, 2, 3, 4], "city": ["paris", "lyon", "nice", "lille"]})
    drivers = drivers.append_column("active", pa.array([True, True, True, False]))
    pq.write_table(drivers, root / "drivers.parquet")
    return pv.FeatureTable(
        name="rides",
        entities=["driver_id"],
        features=[pv.Feature("fare2", pv.ValueType.DOUBLE), pv.Feature("city", pv.ValueType.STRING)],
        max_age=DAY,
        batch_source=pv.SqlSource(
            query=QUERY,
            sources={
                "trips": trips_source,
                "drivers": pv.FileSource(path=str(root / "drivers.parquet"), event_timestamp_column="since"),
            },
            event_timestamp_column="ts",
        ),
        aggregations=[
            pv.Aggregation(column="fare2", function="sum", window=3 * DAY, name="fare2_sum_3d"),
            pv.Aggregation(column="fare2", function="count", window=3 * DAY, name="trips_3d"),
        ],
    )


def entity_df() -> pd.DataFrame:
    times = [at for at in ENTITY_TIMES for _ in range(4)]
    return pd.DataFrame({"driver_id": [1, 2, 3, 4] * len(ENTITY_TIMES), "event_timestamp": times})


def read_all(
    engine: EngineCase, project: Path, table: pv.FeatureTable, redis: RedisServer, *, apply: bool = True
) -> tuple[list[dict[str, object]], dict[str, list[object]], list[str]]:
    """The training set, the online values after ingesting ``[END - 1 day, END)``, the trips files read.

    ``apply=False``: the project in ``project`` was applied before (apply reads every input's schema).
    """
    online = {"store": "redis", "url": redis.url}
    with engine.client(project, online=online, project=f"p{project.name}_{engine.name}") as client:
        if apply:
            client.apply([DRIVER, table])
        job = client.get_historical_features(REFS, entity_df())
        rows = job.to_arrow().to_pylist()
        files = sorted(f.path for f in job.lineage()[0].files if "trips" in f.path)
        client.start_offline_to_online_ingestion("rides", start=END - DAY, end=END).wait()
        served = client.get_online_features(REFS, [{"driver_id": d} for d in (1, 2, 3, 4)]).to_dict()
    return rows, served, files


def whole_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the planning off: every input read whole, the query run as declared."""
    monkeypatch.setattr(sql_source, "plan_reads", lambda *args, **kwargs: None)


def test_pruned_reads_equal_whole_reads_and_skip_the_partitions_outside(
    engine: EngineCase, tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    files = write_trips(root / "trips")
    source = pv.FileSource(path=str(root / "trips"), event_timestamp_column="ts", date_partition_column="day")
    table = make_table(root, source)
    pruned = read_all(engine, tmp_path / "pruned", table, redis_server)
    with monkeypatch.context() as patch:
        whole_reads(patch)
        whole = read_all(engine, tmp_path / "whole", table, redis_server)
    assert pruned[0] == whole[0]
    assert pruned[1] == whole[1]
    assert any(row["rides__trips_3d"] for row in pruned[0])
    outside = [f for f in files if f.parent.name < f"day={BOUND.date()}"]
    assert len(outside) == 4
    assert pruned[2] == sorted(str(f) for f in files if f not in outside)
    assert whole[2] == sorted(str(f) for f in files)
    for path in outside:  # no longer Parquet: a read that opens one fails
        path.write_bytes(b"not parquet")
    assert read_all(engine, tmp_path / "pruned", table, redis_server, apply=False) == pruned
    with monkeypatch.context() as patch, pytest.raises((DataError, BackendError)):
        whole_reads(patch)
        read_all(engine, tmp_path / "whole", table, redis_server, apply=False)


def test_a_delta_input_keeps_only_the_files_of_the_window(
    engine: EngineCase, tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    deltalake = pytest.importorskip("deltalake")
    root = tmp_path / "data"
    root.mkdir()
    table_path = root / "trips_delta"
    for path in write_trips(root / "days"):  # one commit (one file) per day
        deltalake.write_deltalake(str(table_path), pq.read_table(path, partitioning=None), mode="append")
    table = make_table(root, pv.DeltaSource(path=str(table_path), event_timestamp_column="ts"))
    pruned = read_all(engine, tmp_path / "pruned", table, redis_server)
    with monkeypatch.context() as patch:
        whole_reads(patch)
        whole = read_all(engine, tmp_path / "whole", table, redis_server)
    assert pruned[:2] == whole[:2]
    assert len(whole[2]) == DAYS
    assert len(pruned[2]) == DAYS - 4  # the files whose statistics end before the bound are not read
