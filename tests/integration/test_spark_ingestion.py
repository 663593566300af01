"""What only the Spark engine does in offline-to-online ingestion.

The ingestion contract (the rule over ``[start, end)``, the event-time guard, training/serving
consistency, counts, failing jobs, windows) runs on Spark with Redis in
``tests/unit/ingestion/test_batch.py``. Here: stores the executors cannot reach are refused,
and a job can be cancelled.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import provender as pv
from provender.ingestion.batch import IngestionJob, JobCancelledError, JobStatus
from provender.offline.plan import LatestPlan, table_join
from provender.online.redis import RedisStore
from tests.support.builders import DRIVER, make_client
from tests.support.ingestion import driver_table, hour, write_driver_rows
from tests.support.services import RedisServer

pytestmark = [pytest.mark.service, pytest.mark.slow]
NOW = hour(datetime.now(UTC))


@pytest.mark.parametrize("online", [{"store": "sqlite", "path": ".provender/online.db"}, {"store": "memory"}])
def test_stores_the_executors_cannot_share_are_refused(
    tmp_path: Path, spark_engine: object, spark_options: dict[str, object], online: dict[str, object]
) -> None:
    write_driver_rows(tmp_path / "src", drivers=2, hours=2, end=NOW)
    with make_client(tmp_path / "p", offline=spark_options, online=online) as client:
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
