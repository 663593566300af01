"""A real Spark standalone cluster on loopback: a retrieval and an ingestion into Redis through it.

The master and a one-core worker are started from the pyspark package's jars (the fixture in
``tests/support/spark.py``); the client runs in a process of its own, since this one already
holds the local session (Spark allows one per process). Its answers must equal DuckDB's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import provender as pv
from provender.config import load_settings
from tests.support.builders import DRIVER, write_config
from tests.support.ingestion import driver_table, hour, write_driver_rows
from tests.support.services import RedisServer
from tests.support.spark import EXECUTOR_MEMORY, SparkStandalone, offline_options

pytestmark = [pytest.mark.service, pytest.mark.slow]
NOW = hour(datetime.now(UTC))
ROOT = Path(__file__).resolve().parents[2]


def test_retrieval_and_ingestion_on_a_standalone_cluster(
    spark_standalone: SparkStandalone, redis_server: RedisServer, tmp_path: Path
) -> None:
    write_driver_rows(tmp_path / "src", drivers=200, hours=30, end=NOW)
    table = driver_table(tmp_path / "src")
    online = {"store": "redis", "url": redis_server.url}
    config = write_config(tmp_path / "project", online=online, project="cluster")
    entities = pa.table(
        {
            "driver_id": pa.array([(n * 7) % 210 for n in range(500)], pa.int64()),
            "event_timestamp": pa.array(
                [NOW - timedelta(minutes=37 * n) for n in range(500)], pa.timestamp("us", tz="UTC")
            ),
            "label": pa.array(range(500), pa.int64()),
        }
    )
    pq.write_table(entities, tmp_path / "entities.parquet")
    with pv.Client(settings=load_settings(config, environ={})) as duck:
        duck.apply([DRIVER, table])
        expected = duck.get_historical_features(["driver_stats"], str(tmp_path / "entities.parquet")).to_arrow()

    start, end = NOW - timedelta(hours=20), NOW - timedelta(hours=2)
    offline = offline_options(
        spark_standalone.master_url,
        tmp_path / "staging",
        **{"spark.executor.memory": EXECUTOR_MEMORY, "spark.cores.max": "1"},
    )
    spec = {
        "config": str(config),
        "offline": offline,
        "refs": ["driver_stats"],
        "entities": str(tmp_path / "entities.parquet"),
        "out": str(tmp_path / "result.parquet"),
        "table": "driver_stats",
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENDER_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.spark", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT ")), None)
    assert line is not None, f"the cluster client failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(line.removeprefix("@@RESULT "))

    assert report["master"] == spark_standalone.master_url
    assert str(report["application_id"]).startswith("app-"), report  # a standalone application, not local-*
    assert report["rows"] == 500
    assert pq.read_table(tmp_path / "result.parquet").equals(expected)
    assert report["rows_written"] == 200
    with pv.Client(settings=load_settings(config, environ={})) as duck:
        online_rows = duck.get_online_features(["driver_stats"], [{"driver_id": i} for i in range(1, 201)]).to_dict()
        at_end = (
            duck.get_historical_features(
                ["driver_stats"],
                pa.table(
                    {
                        "driver_id": pa.array(range(1, 201), pa.int64()),
                        "event_timestamp": pa.array(
                            [end - timedelta(microseconds=1)] * 200, pa.timestamp("us", tz="UTC")
                        ),
                    }
                ),
            )
            .to_arrow()
            .to_pydict()
        )
    for column in ("driver_stats__trips", "driver_stats__rate", "driver_stats__tag"):
        assert online_rows[column] == at_end[column], column
    assert set(online_rows["driver_stats__tag"]) == {"winner"}
