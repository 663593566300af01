"""S3 Parquet and S3 Delta sources on the Spark engine (local mode) against a real S3 server (moto).

Spark reads them staged through pyarrow: historical retrieval, ingestion (written to Redis by the
executors) and lineage are the DuckDB engine's over the same sources, and the local files'.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

import provender as pv
from provender.config import load_settings
from tests.support.builders import DRIVER, ENTITIES, Layout, source_schema, write_config, write_table
from tests.support.objectstore import ACCESS_KEY, SECRET_KEY, S3Server
from tests.support.retrieval import driver_rows, driver_stats, entity_frame
from tests.support.services import RedisServer

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.timeout(300)]

REFS = ["driver_stats:trips", "driver_stats:rate"]
START, END = datetime(2024, 3, 2, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)


def delta_options(server: S3Server) -> dict[str, str]:
    """deltalake's storage options for writing to ``server``."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": server.endpoint_url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }


def _sources(tmp_path: Path, server: S3Server) -> dict[str, pv.FeatureTable]:
    """driver_stats over the same rows: local hive Parquet, S3 hive Parquet, an S3 Delta table."""
    deltalake = pytest.importorskip("deltalake")
    local = write_table(
        driver_stats(max_age=None), driver_rows(), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE
    )
    assert isinstance(local.batch_source, pv.FileSource)
    bucket = f"spark-{uuid.uuid4().hex[:12]}"
    fs = server.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    with contextlib.suppress(OSError):
        fs.create_dir(bucket)
    pafs.copy_files(local.batch_source.path, f"{bucket}/parquet", destination_filesystem=fs)
    rows = pa.Table.from_pylist(driver_rows(), schema=source_schema(driver_stats(), ENTITIES))
    for day in range(1, 6):  # one commit per day, so files can be pruned by their statistics
        deltalake.write_deltalake(
            f"s3://{bucket}/delta",
            rows.filter(pa.compute.equal(pa.compute.day(rows["event_ts"]), day)),
            storage_options=delta_options(server),
            mode="append",
        )
    delta = pv.DeltaSource(
        path=f"s3://{bucket}/delta", event_timestamp_column="event_ts", created_timestamp_column="created"
    )
    return {
        "local": local,
        "s3": dataclasses.replace(
            local, batch_source=dataclasses.replace(local.batch_source, path=f"s3://{bucket}/parquet")
        ),
        "delta": dataclasses.replace(local, batch_source=delta),
    }


def _run(
    root: Path, table: pv.FeatureTable, *, offline: dict[str, object], storage: dict[str, object], redis: RedisServer
) -> tuple[pa.Table, dict[str, list[object]], list[tuple[str, int | None]]]:
    project = f"p{uuid.uuid4().hex[:10]}"
    path = write_config(root, offline=offline, online={"store": "redis", "url": redis.url}, project=project)
    with pv.Client(settings=load_settings(path, environ={}, overrides={"storage": storage})) as client:
        client.apply([ENTITIES["driver_id"], table])
        job = client.get_historical_features(REFS, entity_frame())
        frame = job.to_arrow()
        lineage = [(f.path.rsplit("/", 2)[-2], job.lineage()[0].delta_version) for f in job.lineage()[0].files]
        client.start_offline_to_online_ingestion("driver_stats", start=START, end=END).wait(timeout_seconds=120)
        online = client.get_online_features(REFS, [{"driver_id": 1}, {"driver_id": 2}, {"driver_id": 3}]).to_dict()
    return frame, online, lineage


def test_spark_reads_s3_parquet_and_s3_delta_as_duckdb_does(
    tmp_path: Path,
    s3_server: S3Server,
    redis_server: RedisServer,
    spark_engine: object,
    spark_options: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    tables = _sources(tmp_path, s3_server)
    storage = s3_server.storage()
    baseline = _run(
        tmp_path / "duck-local", tables["local"], offline={"engine": "duckdb"}, storage={}, redis=redis_server
    )
    assert baseline[1]["driver_stats__trips"] == [111, 112, None]  # the last rows before the 4th
    for kind in ("s3", "delta"):
        duck = _run(
            tmp_path / f"duck-{kind}", tables[kind], offline={"engine": "duckdb"}, storage=storage, redis=redis_server
        )
        spark = _run(
            tmp_path / f"spark-{kind}", tables[kind], offline=dict(spark_options), storage=storage, redis=redis_server
        )
        assert spark[0].to_pylist() == duck[0].to_pylist() == baseline[0].to_pylist(), kind
        assert spark[1] == duck[1] == baseline[1], kind
        assert spark[2] == duck[2], kind  # the same files read (lineage), the same Delta version
    # The entity rows end on 03-04: the Delta commit of 03-05 is never read (its statistics), nor its partition.
    assert [d for d, _ in spark[2]] == ["delta"] * 4 and {v for _, v in spark[2]} == {4}


def test_incremental_delta_ingestion_on_spark_reads_only_the_new_commit(
    tmp_path: Path, redis_server: RedisServer, spark_engine: object, spark_options: dict[str, object]
) -> None:
    deltalake = pytest.importorskip("deltalake")
    rows = pa.Table.from_pylist(driver_rows(), schema=source_schema(driver_stats(), ENTITIES))
    path = tmp_path / "delta"
    day = pa.compute.day(rows["event_ts"])
    for d in range(1, 4):
        deltalake.write_deltalake(str(path), rows.filter(pa.compute.equal(day, d)), mode="append")
    source = pv.DeltaSource(path=str(path), event_timestamp_column="event_ts", created_timestamp_column="created")
    table = dataclasses.replace(driver_stats(max_age=None), batch_source=source)
    end = datetime(2024, 3, 10, tzinfo=UTC)
    online = {"store": "redis", "url": redis_server.url}
    config = write_config(
        tmp_path / "p", offline=dict(spark_options), online=online, project=f"p{uuid.uuid4().hex[:8]}"
    )
    with pv.Client(settings=load_settings(config, environ={})) as client:
        client.apply([ENTITIES["driver_id"], table])
        first = client.start_offline_to_online_ingestion("driver_stats", start=START, end=end, incremental=True).wait()
        for d in (4, 5):
            deltalake.write_deltalake(str(path), rows.filter(pa.compute.equal(day, d)), mode="append")
        second = client.start_offline_to_online_ingestion("driver_stats", start=START, end=end, incremental=True).wait()
        (before,), (after,) = client.get_job(first.id).lineage(), client.get_job(second.id).lineage()
        got = client.get_online_features(REFS, [{"driver_id": 1}, {"driver_id": 2}]).to_dict()
    assert (before.delta_version, before.changes_since, len(before.files)) == (2, None, 2)  # days 2-3 (>= START)
    assert (after.delta_version, after.changes_since, len(after.files)) == (4, 2, 2)  # only days 4 and 5
    assert got["driver_stats__trips"] == [191, 192]  # the last rows (n = 19), as a full ingestion gives


def test_spark_takes_entity_rows_from_s3_and_writes_the_training_set_there(
    tmp_path: Path, s3_server: S3Server, spark_engine: object, spark_options: dict[str, object]
) -> None:
    """Entity rows as an s3:// Parquet object, output to s3://: the rows of the same retrieval from a DataFrame."""
    import pyarrow.parquet as pq

    tables = _sources(tmp_path, s3_server)
    bucket = tables["s3"].batch_source.path.split("/")[2]  # type: ignore[union-attr]
    fs = s3_server.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    with fs.open_output_stream(f"{bucket}/entities/rows.parquet") as out:
        pq.write_table(pa.Table.from_pandas(entity_frame(), preserve_index=False), out)
    config = write_config(tmp_path / "p", offline=dict(spark_options), project=f"p{uuid.uuid4().hex[:8]}")
    settings = load_settings(config, environ={}, overrides={"storage": s3_server.storage()})
    with pv.Client(settings=settings) as client:
        client.apply([ENTITIES["driver_id"], tables["s3"]])
        expected = client.get_historical_features(REFS, entity_frame()).to_arrow()
        job = client.get_historical_features(REFS, f"s3://{bucket}/entities/rows.parquet")
        assert job.to_arrow().to_pylist() == expected.to_pylist()
        job.to_parquet(f"s3://{bucket}/out/training.parquet")
    with fs.open_input_file(f"{bucket}/out/training.parquet") as handle:
        assert pq.read_table(handle).to_pylist() == expected.to_pylist()


def test_a_sql_source_over_s3_inputs_equals_the_same_over_local_files(
    tmp_path: Path, s3_server: S3Server, spark_engine: object, spark_options: dict[str, object]
) -> None:
    """The SQL source's inputs in S3 (a file, a prefix) or one a Delta table: DuckDB and Spark give the local rows."""
    import pandas as pd

    from tests.contract.test_offline_engine_sql_sources import ENTITY_DRIVERS, ENTITY_TIMES, make_table
    from tests.contract.test_offline_engine_sql_sources import REFS as SQL_REFS

    local = make_table(tmp_path / "data")
    assert isinstance(local.batch_source, pv.SqlSource)
    bucket = f"sql-{uuid.uuid4().hex[:12]}"
    fs = s3_server.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    fs.create_dir(bucket)
    pafs.copy_files(
        str(tmp_path / "data" / "trips.parquet"), f"{bucket}/trips/part-0.parquet", destination_filesystem=fs
    )
    pafs.copy_files(str(tmp_path / "data" / "drivers.parquet"), f"{bucket}/drivers.parquet", destination_filesystem=fs)
    inputs = {
        "trips": pv.FileSource(path=f"s3://{bucket}/trips", event_timestamp_column="ts"),
        "drivers": pv.FileSource(path=f"s3://{bucket}/drivers.parquet", event_timestamp_column="since"),
    }
    remote = dataclasses.replace(local, batch_source=dataclasses.replace(local.batch_source, sources=inputs))
    deltalake = pytest.importorskip("deltalake")
    drivers_delta = tmp_path / "drivers_delta"
    deltalake.write_deltalake(str(drivers_delta), pa.parquet.read_table(tmp_path / "data" / "drivers.parquet"))
    delta_inputs: dict[str, pv.FileSource | pv.DeltaSource] = {
        **inputs,
        "drivers": pv.DeltaSource(path=str(drivers_delta), event_timestamp_column="since"),
    }
    with_delta = dataclasses.replace(local, batch_source=dataclasses.replace(local.batch_source, sources=delta_inputs))
    entity_df = pd.DataFrame({"driver_id": ENTITY_DRIVERS, "event_timestamp": ENTITY_TIMES})
    results = {}
    for name, table, offline in (
        ("local", local, {"engine": "duckdb"}),
        ("duckdb", remote, {"engine": "duckdb"}),
        ("spark", remote, dict(spark_options)),
        ("duckdb-delta", with_delta, {"engine": "duckdb"}),
        ("spark-delta", with_delta, dict(spark_options)),
    ):
        config = write_config(tmp_path / name, offline=offline, project=f"p{uuid.uuid4().hex[:8]}")
        settings = load_settings(config, environ={}, overrides={"storage": s3_server.storage()})
        with pv.Client(settings=settings) as client:
            client.apply([DRIVER, table])
            job = client.get_historical_features(SQL_REFS, entity_df)
            results[name] = (job.to_arrow().to_pylist(), sorted(f.path for f in job.lineage()[0].files))
    assert results["duckdb"][0] == results["spark"][0] == results["local"][0]
    assert results["duckdb-delta"][0] == results["spark-delta"][0] == results["local"][0]
    assert results["duckdb-delta"][1] == results["spark-delta"][1]
    assert (
        results["duckdb"][1]
        == results["spark"][1]
        == [
            f"s3://{bucket}/drivers.parquet",
            f"s3://{bucket}/trips/part-0.parquet",
        ]
    )


@pytest.mark.timeout(900)  # two Spark retrievals: about 6 minutes at load 19 on the 2 shared cores
def test_spark_stages_only_the_columns_and_rows_of_the_window_of_a_sql_source_input(
    tmp_path: Path,
    s3_server: S3Server,
    spark_engine: object,
    spark_options: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An S3 input of a SQL source is copied to staging for the read's window and columns only.

    Counted on the staged files: the pruned read copies exactly the trips with ``BOUND <= ts <= END``
    and their three columns the query uses (not the wide ``note``); planning switched off, all of
    them. Both give the same training set.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from provender.offline import sql_source
    from provender.offline.spark import sources as spark_sources
    from tests.contract.test_sql_source_pruning import BOUND, REFS, entity_df, make_table, trips, write_trips

    files = write_trips(tmp_path / "days")
    bucket = f"sqlprune-{uuid.uuid4().hex[:12]}"
    fs = s3_server.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    fs.create_dir(bucket)
    for path in files:
        pafs.copy_files(str(path), f"{bucket}/trips/{path.parent.name}/part-0.parquet", destination_filesystem=fs)
    (tmp_path / "data").mkdir()
    source = pv.FileSource(path=f"s3://{bucket}/trips", event_timestamp_column="ts", date_partition_column="day")
    table = make_table(tmp_path / "data", source)
    staged: list[pa.Schema | int] = []
    copy = spark_sources._copy_to_staging

    def counted(data: object, name: str, context: spark_sources.SourceContext) -> list[str]:
        written = copy(data, name, context)
        selector = pafs.FileSelector(context.staging.arrow_path(name), recursive=True)
        parts = [i.path for i in context.staging.fs.get_file_info(selector) if i.path.endswith(".parquet")]
        metas = [pq.read_metadata(p, filesystem=context.staging.fs) for p in parts]
        staged.extend([metas[0].schema.to_arrow_schema(), sum(m.num_rows for m in metas)])
        return written

    monkeypatch.setattr(spark_sources, "_copy_to_staging", counted)
    results = []
    for planned in (True, False):
        staged.clear()
        with monkeypatch.context() as patch:
            if not planned:
                patch.setattr(sql_source, "plan_reads", lambda *args, **kwargs: None)
            config = write_config(tmp_path / f"p{planned}", offline=dict(spark_options), project=f"p{planned}")
            settings = load_settings(config, environ={}, overrides={"storage": s3_server.storage()})
            with pv.Client(settings=settings) as client:
                client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), table])
                results.append(client.get_historical_features(REFS, entity_df()).to_arrow().to_pylist())
        schema, rows = staged
        assert isinstance(schema, pa.Schema)
        ts = trips()["ts"]
        in_window = pc.sum(pc.greater_equal(ts, pa.scalar(BOUND, ts.type))).as_py()  # END is after every trip
        if planned:
            assert (schema.names, rows) == (["driver_id", "fare", "ts"], in_window)
        else:
            assert (set(schema.names) >= {"note", "day"}, rows) == (True, len(ts))
    assert rows > in_window
    assert results[0] == results[1]
