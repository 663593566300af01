"""Feature tables whose batch source is in ``gs://``, against fake-gcs-server (the GCS JSON API).

fake-gcs-server is not Google Cloud Storage: these tests show what pyarrow's GCS client does
against that API (listing, reading, writing, errors), not authentication against Google. The
settings' mapping to the client's options is tested without a server.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import provender as pv
from provender.config import GcsStorage, load_settings
from provender.errors import DataError
from provender.offline.objectstore import gcs_options, open_store, split_url
from tests.support.builders import ENTITIES, Layout, write_config, write_table
from tests.support.objectstore import GcsServer
from tests.support.retrieval import at_path, driver_rows, driver_stats, entity_frame

pytestmark = pytest.mark.timeout(120)
REFS = ["driver_stats:trips", "driver_stats:rate"]


def _client(project: Path, storage: dict[str, object] | None) -> pv.Client:
    path = write_config(project)
    return pv.Client(
        settings=load_settings(path, environ={}, overrides={} if storage is None else {"storage": storage})
    )


def _tables(tmp_path: Path, server: GcsServer) -> tuple[pv.FeatureTable, pv.FeatureTable, str]:
    local = write_table(
        driver_stats(max_age=None), driver_rows(), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE
    )
    assert isinstance(local.batch_source, pv.FileSource)
    bucket = f"g-{uuid.uuid4().hex[:12]}"
    fs = server.filesystem()
    assert isinstance(fs, pafs.GcsFileSystem)
    fs.create_dir(bucket)
    pafs.copy_files(local.batch_source.path, f"{bucket}/driver_stats", destination_filesystem=fs)
    url = f"gs://{bucket}/driver_stats"
    return local, dataclasses.replace(local, batch_source=dataclasses.replace(local.batch_source, path=url)), bucket


def test_retrieval_ingestion_and_output_on_gcs_equal_local(tmp_path: Path, gcs_server: GcsServer) -> None:
    local, remote, bucket = _tables(tmp_path, gcs_server)
    start, end = datetime(2024, 3, 2, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)
    results = []
    for name, table, storage in (("local", local, None), ("gcs", remote, gcs_server.storage())):
        with _client(tmp_path / name, storage) as client:
            client.apply([ENTITIES["driver_id"], table])
            job = client.get_historical_features(REFS, entity_frame())
            frame = job.to_pandas()
            client.start_offline_to_online_ingestion("driver_stats", start=start, end=end).wait()
            online = client.get_online_features(REFS, [{"driver_id": 1}, {"driver_id": 2}]).to_dict()
            results.append((frame, online, job))
    (local_frame, local_online, _), (gcs_frame, gcs_online, gcs_job) = results
    assert gcs_frame.equals(local_frame) and gcs_online == local_online
    (read,) = gcs_job.lineage()  # 03-05 is after the latest entity row: pruned, never opened
    assert [f.path.rsplit("/", 2)[1] for f in read.files] == [f"date=2024-03-0{d}" for d in range(1, 5)]
    assert all(f.path.startswith(f"gs://{bucket}/") and f.size for f in read.files)
    with _client(tmp_path / "gcs", gcs_server.storage()) as client:
        rows = client.get_historical_features(REFS, entity_frame()).to_parquet(f"gs://{bucket}/out/training.parquet")
        with pytest.raises(DataError, match=r"bucket 'no-such-bucket' does not exist"):
            client.get_historical_features(REFS, entity_frame()).to_parquet("gs://no-such-bucket/t.parquet")
    written = pq.read_table(f"{bucket}/out/training.parquet", filesystem=gcs_server.filesystem())
    assert rows == len(local_frame) and written.to_pandas()[local_frame.columns[-1]].equals(local_frame.iloc[:, -1])


def test_a_missing_gcs_bucket_names_the_source(tmp_path: Path, gcs_server: GcsServer) -> None:
    table = at_path(driver_stats(), "gs://no-such-bucket/x")
    with _client(tmp_path, gcs_server.storage()) as client:
        client.apply([ENTITIES["driver_id"], table])
        with pytest.raises(DataError, match=r"driver_stats.*bucket 'no-such-bucket' does not exist"):
            client.get_historical_features(["driver_stats:trips"], entity_frame())


def test_gcs_settings_map_to_the_client_options_and_tokens_stay_hidden() -> None:
    storage = GcsStorage.model_validate(
        {"endpoint_url": "http://127.0.0.1:4443", "project_id": "p1", "access_token": "ya29.secret-token"}
    )
    options = gcs_options(storage, environ={})
    assert (options["endpoint_override"], options["scheme"], options["project_id"]) == ("127.0.0.1:4443", "http", "p1")
    assert options["access_token"] == "ya29.secret-token"
    expires = options["credential_token_expiration"]
    assert isinstance(expires, datetime) and expires - datetime.now(UTC) > timedelta(minutes=59)
    assert "secret-token" not in repr(storage)
    emulator = gcs_options(GcsStorage(anonymous=True), environ={"STORAGE_EMULATOR_HOST": "localhost:9023"})
    assert (emulator["endpoint_override"], emulator["anonymous"]) == ("localhost:9023", True)
    assert "endpoint_override" not in gcs_options(None, environ={})  # Google Cloud Storage itself
    assert split_url("gs://bucket/a/b/") == ("bucket", "bucket/a/b")
    with pytest.raises(DataError, match=r"'az://c/x' is not in a supported object store"):
        open_store("az://c/x", None, "test")
    store = open_store("gs://b/x", pv.Settings.model_validate({"storage": {"gcs": storage.model_dump()}}).storage, "t")
    assert store.scheme == "gs" and store.scrub("token ya29.secret-token") == "token ***"
