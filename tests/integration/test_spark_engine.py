"""What only the Spark engine has: its settings, its job handle, cancelling, Spark's own errors.

Answers are the engine contract's (``tests/contract/test_offline_engine*.py``, with
``read_latest``), the differential test's (``test_spark_differential.py``) and the ingestion
tests' (``tests/unit/ingestion/test_batch.py``).
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import provender as pv
from provender.client.historical import to_entity_rows
from provender.ingestion.batch import JobCancelledError, JobStatus
from provender.offline.duckdb import DuckDBEngine
from provender.offline.plan import build_retrieval_plan, table_join
from provender.offline.spark import SparkConfig, SparkEngine, SparkRetrievalJob, session_conf
from provender.offline.statistics import StatisticsPlan
from tests.support.builders import ENTITIES

pytestmark = [pytest.mark.service, pytest.mark.slow]

DAY0 = datetime(2024, 3, 1, tzinfo=UTC)


def stats_table(path: Path, *, csv: bool = False) -> pv.FeatureTable:
    return pv.FeatureTable(
        name="stats",
        entities=["driver_id"],
        features=[pv.Feature("trips", pv.ValueType.INT64), pv.Feature("rate", pv.ValueType.DOUBLE)],
        batch_source=pv.FileSource(
            path=str(path),
            event_timestamp_column="ts",
            created_timestamp_column="created",
            file_format=pv.CsvFormat() if csv else pv.ParquetFormat(),
        ),
        max_age=timedelta(days=30),
    )


def write_stats(path: Path, rows: int, *, keys: int, seed: int = 3) -> None:
    """``rows`` random rows over ``keys`` drivers and 10 days, with ties on event time."""
    rng = np.random.default_rng(seed)
    event = np.datetime64(DAY0.replace(tzinfo=None), "us") + rng.integers(0, 10 * 86_400, rows).astype("timedelta64[s]")
    created = event + rng.integers(0, 3, rows).astype("timedelta64[h]")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "driver_id": rng.integers(0, keys, rows),
                "trips": rng.integers(0, 1000, rows),
                "rate": rng.random(rows),
                "ts": pa.array(event, pa.timestamp("us", tz="UTC")),
                "created": pa.array(created, pa.timestamp("us", tz="UTC")),
            }
        ),
        path,
    )


def entity_table(rows: int, *, keys: int, seed: int = 4) -> pa.Table:
    rng = np.random.default_rng(seed)
    stamps = np.datetime64(DAY0.replace(tzinfo=None), "us") + rng.integers(0, 12 * 86_400, rows).astype(
        "timedelta64[s]"
    )
    return pa.table(
        {"driver_id": rng.integers(0, keys + 5, rows), "event_timestamp": pa.array(stamps, pa.timestamp("us"))}
    )


@pytest.fixture
def engine(spark_engine: object) -> SparkEngine:
    assert isinstance(spark_engine, SparkEngine)
    return spark_engine


def retrieve(engine: SparkEngine, table: pv.FeatureTable, entities: pa.Table) -> SparkRetrievalJob:
    rows = to_entity_rows(entities)
    plan = build_retrieval_plan(
        ["stats"], entity_schema=rows.schema, tables={"stats": table}, entities=ENTITIES, project="default"
    )
    return engine.retrieve(plan, rows)


# -- settings ----------------------------------------------------------------------------------


def test_settings_are_validated_and_yaml_scalars_become_strings() -> None:
    config = SparkConfig.model_validate(
        {
            "master": "spark://10.0.0.5:7077",
            "conf": {"spark.executor.instances": 4, "spark.dynamicAllocation.enabled": True},
        }
    )
    conf = session_conf(config)
    assert conf["spark.executor.instances"] == "4"
    assert conf["spark.dynamicAllocation.enabled"] == "true"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert "spark.driver.host" not in conf, "a remote cluster must reach the driver: no loopback default"
    assert session_conf(SparkConfig())["spark.driver.bindAddress"] == "127.0.0.1"


def test_settings_the_engine_relies_on_cannot_be_changed() -> None:
    config = SparkConfig.model_validate({"conf": {"spark.sql.session.timeZone": "Europe/Paris"}})
    with pytest.raises(pv.ConfigError, match=r"offline\.conf\.spark\.sql\.session\.timeZone.*'UTC'"):
        session_conf(config)


def test_an_unknown_setting_is_named_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(pv.ConfigError, match=r"offline\.stagin_path.*staging_path"):
        SparkEngine.from_options({"engine": "spark", "stagin_path": "x"}, base_dir=tmp_path)


# -- the job -------------------------------------------------------------------------------------


def test_job_status_application_and_results(engine: SparkEngine, tmp_path: Path) -> None:
    write_stats(tmp_path / "stats.parquet", 2_000, keys=50)
    table = stats_table(tmp_path / "stats.parquet")
    entities = entity_table(300, keys=50)
    job = retrieve(engine, table, entities)
    assert job.application_id == engine.application_id
    assert job.application_id.startswith("local-")
    assert job.job_group.startswith("provender-")
    assert job.wait(timeout_seconds=120) is job
    assert job.status is JobStatus.SUCCEEDED and job.error is None
    result = job.to_arrow()
    assert result.num_rows == 300
    assert result.column("driver_id").to_pylist() == entities.column("driver_id").to_pylist()
    assert job.to_parquet(tmp_path / "out.parquet") == 300
    assert pq.read_table(tmp_path / "out.parquet").equals(result)
    assert pa.Table.from_batches(list(job.to_arrow_reader()), schema=job.schema).equals(result)
    duck = DuckDBEngine.from_options({"engine": "duckdb"}, base_dir=tmp_path)
    try:
        rows = to_entity_rows(entities)
        plan = build_retrieval_plan(
            ["stats"], entity_schema=rows.schema, tables={"stats": table}, entities=ENTITIES, project="default"
        )
        assert duck.retrieve(plan, rows).to_arrow().equals(result)
    finally:
        duck.close()
    staged = Path(engine.staging.arrow_path(f"retrieval-{job.id}"))
    assert staged.is_dir()
    job.close()
    assert not staged.exists(), "closing a job deletes its staged files"


def test_cancel_stops_a_running_retrieval(engine: SparkEngine, tmp_path: Path) -> None:
    write_stats(tmp_path / "big.parquet", 4_000_000, keys=400_000)
    job = retrieve(engine, stats_table(tmp_path / "big.parquet"), entity_table(1_000_000, keys=400_000))
    time.sleep(1.5)
    running = job.status  # a local: narrowing job.status itself would outlive job.cancel() for mypy
    assert running is JobStatus.RUNNING
    started = time.monotonic()
    job.cancel()
    with pytest.raises(JobCancelledError, match="cancelled"):
        job.wait(timeout_seconds=60)
    assert job.status is JobStatus.CANCELLED
    assert time.monotonic() - started < 15
    with pytest.raises(JobCancelledError):
        job.to_arrow()


def test_a_failing_spark_job_raises_sparks_message_on_wait(engine: SparkEngine, tmp_path: Path) -> None:
    """A bad value past what the driver checks (the first block of a CSV) fails inside Spark."""
    lines = ["driver_id,trips,rate,ts,created"]
    lines += [f"{n % 50},{n},0.5,2024-03-0{1 + n % 9} 00:00:00,2024-03-01 00:00:00" for n in range(60_000)]
    lines.append("7,not-a-number,0.5,2024-03-05 00:00:00,")
    (tmp_path / "stats.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert (tmp_path / "stats.csv").stat().st_size > 2**21, "the bad row must lie beyond pyarrow's first block"
    job = retrieve(engine, stats_table(tmp_path / "stats.csv", csv=True), entity_table(10, keys=50))
    with pytest.raises(
        pv.DataError, match=r"(?s)historical retrieval failed on the data: .*CAST_INVALID_INPUT.*not-a-number"
    ):
        job.wait(timeout_seconds=120)
    assert job.status is JobStatus.FAILED
    assert isinstance(job.error, pv.DataError)
    with pytest.raises(pv.DataError, match="not-a-number"):
        job.to_arrow()


def test_bad_input_fails_before_any_spark_job_and_leaves_nothing_staged(engine: SparkEngine, tmp_path: Path) -> None:
    write_stats(tmp_path / "stats.parquet", 100, keys=5)
    table = stats_table(tmp_path / "stats.parquet")
    nulls = pa.table({"driver_id": [1, 2], "event_timestamp": pa.array([DAY0, None], pa.timestamp("us", tz="UTC"))})
    before = set(Path(engine.staging.root).iterdir()) if Path(engine.staging.root).exists() else set()
    with pytest.raises(pv.DataError, match=r"null in 1 row\(s\), the first at row 1"):
        retrieve(engine, table, nulls)
    renamed = stats_table(tmp_path / "stats.parquet")
    assert renamed.batch_source is not None
    missing = pv.FeatureTable(
        name="stats",
        entities=["driver_id"],
        features=[pv.Feature("trips", pv.ValueType.INT64), pv.Feature("speed", pv.ValueType.DOUBLE)],
        batch_source=renamed.batch_source,
    )
    with pytest.raises(pv.DataError, match=r"has no column 'speed' \(feature 'speed'\)"):
        retrieve(engine, missing, entity_table(5, keys=5))
    assert not set(Path(engine.staging.root).iterdir()) - before, "nothing new is staged"


def test_aggregation_statistics_are_refused_before_any_spark_job(engine: SparkEngine, tmp_path: Path) -> None:
    """Statistics cover source features: a table with aggregations is refused clearly, never half-computed."""
    write_stats(tmp_path / "stats.parquet", 20, keys=3)
    week = pv.Aggregation(column="trips", function="sum", window=timedelta(days=7), name="trips_7d")
    table = dataclasses.replace(stats_table(tmp_path / "stats.parquet"), aggregations=[week])
    before = set(Path(engine.staging.root).iterdir()) if Path(engine.staging.root).exists() else set()
    refused = r"'stats' has windowed aggregations, which the spark engine does not compute yet"
    join = table_join(table, table.features, ENTITIES)
    with pytest.raises(pv.DataError, match=refused):
        engine.compute_statistics(StatisticsPlan(join=join, start=DAY0, end=DAY0 + timedelta(days=10)))
    assert not set(Path(engine.staging.root).iterdir()) - before, "nothing new is staged"
