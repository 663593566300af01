"""``sources.allowed_roots`` on every path that opens a source or writes a file, on real DuckDB and SQLite.

A project allows ``data/`` and ``out/``; ``secret/`` lies beside it. Apply (client, CLI, the core
service), historical retrieval (a table's source, the entity-row file, a symlink planted inside
``data/``), ``to_parquet``, ingestion, statistics and a stream job's offline log are each tried
with paths outside, and each is refused naming the path and the setting, with nothing read or
written; paths inside work.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

import provender as pv
from provender.cli.main import cli
from provender.config import load_settings
from provender.errors import SourcePathNotAllowedError
from tests.support.core import StartCore

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
START = datetime(2026, 1, 1, tzinfo=UTC)


def trips(path: str, name: str = "trips") -> pv.FeatureTable:
    return pv.FeatureTable(
        name=name,
        entities=["driver_id"],
        features=[pv.Feature("n", pv.ValueType.INT64)],
        batch_source=pv.FileSource(path=path, event_timestamp_column="ts"),
    )


def _rows(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array([1, 2], pa.int64()),
                "n": pa.array([10, 20], pa.int64()),
                "ts": pa.array([START, START + timedelta(hours=1)], pa.timestamp("us", tz="UTC")),
            }
        ),
        path,
    )
    return path


def _entities(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    when = pa.array([START + timedelta(days=1)] * 2, pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"driver_id": pa.array([1, 2], pa.int64()), "event_timestamp": when}), path)
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project folder, also the working directory (entity-row files and outputs are relative to it)."""
    root = tmp_path / "project"
    _rows(root / "data" / "trips.parquet")
    _entities(root / "data" / "rows.parquet")
    _rows(tmp_path / "secret" / "trips.parquet")
    _entities(tmp_path / "secret" / "rows.parquet")
    config = {"registry": "sqlite:///.provender/registry.db", "sources": {"allowed_roots": ["data", "out"]}}
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(root)
    return root


def client(project: Path, *, checked: bool = True) -> pv.Client:
    overrides: dict[str, object] = {} if checked else {"sources": {"allowed_roots": None}}
    return pv.Client(settings=load_settings(project / "provender.yaml", environ={}, overrides=overrides))


OUTSIDE = ["../secret/trips.parquet", "../secret", "data/../../secret/trips.parquet", "/etc/passwd", "https://x.org/t"]


@pytest.mark.parametrize("path", OUTSIDE)
def test_apply_and_plan_refuse_a_source_outside_and_change_nothing(project: Path, path: str) -> None:
    with client(project) as checked:
        checked.apply([DRIVER, trips("data/trips.parquet")])
        version = checked.registry_version()
        for call in (checked.plan, checked.apply):
            with pytest.raises(SourcePathNotAllowedError, match=r"sources\.allowed_roots") as info:
                call([DRIVER, trips(path, name="leak")])
            assert info.value.path == path and "feature table 'leak'" in str(info.value)
        assert checked.registry_version() == version
        assert [t.name for t in checked.list_feature_tables()] == ["trips"]


@pytest.mark.parametrize("source", ["../secret/trips.parquet", "data/../../secret", "../secret/*.parquet"])
def test_a_host_refuses_what_a_registry_written_elsewhere_names(project: Path, source: str) -> None:
    with client(project, checked=False) as unchecked:  # a registry writer without the allow-list
        unchecked.apply([DRIVER, trips(source)])
        assert (
            unchecked.get_historical_features(["trips:n"], project / "data" / "rows.parquet").to_arrow().num_rows == 2
        )
    with client(project) as checked:
        with pytest.raises(SourcePathNotAllowedError, match="batch source of feature table 'trips'"):
            checked.get_historical_features(["trips:n"], "data/rows.parquet")
        with pytest.raises(SourcePathNotAllowedError):
            checked.start_offline_to_online_ingestion("trips", start=START, end=START + timedelta(days=1))
        with pytest.raises(SourcePathNotAllowedError):
            checked.get_statistics("trips", start=START, end=START + timedelta(days=1))
        # Refused before any job was recorded: only the unchecked client's retrieval is listed.
        assert len(checked.list_jobs(include_finished=True)) == 1


def test_a_symlink_planted_inside_an_allowed_folder_is_refused_when_read(project: Path) -> None:
    with client(project) as checked:
        checked.apply([DRIVER, trips("data")])
        (project / "data" / "planted.parquet").symlink_to(project.parent / "secret" / "trips.parquet")
        with pytest.raises(SourcePathNotAllowedError, match=r"symlink .*planted\.parquet"):
            checked.get_historical_features(["trips:n"], "data/rows.parquet")
        with pytest.raises(SourcePathNotAllowedError):
            checked.start_offline_to_online_ingestion("trips", start=START, end=START + timedelta(days=1))
        (project / "data" / "planted.parquet").unlink()
        (project / "data" / "rows.parquet").unlink()
        (project / "data" / "rows.parquet").symlink_to(project.parent / "secret" / "rows.parquet")
        with pytest.raises(SourcePathNotAllowedError, match="entity rows"):
            checked.get_historical_features(["trips:n"], "data/rows.parquet")


@pytest.mark.parametrize("rows", ["../secret/rows.parquet", "{root}/../secret/rows.parquet", "../secret/*.parquet"])
def test_entity_rows_outside_are_refused(project: Path, rows: str) -> None:
    with client(project) as checked:
        checked.apply([DRIVER, trips("data/trips.parquet")])
        with pytest.raises(SourcePathNotAllowedError, match="entity rows"):
            checked.get_historical_features(["trips:n"], rows.format(root=project))


@pytest.mark.parametrize("out", ["../secret/out.parquet", "/tmp/provender-roots-out.parquet", "data/../../x.parquet"])
def test_outputs_outside_are_refused_and_nothing_is_written(project: Path, out: str) -> None:
    with client(project) as checked:
        checked.apply([DRIVER, trips("data/trips.parquet")])
        job = checked.get_historical_features(["trips:n"], "data/rows.parquet")
        with pytest.raises(SourcePathNotAllowedError, match="to_parquet output"):
            job.to_parquet(out if out.startswith("/") else project / out)
        assert not (project / out).exists() and not Path(out).exists()
        assert job.to_parquet(project / "out" / "training.parquet") == 2  # inside: written
        assert pq.read_table(project / "out" / "training.parquet").column("trips__n").to_pylist() == [10, 20]


def test_inside_paths_work_end_to_end(project: Path) -> None:
    with client(project) as checked:
        checked.apply([DRIVER, trips("data/trips.parquet")])
        training = checked.get_historical_features(["trips:n"], "data/rows.parquet").to_arrow()
        assert training.column("trips__n").to_pylist() == [10, 20]
        job = checked.start_offline_to_online_ingestion("trips", start=START, end=START + timedelta(days=1))
        job.wait()
        assert job.rows_written == 2
        assert checked.get_statistics("trips", start=START, end=START + timedelta(days=1)).rows == 2


def test_a_stream_jobs_offline_log_outside_is_refused(project: Path) -> None:
    with client(project) as checked:
        checked.apply([DRIVER, trips("data/trips.parquet")])
        with pytest.raises(SourcePathNotAllowedError, match="offline log"):
            checked.start_stream_to_online_ingestion("trips", offline_log="../secret/log")


def test_the_cli_refuses_outside_paths_with_exit_code_1(project: Path) -> None:
    (project / "repo.py").write_text(
        "import provender as pv\n"
        "driver = pv.Entity(name='driver_id', value_type=pv.ValueType.INT64)\n"
        "leak = pv.FeatureTable(name='leak', entities=['driver_id'], features=[pv.Feature('n', pv.ValueType.INT64)],\n"
        "    batch_source=pv.FileSource(path='../secret/trips.parquet', event_timestamp_column='ts'))\n"
    )
    runner = CliRunner()
    config = ["--config", str(project / "provender.yaml")]
    applied = runner.invoke(cli, [*config, "apply", str(project)])
    assert applied.exit_code == 1 and "sources.allowed_roots" in applied.output, applied.output
    (project / "repo.py").write_text((project / "repo.py").read_text().replace("../secret/trips", "data/trips"))
    assert runner.invoke(cli, [*config, "apply", str(project)]).exit_code == 0
    for entities, out in (("../secret/rows.parquet", "out/t.parquet"), ("data/rows.parquet", "../secret/t.parquet")):
        result = runner.invoke(cli, [*config, "retrieve", "-f", "leak:n", "--entities", entities, "--out", out])
        assert result.exit_code == 1 and "sources.allowed_roots" in result.output, result.output
    assert not (project.parent / "secret" / "t.parquet").exists()


@pytest.mark.service
def test_the_core_service_refuses_applies_naming_outside_sources(start_core: StartCore, tmp_path: Path) -> None:
    core = start_core(
        tmp_path / "core", registry="sqlite:///registry.db", settings={"sources": {"allowed_roots": ["/srv/data"]}}
    )
    settings = pv.Settings(registry=core.url, base_dir=tmp_path)  # the client itself checks nothing
    with pv.Client(settings=settings) as remote:
        remote.apply([DRIVER, trips("/srv/data/trips.parquet")])
        for path in ("/srv/data/../secret/t.parquet", "/srv/datax/t.parquet", "s3://lake/t.parquet"):
            with pytest.raises(SourcePathNotAllowedError) as info:
                remote.apply([DRIVER, trips(path, name="leak")])
            assert info.value.path == path and info.value.roots == ("/srv/data",)
        assert [t.name for t in remote.list_feature_tables()] == ["trips"]
