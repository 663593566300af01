"""Delta Lake batch sources on DuckDB: pinned snapshots, pruning by file statistics, errors, codec."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import provender as pv
from provender.errors import DataError
from provender.offline.delta import open_delta
from provender.registry import codec
from tests.support.builders import ENTITIES, make_client, source_schema
from tests.support.retrieval import DAY0, driver_rows, driver_stats, entity_frame

deltalake = pytest.importorskip("deltalake")

REFS = ["driver_stats:trips", "driver_stats:rate"]


def _delta_table(**source: object) -> pv.FeatureTable:
    file_source = driver_stats(max_age=None).batch_source
    assert isinstance(file_source, pv.FileSource)
    delta = pv.DeltaSource(
        path=str(source.pop("path")),
        event_timestamp_column=file_source.event_timestamp_column,
        created_timestamp_column=file_source.created_timestamp_column,
        **source,  # type: ignore[arg-type]
    )
    return dataclasses.replace(driver_stats(max_age=None), batch_source=delta)


def _write(path: Path, rows: list[dict[str, object]], *, mode: str = "append") -> None:
    schema = source_schema(driver_stats(), ENTITIES)
    deltalake.write_deltalake(str(path), pa.Table.from_pylist(rows, schema=schema), mode=mode)


def _by_day(rows: list[dict[str, object]], day: int) -> list[dict[str, object]]:
    return [r for r in rows if r["event_ts"].date() == (DAY0 + timedelta(days=day)).date()]  # type: ignore[attr-defined]


@pytest.fixture
def delta_path(tmp_path: Path) -> Path:
    """A Delta table of driver_stats: version n holds the first n + 1 days (one commit per day)."""
    path = tmp_path / "delta" / "driver_stats"
    for day in range(5):
        _write(path, _by_day(driver_rows(), day))
    return path


def test_retrieval_equals_the_same_rows_in_parquet(tmp_path: Path, delta_path: Path) -> None:
    with make_client(tmp_path / "p") as client:
        client.apply([ENTITIES["driver_id"], _delta_table(path=delta_path)])
        got = client.get_historical_features(REFS, entity_frame()).to_pandas()
    local = tmp_path / "parquet" / "data.parquet"
    local.parent.mkdir(parents=True)
    pa.parquet.write_table(pa.Table.from_pylist(driver_rows(), schema=source_schema(driver_stats(), ENTITIES)), local)
    table = dataclasses.replace(
        driver_stats(max_age=None),
        batch_source=dataclasses.replace(driver_stats().batch_source, path=str(local)),  # type: ignore[type-var]
    )
    with make_client(tmp_path / "q") as client:
        client.apply([ENTITIES["driver_id"], table])
        expected = client.get_historical_features(REFS, entity_frame()).to_pandas()
    assert got.equals(expected)


def test_a_pinned_version_reads_the_old_snapshot(tmp_path: Path, delta_path: Path) -> None:
    late = [{"driver_id": 1, "event_timestamp": datetime(2024, 3, 10, tzinfo=UTC)}]
    results = {}
    for name, pin in (("latest", None), ("v1", 1)):
        with make_client(tmp_path / name) as client:
            client.apply([ENTITIES["driver_id"], _delta_table(path=delta_path, version=pin)])
            results[name] = (
                client.get_historical_features(REFS, entity_frame(late)).to_pandas()["driver_stats__trips"].tolist()
            )
    # Version 1 holds days 0 and 1 (n < 8): the last row of driver 1 is n = 7; the latest, n = 19.
    assert results == {"latest": [191], "v1": [71]}


def test_ingestion_reads_only_files_whose_statistics_fit_the_window(tmp_path: Path, delta_path: Path) -> None:
    source = _delta_table(path=delta_path).batch_source
    assert isinstance(source, pv.DeltaSource)
    start, end = DAY0 + timedelta(days=3), DAY0 + timedelta(days=4)
    snapshot = open_delta(source, what="t", base_dir=tmp_path, storage=None, lower=start, upper=end)
    assert snapshot.version == 4
    assert len(deltalake.DeltaTable(str(delta_path)).file_uris()) == 5  # one file per commit (day)
    assert len(snapshot.files) == 2  # days 3 and 4 (whose first rows may be at `end`); days 0-2 pruned
    with make_client(tmp_path / "p") as client:
        client.apply([ENTITIES["driver_id"], _delta_table(path=delta_path)])
        client.start_offline_to_online_ingestion("driver_stats", start=start, end=end).wait()
        online = client.get_online_features(REFS, [{"driver_id": 1}, {"driver_id": 2}]).to_dict()
    assert online["driver_stats__trips"] == [151, 152]  # the last rows before day 4: n = 15


def test_a_schema_that_does_not_match_names_the_source(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    deltalake.write_deltalake(
        str(path), pa.table({"driver_id": [1], "event_ts": pa.array([DAY0], pa.timestamp("us", tz="UTC"))})
    )
    with make_client(tmp_path / "p") as client:
        client.apply([ENTITIES["driver_id"], _delta_table(path=path)])
        with pytest.raises(DataError, match=r"driver_stats.*trips"):
            client.get_historical_features(REFS, entity_frame())


def test_a_missing_table_or_version_is_a_clear_error(tmp_path: Path, delta_path: Path) -> None:
    for table, pattern in (
        (_delta_table(path=tmp_path / "nothing"), r"driver_stats.*not a Delta table"),
        (_delta_table(path=delta_path, version=99), r"driver_stats.*cannot open the Delta table at 99"),
    ):
        with make_client(tmp_path / "p") as client:
            client.apply([ENTITIES["driver_id"], table])
            with pytest.raises(DataError, match=pattern):
                client.get_historical_features(REFS, entity_frame())


def test_the_registry_codec_stores_delta_sources() -> None:
    for pin in ({"version": 3}, {"timestamp": datetime(2024, 3, 2, tzinfo=UTC)}, {}):
        table = _delta_table(path="s3://bucket/tables/driver_stats", **pin)
        record = codec.to_dict(table)
        assert record["format_version"] == 4
        assert codec.from_json(codec.to_json(table)) == table
    with pytest.raises(pv.errors.DefinitionError, match="version"):
        pv.DeltaSource(path="x", event_timestamp_column="t", version=-1)
    with pytest.raises(pv.errors.DefinitionError, match="not both"):
        pv.DeltaSource(path="x", event_timestamp_column="t", version=1, timestamp=DAY0)


def test_lineage_names_the_delta_version_and_the_parquet_files(tmp_path: Path, delta_path: Path) -> None:
    local = tmp_path / "parquet" / "data.parquet"
    local.parent.mkdir(parents=True)
    pa.parquet.write_table(pa.Table.from_pylist(driver_rows(), schema=source_schema(driver_stats(), ENTITIES)), local)
    files_table = dataclasses.replace(
        driver_stats(max_age=None),
        name="file_stats",
        batch_source=dataclasses.replace(driver_stats().batch_source, path=str(local)),  # type: ignore[type-var]
    )
    with make_client(tmp_path / "p") as client:
        client.apply([ENTITIES["driver_id"], _delta_table(path=delta_path, version=2), files_table])
        job = client.get_historical_features([*REFS, "file_stats:trips"], entity_frame())
        delta, files = job.lineage()
    assert (delta.table, delta.delta_version, len(delta.files)) == ("driver_stats", 2, 3)
    assert files.delta_version is None
    assert [(f.path, f.size) for f in files.files] == [(str(local), local.stat().st_size)]
    assert files.files[0].modified is not None


def test_a_pinned_timestamp_reads_the_table_as_it_was_then(tmp_path: Path) -> None:
    path = tmp_path / "delta" / "driver_stats"
    for day in range(2):
        _write(path, _by_day(driver_rows(), day))
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    for day in range(2, 5):
        _write(path, _by_day(driver_rows(), day))
    late = [{"driver_id": 1, "event_timestamp": datetime(2024, 3, 10, tzinfo=UTC)}]
    results = {}
    for name, pin in (("latest", None), ("then", between), ("naive", between.replace(tzinfo=None))):
        with make_client(tmp_path / name) as client:
            client.apply([ENTITIES["driver_id"], _delta_table(path=path, timestamp=pin)])
            job = client.get_historical_features(REFS, entity_frame(late))
            results[name] = (job.to_pandas()["driver_stats__trips"].tolist(), job.lineage()[0].delta_version)
    # At `between` the table held versions 0 and 1 (days 0 and 1): the last row of driver 1 is n = 7.
    assert results == {"latest": ([191], 4), "then": ([71], 1), "naive": ([71], 1)}
    with make_client(tmp_path / "early") as client:
        client.apply([ENTITIES["driver_id"], _delta_table(path=path, timestamp=datetime(2000, 1, 1, tzinfo=UTC))])
        with pytest.raises(DataError, match=r"driver_stats.*cannot open the Delta table at 2000-01-01"):
            client.get_historical_features(REFS, entity_frame(late))


def test_a_rerun_with_the_same_pin_gives_the_same_bytes(tmp_path: Path, delta_path: Path) -> None:
    """A training set built on a pinned version is reproducible to the byte, whatever is committed since."""
    outputs, lineages = [], []
    for run in range(2):
        with make_client(tmp_path / f"run{run}") as client:
            client.apply([ENTITIES["driver_id"], _delta_table(path=delta_path, version=2)])
            job = client.get_historical_features(REFS, entity_frame())
            out = tmp_path / f"training{run}.parquet"
            job.to_parquet(str(out))
            outputs.append(out.read_bytes())
            lineages.append(job.lineage())
        _write(delta_path, _by_day(driver_rows(), 3), mode="append")  # committed after the first run
    assert lineages[0] == lineages[1]
    assert lineages[0][0].delta_version == 2
    assert outputs[0] == outputs[1]
