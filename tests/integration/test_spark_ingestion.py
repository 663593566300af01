"""Offline-to-online ingestion on the Spark engine: the executors write to a real Redis.

The ingestion tests of ``tests/unit/ingestion/test_batch.py`` (the rule over ``[start, end)``,
the event-time guard, training/serving consistency, counts, a failing job, window checks) run
here unchanged, their ``client`` being a project on the local Spark session with a Redis
online store; each test gets its own project, so their keys never meet. Then what only Spark
does: stores the executors cannot share are refused, and a job can be cancelled.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import provender as pv
from provender.config import load_settings
from provender.ingestion.batch import IngestionJob, JobCancelledError, JobStatus
from provender.offline.plan import LatestPlan, table_join
from provender.online.redis import RedisStore
from tests.support.ingestion import DRIVER, driver_table, hour, write_driver_rows
from tests.support.services import RedisServer
from tests.unit.ingestion.test_batch import (  # noqa: F401 - collected here, with this module's client
    test_a_failing_job_reports_its_error_on_wait,
    test_bad_windows_are_refused,
    test_batches_stream_and_counts_add_up,
    test_ingestion_writes_the_latest_row_per_key_in_the_window,
    test_naive_window_bounds_are_utc,
    test_online_values_equal_historical_values_at_the_same_time,
    test_rerunning_or_ingesting_an_older_window_never_moves_values_back,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]
NOW = hour(datetime.now(UTC))
_PROJECTS = itertools.count()


def spark_client(
    project_dir: Path, *, offline: dict[str, object], online: dict[str, object], project: str = "default"
) -> pv.Client:
    """A client on a fresh project with the given ``offline:`` and ``online:`` sections."""
    project_dir.mkdir(parents=True, exist_ok=True)
    config = {"project": project, "registry": "sqlite:///.provender/registry.db", "offline": offline, "online": online}
    path = project_dir / "provender.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return pv.Client(settings=load_settings(path, environ={}))


@pytest.fixture
def client(
    tmp_path: Path, spark_engine: object, spark_options: dict[str, object], redis_server: RedisServer
) -> Iterator[pv.Client]:
    """A Spark-engine project writing to the session's Redis, in a project of its own."""
    online = {"store": "redis", "url": redis_server.url}
    project = f"spark{next(_PROJECTS)}x{time.monotonic_ns()}"
    with spark_client(tmp_path / "project", offline=spark_options, online=online, project=project) as client:
        yield client


@pytest.mark.parametrize("online", [{"store": "sqlite", "path": ".provender/online.db"}, {"store": "memory"}])
def test_stores_the_executors_cannot_share_are_refused(
    tmp_path: Path, spark_engine: object, spark_options: dict[str, object], online: dict[str, object]
) -> None:
    write_driver_rows(tmp_path / "src", drivers=2, hours=2, end=NOW)
    with spark_client(tmp_path / "p", offline=spark_options, online=online) as client:
        client.apply([DRIVER, driver_table(tmp_path / "src")])
        job = client.start_offline_to_online_ingestion("driver_stats", start=NOW - timedelta(days=1), end=NOW)
        with pytest.raises(pv.ConfigError, match=rf"(?i)online\.store.*executors.*{online['store']}.*redis"):
            job.wait(timeout_seconds=30)
        assert job.status is JobStatus.FAILED


def test_cancel_stops_the_spark_job(tmp_path: Path, spark_engine: object, redis_server: RedisServer) -> None:
    """A cancelled ingestion ends CANCELLED within seconds, its Spark job group cancelled."""
    from provender.offline.spark import SparkEngine

    assert isinstance(spark_engine, SparkEngine)
    table = driver_table(tmp_path / "src", max_age=None)
    rows = 3_000_000
    keys = np.random.default_rng(1).integers(0, 1_000_000, rows)
    stamps = (NOW - timedelta(hours=1)).replace(tzinfo=None)
    (tmp_path / "src").mkdir()
    pq.write_table(
        pa.table(
            {
                "driver_id": keys,
                "trips": keys,
                "rate": np.zeros(rows),
                "tag": pa.array(["x"] * rows),
                "ts": pa.array(np.full(rows, np.datetime64(stamps, "us")), pa.timestamp("us", tz="UTC")),
                "created": pa.array(np.full(rows, np.datetime64(stamps, "us")), pa.timestamp("us", tz="UTC")),
            }
        ),
        tmp_path / "src" / "part-0.parquet",
    )
    plan = LatestPlan(
        join=table_join(table, table.features, {"driver_id": DRIVER}), start=NOW - timedelta(days=1), end=NOW
    )
    job = IngestionJob(table=table.name, description="a job to cancel")
    factory = functools.partial(RedisStore.from_options, {"url": redis_server.url}, base_dir=tmp_path, project="cancel")
    job.start(lambda j: spark_engine.ingest_to_online(plan, store_factory=factory, progress=j))
    time.sleep(2.0)
    started = time.monotonic()
    job.cancel()
    with pytest.raises(JobCancelledError, match="cancelled"):
        job.wait(timeout_seconds=60)
    assert job.status is JobStatus.CANCELLED
    assert time.monotonic() - started < 20
