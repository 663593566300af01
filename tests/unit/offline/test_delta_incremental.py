"""Incremental Delta ingestion and lineage in job records.

An ingestion records the Delta version it read (with its window and features); an incremental
one skips the files of the version the last succeeded ingestion read, unless their statistics
reach outside that job's window, and ends with the online rows a full ingestion gives. Deletes,
overwrites and compactions since make it read the whole snapshot, saying why.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

import provender as pv
from provender.cli.main import cli
from provender.errors import DataError
from provender.offline.lineage import SourceInput
from tests.support.builders import ENTITIES, make_client, source_schema
from tests.support.retrieval import DAY0, at_path, driver_rows, driver_stats, entity_frame

deltalake = pytest.importorskip("deltalake")

REFS = ["driver_stats:trips", "driver_stats:rate"]
KEYS = [{"driver_id": 1}, {"driver_id": 2}]
START, END = DAY0, DAY0 + timedelta(days=10)


def _table(path: Path) -> pv.FeatureTable:
    file_source = driver_stats(max_age=None).batch_source
    assert isinstance(file_source, pv.FileSource)
    delta = pv.DeltaSource(
        path=str(path),
        event_timestamp_column=file_source.event_timestamp_column,
        created_timestamp_column=file_source.created_timestamp_column,
    )
    return dataclasses.replace(driver_stats(max_age=None), batch_source=delta)


def _append_day(path: Path, day: int, *, mode: str = "append") -> None:
    rows = [r for r in driver_rows() if r["event_ts"].date() == (DAY0 + timedelta(days=day)).date()]
    deltalake.write_deltalake(
        str(path), pa.Table.from_pylist(rows, schema=source_schema(driver_stats(), ENTITIES)), mode=mode
    )


def _ingest(
    client: pv.Client, *, incremental: bool = True, start: datetime = START, end: datetime = END
) -> SourceInput:
    job = client.start_offline_to_online_ingestion(
        "driver_stats",
        start=start,
        end=end,
        incremental=incremental,
    ).wait()
    (read,) = client.get_job(job.id).lineage()
    return read


@pytest.fixture
def delta_path(tmp_path: Path) -> Path:
    return tmp_path / "delta" / "driver_stats"


def _full(tmp_path: Path, path: Path) -> dict[str, list[object]]:
    with make_client(tmp_path / "full") as client:
        client.apply([ENTITIES["driver_id"], _table(path)])
        _ingest(client, incremental=False)
        return client.get_online_features(REFS, KEYS).to_dict()


def test_an_incremental_ingestion_reads_only_the_commits_since_the_last_one(tmp_path: Path, delta_path: Path) -> None:
    for day in range(3):
        _append_day(delta_path, day)  # versions 0-2
    with make_client(tmp_path / "p") as client:
        client.apply([ENTITIES["driver_id"], _table(delta_path)])
        first = _ingest(client)  # nothing ingested before: the whole window
        assert (first.delta_version, first.changes_since, len(first.files), first.note) == (2, None, 3, "")
        assert all(f.size and f.modified for f in first.files)
        _append_day(delta_path, 3)
        _append_day(delta_path, 4)
        second = _ingest(client)
        assert (second.delta_version, second.changes_since, len(second.files)) == (4, 2, 2)
        assert {f.path for f in second.files}.isdisjoint({f.path for f in first.files})
        online = client.get_online_features(REFS, KEYS).to_dict()
        third = _ingest(client)  # no commit since: nothing to read
        assert (third.delta_version, third.changes_since, third.files) == (4, 4, ())
        assert client.get_online_features(REFS, KEYS).to_dict() == online
    assert online == _full(tmp_path, delta_path)
    assert online["driver_stats__trips"] == [191, 192]  # the last rows: n = 19


def test_old_files_are_read_again_for_the_part_of_the_window_not_ingested_before(
    tmp_path: Path, delta_path: Path
) -> None:
    for day in range(5):
        _append_day(delta_path, day)
    with make_client(tmp_path / "p") as client:
        client.apply([ENTITIES["driver_id"], _table(delta_path)])
        first = _ingest(client, end=DAY0 + timedelta(days=2))
        assert len(first.files) == 3  # days 0-2 (day 2's first rows may be at the end)
        second = _ingest(client)  # no commit since, but days 2-4 were outside the first window
        assert (second.changes_since, len(second.files)) == (4, 3)
        online = client.get_online_features(REFS, KEYS).to_dict()
    assert online == _full(tmp_path, delta_path)


@pytest.mark.parametrize("change", ["delete", "overwrite"])
def test_a_history_that_is_not_append_only_is_read_whole(tmp_path: Path, delta_path: Path, change: str) -> None:
    for day in range(3):
        _append_day(delta_path, day)
    with make_client(tmp_path / "p") as client:
        client.apply([ENTITIES["driver_id"], _table(delta_path)])
        _ingest(client)
        if change == "delete":
            deltalake.DeltaTable(str(delta_path)).delete("driver_id = 2")
        else:
            _append_day(delta_path, 4, mode="overwrite")
        read = _ingest(client)
        assert read.changes_since is None
        assert "were removed since (a delete, an overwrite or a compaction); read the whole snapshot" in read.note
        current = deltalake.DeltaTable(str(delta_path))
        assert (read.delta_version, len(read.files)) == (current.version(), len(current.file_uris()))
        # Ingestion never deletes online rows: driver 2 keeps what was ingested before the delete.
        assert client.get_online_features(REFS, KEYS).to_dict()["driver_stats__trips"][1] is not None


def test_incremental_ingestion_of_files_is_refused_clearly(tmp_path: Path) -> None:
    table = at_path(driver_stats(), str(tmp_path))
    with make_client(tmp_path / "p") as client:
        client.apply([ENTITIES["driver_id"], table])
        with pytest.raises(DataError, match=r"driver_stats.*incremental ingestion reads Delta tables"):
            client.start_offline_to_online_ingestion("driver_stats", start=START, end=END, incremental=True)


def test_job_records_keep_the_lineage_shown_by_the_cli(tmp_path: Path, delta_path: Path) -> None:
    for day in range(3):
        _append_day(delta_path, day)
    with make_client(tmp_path / "p") as client:
        client.apply([ENTITIES["driver_id"], _table(delta_path)])
        job = client.get_historical_features(REFS, entity_frame())
        assert job.id is None  # nothing computed, nothing recorded yet
        job.to_arrow()
        (record,) = [j for j in client.list_jobs(include_finished=True) if j.record.kind.value == "historical"]
        assert job.id == record.id
        assert client.get_job(job.id).lineage() == record.lineage() == job.lineage()
        assert record.lineage()[0].delta_version == 2
        config = client.settings.base_dir / "provender.yaml"
    result = CliRunner().invoke(cli, ["--config", str(config), "jobs", "lineage", record.id])
    assert result.exit_code == 0, result.output
    assert "DELTA_VERSION" in result.output
    assert all(f.path in result.output for f in job.lineage()[0].files)
    shown = CliRunner().invoke(cli, ["--config", str(config), "jobs", "show", record.id])
    assert '"delta_version": 2' in shown.output
