"""Feature tables whose batch source is in S3 (a real moto server), on the DuckDB engine.

Retrieval and ingestion over ``s3://`` Parquet give the same results as over the same local
files; missing buckets, missing credentials and denied access fail early with errors naming the
source; the secret key appears in no error and no log record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.fs as pafs
import pytest

import provender as pv
from provender.config import load_settings
from provender.errors import DataError
from provender.offline.files import DateRange
from provender.offline.objectstore import list_files, list_infos, open_s3
from tests.support.builders import ENTITIES, Layout, write_config, write_table
from tests.support.objectstore import SECRET_KEY, S3Server
from tests.support.retrieval import at_path, driver_rows, driver_stats, entity_frame

pytestmark = pytest.mark.timeout(120)

_AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_PROFILE")


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _AWS_VARS:
        monkeypatch.delenv(name, raising=False)


def _upload(server: S3Server, local: Path, bucket: str, prefix: str) -> str:
    fs = server.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    with contextlib.suppress(OSError):  # already there
        fs.create_dir(bucket)
    pafs.copy_files(str(local), f"{bucket}/{prefix}", destination_filesystem=fs)
    return f"s3://{bucket}/{prefix}"


def _client(project: Path, storage: dict[str, object] | None) -> pv.Client:
    path = write_config(project)
    overrides = {} if storage is None else {"storage": storage}
    return pv.Client(settings=load_settings(path, environ={}, overrides=overrides))


def refs_columns(refs: list[str]) -> list[str]:
    """The output columns of ``refs``."""
    return [ref.replace(":", "__") for ref in refs]


def _tables(tmp_path: Path, server: S3Server) -> tuple[pv.FeatureTable, pv.FeatureTable]:
    local = write_table(
        driver_stats(max_age=None), driver_rows(), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE
    )
    assert local.batch_source is not None
    url = _upload(server, Path(local.batch_source.path), f"b-{uuid.uuid4().hex[:12]}", "driver_stats")
    remote = at_path(local, url)
    return local, remote


@pytest.mark.parametrize("reader", ["duckdb", "pyarrow"])
def test_retrieval_and_ingestion_from_s3_equal_local(
    tmp_path: Path, s3_server: S3Server, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With DuckDB's Parquet reader over object_reads (the s3 extra), and with the pyarrow scan without it."""
    from provender.offline import object_reads

    if reader == "pyarrow":
        monkeypatch.setattr(object_reads, "available", lambda: False)
    else:
        assert object_reads.available()
    local, remote = _tables(tmp_path, s3_server)
    refs = ["driver_stats:trips", "driver_stats:rate"]
    start, end = datetime(2024, 3, 2, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)
    results = []
    for name, table, storage in (("local", local, None), ("s3", remote, s3_server.storage())):
        with _client(tmp_path / name, storage) as client:
            client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), table])
            frame = client.get_historical_features(refs, entity_frame()).to_pandas()
            client.start_offline_to_online_ingestion("driver_stats", start=start, end=end).wait()
            online = client.get_online_features(refs, [{"driver_id": 1}, {"driver_id": 2}]).to_dict()
            results.append((frame, online))
    (local_frame, local_online), (s3_frame, s3_online) = results
    entities = tmp_path / "entities" / "rows.parquet"
    entities.parent.mkdir()
    entity_frame().to_parquet(entities)
    assert remote.batch_source is not None
    entity_url = _upload(s3_server, entities.parent, remote.batch_source.path.split("/")[2], "entities")
    with _client(tmp_path / "s3", s3_server.storage()) as client:
        job = client.get_historical_features(refs, entity_url)
        from_s3 = job.to_pandas()
        (read,) = job.lineage()  # the partitions up to the latest entity time (03-04): 03-05 is pruned
        assert [f.path.rsplit("/", 2)[1] for f in read.files] == [f"date=2024-03-0{d}" for d in range(1, 5)]
        assert all(f.size and f.modified for f in read.files)
        assert from_s3.equals(client.get_historical_features(refs, str(entities)).to_pandas())
    assert from_s3[refs_columns(refs)].equals(local_frame[refs_columns(refs)])
    assert s3_frame.equals(local_frame)
    assert s3_online == local_online
    assert local_online["driver_stats__trips"] == [111, 112]  # the last rows before the 4th: n = 11
    assert s3_frame["driver_stats__trips"].notna().sum() >= 3


def test_pruned_partitions_are_never_listed(tmp_path: Path, s3_server: S3Server) -> None:
    _, remote = _tables(tmp_path, s3_server)
    assert remote.batch_source is not None
    bucket = remote.batch_source.path.split("/")[2]
    # Inside a pruned partition, a directory whose name is not a date: walking into it would fail.
    trap = tmp_path / "trap" / "date=not-a-date"
    trap.mkdir(parents=True)
    (trap / "x.parquet").write_bytes(b"not parquet")
    _upload(s3_server, tmp_path / "trap", bucket, "driver_stats/date=2024-03-01")
    store = open_s3(pv.Settings.model_validate({"storage": s3_server.storage()}).storage.s3, "test")
    files = list_files(
        store,
        remote.batch_source.path,
        suffix=".parquet",
        what="test",
        partition_column="date",
        dates=DateRange(first=datetime(2024, 3, 3).date(), last=datetime(2024, 3, 4).date()),
    )
    assert [f.rsplit("/", 2)[1] for f in files] == ["date=2024-03-03", "date=2024-03-04"]


def test_missing_bucket_names_the_source(tmp_path: Path, s3_server: S3Server) -> None:
    table = at_path(driver_stats(), "s3://no-such-bucket/x")
    with _client(tmp_path, s3_server.storage()) as client:
        client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), table])
        with pytest.raises(DataError, match=r"driver_stats.*bucket 'no-such-bucket' does not exist"):
            client.get_historical_features(["driver_stats:trips"], entity_frame())


def test_missing_credentials_fail_before_any_request(tmp_path: Path, s3_server: S3Server) -> None:
    _, remote = _tables(tmp_path, s3_server)
    storage: dict[str, object] = {"s3": {"endpoint_url": s3_server.endpoint_url}}
    with _client(tmp_path / "p", storage) as client:
        client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), remote])
        with pytest.raises(DataError, match=r"driver_stats.*no S3 credentials"):
            client.get_historical_features(["driver_stats:trips"], entity_frame())


def test_access_denied_is_clear_and_secrets_stay_hidden(
    tmp_path: Path, s3_locked_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    table = at_path(driver_stats(), "s3://locked/driver_stats")
    caplog.set_level(logging.DEBUG)
    with _client(tmp_path, s3_locked_server.storage()) as client:
        client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), table])
        with pytest.raises(DataError, match=r"driver_stats.*(access denied|Forbidden|403)") as info:
            client.get_historical_features(["driver_stats:trips"], entity_frame())
        assert SECRET_KEY not in repr(client.settings) and SECRET_KEY not in str(client.settings.storage)
    assert SECRET_KEY not in str(info.value)
    assert SECRET_KEY not in caplog.text


def test_delta_table_in_s3_equals_local(tmp_path: Path, s3_server: S3Server) -> None:
    deltalake = pytest.importorskip("deltalake")
    import pyarrow as pa

    from tests.support.builders import source_schema

    rows = pa.Table.from_pylist(driver_rows(), schema=source_schema(driver_stats(), ENTITIES))
    bucket = f"d-{uuid.uuid4().hex[:12]}"
    fs = s3_server.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    fs.create_dir(bucket)
    options = {
        "AWS_ACCESS_KEY_ID": "AKIAPROVENDERTEST01",
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }
    url = f"s3://{bucket}/driver_stats"
    deltalake.write_deltalake(url, rows, storage_options=options)
    deltalake.write_deltalake(tmp_path / "local_delta", rows)
    base = driver_stats(max_age=None)
    frames = []
    for name, path, storage in (("local", str(tmp_path / "local_delta"), None), ("s3", url, s3_server.storage())):
        source = pv.DeltaSource(path=path, event_timestamp_column="event_ts", created_timestamp_column="created")
        with _client(tmp_path / name, storage) as client:
            client.apply(
                [
                    pv.Entity(name="driver_id", value_type=pv.ValueType.INT64),
                    dataclasses.replace(base, batch_source=source),
                ]
            )
            frames.append(client.get_historical_features(["driver_stats:trips"], entity_frame()).to_pandas())
    assert frames[1].equals(frames[0])
    assert frames[0]["driver_stats__trips"].notna().sum() >= 3


def test_retrieval_never_lists_nor_opens_a_pruned_partition(tmp_path: Path, s3_server: S3Server) -> None:
    """Counted on the server's request log: pruned partitions get no request at all."""
    _, remote = _tables(tmp_path, s3_server)
    assert remote.batch_source is not None
    bucket = remote.batch_source.path.split("/")[2]
    with _client(tmp_path / "p", s3_server.storage()) as client:
        client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), dataclasses.replace(remote)])
        since = s3_server.log_size()
        # Entity rows on 03-02 and 03-03, max_age one day: partitions 03-01 to 03-03 can hold candidates.
        rows = [
            {"driver_id": 1, "event_timestamp": datetime(2024, 3, 2, 7)},
            {"driver_id": 2, "event_timestamp": datetime(2024, 3, 3)},
        ]
        frame = client.get_historical_features(["driver_stats:trips"], entity_frame(rows)).to_pandas()
    assert frame["driver_stats__trips"].notna().all()
    requests = [r for r in s3_server.requests(since) if f"/{bucket}" in r]
    touched = {
        day for r in requests for day in range(1, 6) if f"date%3D2024-03-0{day}" in r or f"date=2024-03-0{day}" in r
    }
    assert touched == {1, 2, 3}, requests  # the kept partitions were listed and read...
    assert not any("2024-03-04" in r or "2024-03-05" in r for r in requests), requests  # ...the pruned ones never


def test_a_training_set_written_to_s3_equals_the_local_file(tmp_path: Path, s3_server: S3Server) -> None:
    import pyarrow.parquet as pq

    _, remote = _tables(tmp_path, s3_server)
    assert remote.batch_source is not None
    bucket = remote.batch_source.path.split("/")[2]
    refs = ["driver_stats:trips", "driver_stats:rate"]
    with _client(tmp_path / "p", s3_server.storage()) as client:
        client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), remote])
        job = client.get_historical_features(refs, entity_frame())
        assert job.to_parquet(f"s3://{bucket}/out/training.parquet") == len(entity_frame())
        job.to_parquet(tmp_path / "training.parquet")
        historical = [j for j in client.list_jobs(include_finished=True) if j.record.kind.value == "historical"]
        assert len(historical) == 2 and all(j.status.value == "SUCCEEDED" for j in historical)
        with pytest.raises(DataError, match=r"bucket 'no-such-bucket' does not exist"):
            job.to_parquet("s3://no-such-bucket/training.parquet")
    fs = s3_server.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    written = pq.read_table(f"{bucket}/out/training.parquet", filesystem=fs)
    assert written.equals(pq.read_table(tmp_path / "training.parquet"))
    assert [i.base_name for i in fs.get_file_info(pafs.FileSelector(f"{bucket}/out"))] == ["training.parquet"]


def test_a_failed_write_leaves_no_object_behind(s3_server: S3Server) -> None:
    import pyarrow as pa

    from provender.offline.objectstore import write_parquet

    bucket = f"w-{uuid.uuid4().hex[:12]}"
    fs = s3_server.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    fs.create_dir(bucket)
    schema = pa.schema([("x", pa.int64())])

    def batches() -> object:
        yield pa.record_batch([pa.array(range(1000))], schema=schema)
        raise DataError("the retrieval failed half-way")

    storage = pv.Settings.model_validate({"storage": s3_server.storage()}).storage
    reader = pa.RecordBatchReader.from_batches(schema, batches())
    with pytest.raises(DataError, match="half-way"):
        write_parquet(storage, f"s3://{bucket}/training.parquet", reader, what="test")
    assert fs.get_file_info(pafs.FileSelector(bucket, recursive=True)) == []
    ok = pa.RecordBatchReader.from_batches(schema, [pa.record_batch([pa.array([1, 2])], schema=schema)])
    assert write_parquet(storage, f"s3://{bucket}/training.parquet", ok, what="test") == 2


def test_the_cli_writes_a_training_set_to_s3(tmp_path: Path, s3_server: S3Server) -> None:
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from provender.cli.main import cli

    _, remote = _tables(tmp_path, s3_server)
    assert remote.batch_source is not None
    bucket = remote.batch_source.path.split("/")[2]
    with _client(tmp_path / "p", s3_server.storage()) as client:
        client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), remote])
    entities = tmp_path / "entities.parquet"
    entity_frame().to_parquet(entities)
    env = {f"PROVENDER_STORAGE__S3__{k.upper()}": str(v) for k, v in s3_server.storage()["s3"].items()}  # type: ignore[attr-defined]
    result = CliRunner().invoke(
        cli,
        ["--config", str(tmp_path / "p" / "provender.yaml"), "retrieve", "-f", "driver_stats:trips",
         "-e", str(entities), "--out", f"s3://{bucket}/cli/training.parquet"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = pq.read_table(f"{bucket}/cli/training.parquet", filesystem=s3_server.filesystem())
    assert written.num_rows == len(entity_frame()) and "driver_stats__trips" in written.column_names


def test_the_kubeflow_retrieval_step_writes_to_s3(tmp_path: Path, s3_server: S3Server) -> None:
    import pyarrow.parquet as pq
    import yaml

    from provender.kfp.ops import retrieve_to_parquet

    _, remote = _tables(tmp_path, s3_server)
    assert remote.batch_source is not None
    bucket = remote.batch_source.path.split("/")[2]
    with _client(tmp_path / "p", s3_server.storage()) as client:
        client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), remote])
    config = tmp_path / "p" / "provender.yaml"
    config.write_text(
        yaml.safe_dump(yaml.safe_load(config.read_text()) | {"storage": s3_server.storage()}), encoding="utf-8"
    )
    entities = tmp_path / "entities.parquet"
    entity_frame().to_parquet(entities)
    summary = retrieve_to_parquet(
        ["driver_stats:trips"], str(entities), f"s3://{bucket}/kfp/training.parquet", config_path=str(config)
    )
    written = pq.read_table(f"{bucket}/kfp/training.parquet", filesystem=s3_server.filesystem())
    assert summary == {"rows": written.num_rows, "columns": written.num_columns} and written.num_rows == 5


def test_listing_and_reading_cost_few_requests(tmp_path: Path, s3_server: S3Server) -> None:
    """Counted on the server's log: a listing that prunes nothing is one recursive listing, not one per
    partition, and a narrow read of a file with many row groups is one ranged GET after the footer's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from provender.offline.objectstore import list_infos, store_dataset

    _, remote = _tables(tmp_path, s3_server)
    assert remote.batch_source is not None
    url, bucket = remote.batch_source.path, remote.batch_source.path.split("/")[2]
    store = open_s3(pv.Settings.model_validate({"storage": s3_server.storage()}).storage.s3, "test")

    def listing(dates: DateRange | None) -> tuple[list[str], list[str]]:
        since = s3_server.log_size()
        infos = list_infos(store, url, suffix=".parquet", what="test", partition_column="date", dates=dates)
        return [i.path.rsplit("/", 2)[1] for i in infos], [r for r in s3_server.requests(since) if f"/{bucket}" in r]

    every = [f"date=2024-03-0{day}" for day in range(1, 6)]
    found, requests = listing(None)
    assert found == every
    lists = [r for r in requests if "list-type=2" in r]
    assert len(lists) == 2 and "delimiter" not in lists[-1], requests  # pyarrow's directory check, then one listing
    assert len(requests) == 3, requests  # and the HEAD of that check: no request per partition, no bucket HEAD
    found, requests = listing(DateRange(first=datetime(2024, 3, 1).date(), last=datetime(2024, 3, 5).date()))
    assert found == every and len(requests) == 4, requests  # + the level of date partitions, all kept
    found, requests = listing(DateRange(first=datetime(2024, 3, 3).date(), last=datetime(2024, 3, 4).date()))
    assert found == every[2:4] and len(requests) == 5, requests  # 2 kept partitions, listed one by one

    wide = pa.table({f"c{i}": pa.array(range(2_000), pa.int64()) for i in range(12)})
    pq.write_table(wide, tmp_path / "wide.parquet", row_group_size=100)  # 20 row groups
    assert pq.ParquetFile(tmp_path / "wide.parquet").num_row_groups == 20
    pafs.copy_files(str(tmp_path / "wide.parquet"), f"{bucket}/wide/part-0.parquet",
                    destination_filesystem=s3_server.filesystem())  # fmt: skip
    [info] = list_infos(store, f"s3://{bucket}/wide", suffix=".parquet", what="test", partition_column=None, dates=None)
    dataset = store_dataset(store, [store.url(info.path)], root=None, sizes={store.url(info.path): info.size})
    since = s3_server.log_size()
    assert dataset.to_table(columns=["c7"]).column("c7").to_pylist() == list(range(2_000))
    reads = [r for r in s3_server.requests(since) if "wide/part-0.parquet" in r]
    assert len(reads) == 2, reads  # the footer, then the 20 column chunks of c7 in one ranged GET (not 20)


def test_duckdb_fetches_each_object_once(tmp_path: Path, s3_server: S3Server, caplog: pytest.LogCaptureFixture) -> None:
    """Counted on the server's log: DuckDB's reader fetches each small object in one GET, however
    many times it opens it; a narrow read of a large one costs its footer and one GET per MiB.
    The secret key, passed to deltalake's client, is in no log record."""
    caplog.set_level(logging.DEBUG)
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from provender.offline.lineage import InputFile
    from provender.offline.object_reads import MIN_FETCH, WHOLE_OBJECT, ObjectReads

    _, remote = _tables(tmp_path, s3_server)
    assert remote.batch_source is not None
    bucket = remote.batch_source.path.split("/")[2]
    with _client(tmp_path / "p", s3_server.storage()) as client:
        client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), remote])
        since = s3_server.log_size()
        job = client.get_historical_features(["driver_stats:trips", "driver_stats:rate"], entity_frame())
        job.to_pandas()
        (read,) = job.lineage()
    gets = [r for r in s3_server.requests(since) if r.startswith("GET") and ".parquet" in r]
    assert len(read.files) >= 4 and len(gets) == len(read.files), gets  # one each, none twice

    store = open_s3(pv.Settings.model_validate({"storage": s3_server.storage()}).storage.s3, "test")
    rng = np.random.default_rng(7)
    for name, rows, row_group in (("small", 2_000, 100), ("large", 100_000, 5_000)):
        wide = pa.table({f"c{i}": rng.integers(0, 1 << 40, rows) for i in range(12)})
        pq.write_table(wide, tmp_path / f"{name}.parquet", row_group_size=row_group, compression="none")
        pafs.copy_files(str(tmp_path / f"{name}.parquet"), f"{bucket}/{name}/part-0.parquet",
                        destination_filesystem=s3_server.filesystem())  # fmt: skip
        [info] = list_infos(
            store, f"s3://{bucket}/{name}", suffix=".parquet", what="t", partition_column=None, dates=None
        )
        reads, con = ObjectReads(), duckdb.connect()
        con.register_filesystem(reads.filesystem)
        since = s3_server.log_size()  # before add(): it starts fetching the object in the background
        [url] = reads.add(store, [InputFile(path=store.url(info.path), size=info.size, modified=info.mtime)])
        assert con.sql(f"SELECT c7 FROM read_parquet('{url}')").fetchnumpy()["c7"].tolist() == wide["c7"].to_pylist()
        gets = [r for r in s3_server.requests(since) if f"{name}/part-0.parquet" in r]
        assert all(r.startswith("GET") for r in gets), gets  # no HEAD: the listed size is used
        # 20 row groups, 20 column chunks of c7: the small object in one GET, the large one (11.5 MB,
        # chunks 0.58 MB apart, read in parallel) in its footer's and about one per MiB.
        most = 1 if info.size <= WHOLE_OBJECT else 1 + math.ceil(info.size / MIN_FETCH)
        assert 1 <= len(gets) <= most < 20, gets
        assert url.startswith(reads.protocol) and reads.scrub(f"cannot read {url}") == f"cannot read s3://{info.path}"
    assert SECRET_KEY not in caplog.text


def test_duckdb_reads_objects_of_a_read_no_longer_kept(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read whose listing was dropped (KEPT_READS later reads) still reads right, with a HEAD."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from provender.offline import object_reads
    from provender.offline.lineage import InputFile

    monkeypatch.setattr(object_reads, "KEPT_READS", 1)
    bucket = f"k-{uuid.uuid4().hex[:12]}"
    fs = s3_server.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    fs.create_dir(bucket)
    for day in (1, 2):
        pq.write_table(pa.table({"x": [day] * 3}), f"{bucket}/t/day={day}/p.parquet", filesystem=fs)
    store = open_s3(pv.Settings.model_validate({"storage": s3_server.storage()}).storage.s3, "test")
    infos = list_infos(store, f"s3://{bucket}/t", suffix=".parquet", what="t", partition_column=None, dates=None)
    reads, con = object_reads.ObjectReads(), duckdb.connect()
    con.register_filesystem(reads.filesystem)
    first, second = (
        reads.add(store, [InputFile(path=store.url(i.path), size=i.size, modified=i.mtime)]) for i in infos
    )
    since = s3_server.log_size()
    assert con.sql(f"SELECT x FROM read_parquet({first})").fetchall() == [(1,)] * 3
    assert con.sql(f"SELECT x, day FROM read_parquet({second}, hive_partitioning = true)").fetchall() == [(2, 2)] * 3
    heads = [r for r in s3_server.requests(since) if r.startswith("HEAD")]
    assert heads and all("day=1" in r or "day%3D1" in r for r in heads), heads  # only the dropped read's
    with pytest.raises(duckdb.Error):
        con.sql(f"SELECT * FROM read_parquet('{first[0].replace('/p.parquet', '/missing.parquet')}')").fetchall()


def test_credentials_and_endpoint_from_the_standard_environment(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No ``storage:`` settings: the AWS_* variables reach S3 Parquet, S3 Delta and an S3 output alike."""
    deltalake = pytest.importorskip("deltalake")
    import pyarrow as pa

    from tests.support.builders import source_schema
    from tests.support.objectstore import ACCESS_KEY

    local, remote = _tables(tmp_path, s3_server)
    bucket = remote.batch_source.path.split("/")[2]  # type: ignore[union-attr]
    environment = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
    }
    rows = pa.Table.from_pylist(driver_rows(), schema=source_schema(driver_stats(), ENTITIES))
    delta_url = f"s3://{bucket}/delta/driver_stats"
    deltalake.write_deltalake(
        delta_url, rows, storage_options={**environment, "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    )
    delta = dataclasses.replace(
        driver_stats(max_age=None),
        batch_source=pv.DeltaSource(
            path=delta_url, event_timestamp_column="event_ts", created_timestamp_column="created"
        ),
    )
    refs = ["driver_stats:trips", "driver_stats:rate"]
    with _client(tmp_path / "local", None) as client:
        client.apply([ENTITIES["driver_id"], local])
        expected = client.get_historical_features(refs, entity_frame()).to_pandas()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    for kind, table in (("parquet", remote), ("delta", delta)):
        project = tmp_path / kind
        with pv.Client(config=str(write_config(project))) as client:
            assert client.settings.storage.s3 is None or client.settings.storage.s3.access_key_id is None
            client.apply([ENTITIES["driver_id"], table])
            job = client.get_historical_features(refs, entity_frame())
            out = f"s3://{bucket}/training/{kind}.parquet"
            job.to_parquet(out)
            assert job.to_pandas().equals(expected), kind
        with pa.fs.S3FileSystem(
            endpoint_override=s3_server.endpoint_url.split("//")[1], scheme="http", access_key=ACCESS_KEY,
            secret_key=SECRET_KEY, region="us-east-1",
        ).open_input_file(out[len("s3://"):]) as handle:  # fmt: skip
            import pyarrow.parquet as pq

            assert pq.read_table(handle).to_pandas().equals(expected), kind
    assert SECRET_KEY not in caplog.text


def test_duckdb_read_of_a_vanished_object_fails_naming_it(s3_server: S3Server) -> None:
    """An object listed, then gone before DuckDB reads it: an error naming its s3:// URL, no secret."""
    import duckdb

    from provender.offline.lineage import InputFile
    from provender.offline.object_reads import ObjectReads

    bucket = f"v-{uuid.uuid4().hex[:12]}"
    fs = s3_server.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    fs.create_dir(bucket)
    store = open_s3(pv.Settings.model_validate({"storage": s3_server.storage()}).storage.s3, "test")
    reads, con = ObjectReads(), duckdb.connect()
    con.register_filesystem(reads.filesystem)
    [url] = reads.add(store, [InputFile(path=f"s3://{bucket}/t/gone.parquet", size=5_000, modified=None)])
    with pytest.raises(duckdb.Error) as info:
        con.sql(f"SELECT * FROM read_parquet('{url}')").fetchall()
    message = store.scrub(reads.scrub(str(info.value)))
    assert f"s3://{bucket}/t/gone.parquet" in message and reads.protocol not in message, message
    assert SECRET_KEY not in str(info.value)
    reads.close()


def test_a_sql_source_input_in_a_missing_bucket_is_named_at_apply(tmp_path: Path, s3_server: S3Server) -> None:
    table = pv.FeatureTable(
        name="rides",
        entities=["driver_id"],
        features=[pv.Feature("trips", pv.ValueType.INT64)],
        batch_source=pv.SqlSource(
            query="SELECT driver_id, event_ts, trips FROM stats",
            sources={"stats": pv.FileSource(path="s3://no-such-bucket/stats", event_timestamp_column="event_ts")},
            event_timestamp_column="event_ts",
        ),
    )
    with _client(tmp_path, s3_server.storage()) as client:
        with pytest.raises(
            DataError, match=r"Input 'stats' of the SQL source of feature table 'rides'.*no-such-bucket"
        ):
            client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), table])
        assert client.list_feature_tables() == []
