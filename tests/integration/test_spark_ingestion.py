"""What only the Spark engine does in offline-to-online ingestion.

The ingestion contract (the rule over ``[start, end)``, the event-time guard, training/serving
consistency, counts, failing jobs, windows) runs on Spark with Redis in
``tests/unit/ingestion/test_batch.py``. Here: stores the executors cannot reach are refused,
a job can be cancelled, the statistics of what the executors wrote are recorded, and
expectations are enforced (the rows then pass through the driver).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import provender as pv
from provender.ingestion.batch import IngestionJob, JobCancelledError, JobStatus
from provender.ingestion.validation import ExpectationError
from provender.offline.plan import LatestPlan, table_join
from provender.offline.statistics import QUANTILES
from provender.online.redis import RedisStore
from tests.integration.test_ingestion_validation import BAD, EXPECTED
from tests.integration.test_ingestion_validation import END as QUALITY_END
from tests.integration.test_ingestion_validation import START as QUALITY_START
from tests.integration.test_ingestion_validation import _by_expectation as by_expectation
from tests.integration.test_ingestion_validation import _online as quality_online
from tests.integration.test_ingestion_validation import _table as quality_table
from tests.integration.test_ingestion_validation import write_quality_rows as quality_source
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

    def run(running: IngestionJob) -> None:
        spark_engine.ingest_to_online(plan, store_factory=factory, progress=running)

    job.start(run)
    time.sleep(2.0)
    started = time.monotonic()
    job.cancel()
    with pytest.raises(JobCancelledError, match="cancelled"):
        job.wait(timeout_seconds=60)
    assert job.status is JobStatus.CANCELLED
    assert time.monotonic() - started < 20


def test_executors_writing_record_the_statistics_of_what_they_wrote(
    tmp_path: Path, spark_options: dict[str, object], spark_engine: object, redis_server: RedisServer
) -> None:
    """Spark's executors write; the job still records statistics, equal to DuckDB's job of the same rows."""
    written = write_driver_rows(tmp_path / "src", drivers=30, hours=3, end=NOW)
    latest = written.filter(
        pc.and_(
            pc.equal(written.column("tag"), "winner"),
            pc.equal(written.column("ts"), pa.scalar(NOW - timedelta(hours=1), pa.timestamp("us", tz="UTC"))),
        )
    )
    start = NOW - timedelta(days=1)
    online = {"store": "redis", "url": redis_server.url}
    recorded = {}
    for name, offline in (("spark", spark_options), ("duckdb", None)):
        with make_client(tmp_path / name, offline=offline, online=online, project=f"stats-{name}") as client:
            client.apply([DRIVER, driver_table(tmp_path / "src")])
            job = client.start_offline_to_online_ingestion("driver_stats", start=start, end=NOW).wait(
                timeout_seconds=180
            )
            assert job.rows_written == 30
            assert job.statistics is not None
            assert client.get_statistics("driver_stats", from_job=job.id) == job.statistics
            recorded[name] = job.statistics
    spark, duckdb = recorded["spark"], recorded["duckdb"]
    assert (spark.engine, spark.rows, spark.job_id is not None) == ("spark", 30, True)
    assert "engine's workers" in spark.notes[0]
    for feature in ("trips", "rate"):
        values = latest.column(feature).to_numpy().astype("float64")
        found = spark[feature]
        assert found.quantiles == tuple(float(q) for q in np.quantile(values, QUANTILES))
        assert found.histogram == duckdb[feature].histogram
        assert (found.count, found.min, found.max) == (30, values.min(), values.max())
        assert found.mean == pytest.approx(values.mean(), rel=1e-12)
        assert found.std == pytest.approx(values.std(ddof=1), rel=1e-9)
        assert found == dataclasses.replace(duckdb[feature], mean=found.mean, std=found.std)
    assert spark["tag"].top_values == duckdb["tag"].top_values == (("winner", 30),)


def test_expectations_are_enforced_on_spark(
    tmp_path: Path, spark_options: dict[str, object], spark_engine: object, redis_server: RedisServer
) -> None:
    """Validated rows pass through the driver: ``fail`` writes nothing, ``skip`` writes the valid rows only."""
    source = quality_source(tmp_path)
    online = {"store": "redis", "url": redis_server.url}
    with make_client(tmp_path / "p", offline=spark_options, online=online, project="spark-quality") as client:
        client.apply([DRIVER, quality_table(source)])
        failed = client.start_offline_to_online_ingestion("driver_quality", start=QUALITY_START, end=QUALITY_END)
        with pytest.raises(ExpectationError, match="nothing written"):
            failed.wait(timeout_seconds=180)
        assert failed.validation is not None and by_expectation(failed.validation) == EXPECTED
        assert set(quality_online(client).values()) == {None}
        job = client.start_offline_to_online_ingestion(
            "driver_quality", start=QUALITY_START, end=QUALITY_END, validation_policy="skip"
        ).wait(timeout_seconds=180)
        assert job.validation is not None
        assert (job.validation.rows_checked, job.validation.rows_skipped) == (10, len(BAD))
        assert {d for d, v in quality_online(client).items() if v is None} == BAD
        assert job.statistics is not None and job.statistics.rows == 10 - len(BAD)
