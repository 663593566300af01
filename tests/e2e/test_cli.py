"""The `provender` command line, end to end: init, the generated data, apply, the registry views.

Most runs go through click's CliRunner; a few run the installed console script in a real process.
Every run uses a project written by `provender init` under tmp_path, never the repository.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner, Result

from provender import Aggregation, Client, Entity, FeatureTable, RegistryConflictError, load_settings
from provender import expect as pv_expect
from provender.cli.apply import read_definitions
from provender.cli.init import TEMPLATE_FILES
from provender.cli.main import cli
from tests.support.registries import is_sqlite, use_test_registry

CONSOLE_SCRIPT = Path(sys.executable).parent / "provender"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tmp_path with no PROVENDER_* settings from the outer environment."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PROVENDER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project written by `provender init`."""
    directory = tmp_path / "driver_project"
    result = CliRunner().invoke(cli, ["init", str(directory)])
    assert result.exit_code == 0, result.output
    use_test_registry(directory / "provender.yaml")
    return directory


@pytest.fixture
def applied(project: Path) -> Path:
    """A project whose definitions are registered."""
    run(project, "apply", str(project))
    return project


def run(project: Path, *args: str, exit_code: int = 0) -> Result:
    """Invoke the CLI with the project's config file; check the exit code."""
    result = CliRunner().invoke(cli, ["--config", str(project / "provender.yaml"), *args])
    assert result.exit_code == exit_code, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `provender` console script in a fresh process."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PROVENDER_")}
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def definitions_of(project: Path) -> tuple[Entity, FeatureTable]:
    found = read_definitions(project / "driver_repo.py")
    entities = [d for d in found if isinstance(d, Entity)]
    tables = [d for d in found if isinstance(d, FeatureTable)]
    assert len(entities) == 1
    assert len(tables) == 1
    return entities[0], tables[0]


def registry_of(project: Path) -> tuple[int, list[Entity], list[FeatureTable]]:
    with Client(config=project / "provender.yaml") as client:
        return client.registry_version(), client.list_entities(), client.list_feature_tables()


def set_feature_type(project: Path, old: str, new: str) -> None:
    path = project / "driver_repo.py"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


# -- init ---------------------------------------------------------------------------------------


def test_init_writes_the_template_files(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "driver_project"
    result = CliRunner().invoke(cli, ["init", str(directory)])
    assert result.exit_code == 0, result.output
    templates = resources.files("provender.cli") / "templates"
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["provender.yaml", "driver_repo.py", "generate_data.py", ".provenderignore"]
    )
    for template, name in TEMPLATE_FILES.items():
        assert (directory / name).read_text(encoding="utf-8") == (templates / template).read_text(encoding="utf-8")
        assert f"wrote {directory / name}" in result.stdout
    assert "python generate_data.py" in result.stdout


def test_init_refuses_to_overwrite_without_force(project: Path) -> None:
    (project / "driver_repo.py").write_text("# my edits\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["init", str(project)])
    assert result.exit_code == 1
    assert "already exist; use --force" in result.stderr
    assert "exist(s)" not in result.stderr
    assert "--force" in result.stderr
    assert "Traceback" not in result.output
    assert (project / "driver_repo.py").read_text(encoding="utf-8") == "# my edits\n"

    forced = CliRunner().invoke(cli, ["init", str(project), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "my edits" not in (project / "driver_repo.py").read_text(encoding="utf-8")


def test_init_refuses_when_any_one_file_exists(tmp_path: Path) -> None:
    (tmp_path / "generate_data.py").write_text("# mine\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["init", str(tmp_path)])
    assert result.exit_code == 1
    assert "generate_data.py already exists; use --force" in result.stderr
    assert not (tmp_path / "provender.yaml").exists()


# -- the generated data -------------------------------------------------------------------------


def test_generated_data_matches_the_definitions(project: Path) -> None:
    started = datetime.now(UTC)
    completed = subprocess.run(
        [sys.executable, "generate_data.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "wrote 1680 rows for 10 drivers" in completed.stdout

    out = project / "data" / "driver_statistics"
    partitions = sorted(p.name for p in out.iterdir())
    assert partitions
    assert all(name.startswith("date=") for name in partitions)
    assert len(partitions) in (7, 8)  # a week of hours ending now spans 7 or 8 dates

    dataset = ds.dataset(out, format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 7 * 24 * 10

    entity, feature_table = definitions_of(project)
    schema = ds.dataset(out, format="parquet").schema  # the files' own columns, without the partition key
    assert schema.field(entity.name).type == entity.value_type.to_arrow() == pa.int64()
    for feature in feature_table.features:
        assert schema.field(feature.name).type == feature.value_type.to_arrow(), feature.name
    assert schema.field("avg_daily_trips").type == pa.int32()
    assert schema.field("conv_rate").type == pa.float32()
    assert schema.field("acc_rate").type == pa.float32()
    source = feature_table.batch_source
    assert source is not None
    assert source.path == "data/driver_statistics/"
    for column in (source.event_timestamp_column, source.created_timestamp_column):
        assert column is not None
        assert schema.field(column).type == pa.timestamp("us", tz="UTC")

    rows = table.to_pydict()
    assert sorted(set(rows["driver_id"])) == list(range(1001, 1011))
    hours = sorted(set(rows["datetime"]))
    assert len(hours) == 7 * 24
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(hours))
    assert hours[-1] <= datetime.now(UTC)
    assert started - hours[-1] < timedelta(hours=1)
    assert all(
        created - event == timedelta(minutes=5)
        for event, created in zip(rows["datetime"], rows["created"], strict=True)
    )
    # each row sits in the partition of its event's UTC date, so partition pruning is exact
    assert all(
        str(date) == event.date().isoformat() for date, event in zip(rows["date"], rows["datetime"], strict=True)
    )
    assert all(0 <= trips < 1000 for trips in rows["avg_daily_trips"])
    assert all(0.0 <= rate < 1.0 for rate in rows["conv_rate"] + rows["acc_rate"])


# -- apply --------------------------------------------------------------------------------------


def test_apply_dry_run_registers_nothing(project: Path) -> None:
    result = run(project, "apply", str(project), "--dry-run")
    assert "Plan for project 'default'" in result.stdout
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["added", "entity", "driver_id"] for line in lines)
    assert any(line.split()[:4] == ["added", "feature", "table", "driver_statistics"] for line in lines)
    assert "Dry run: 2 added, 0 changed, 0 unchanged, 0 refused; nothing applied." in result.stdout
    assert registry_of(project) == (0, [], [])


def test_apply_registers_and_reapply_is_unchanged(project: Path) -> None:
    entity, table = definitions_of(project)
    result = run(project, "apply", str(project))
    assert "Applied: 2 added, 0 changed, 0 unchanged, 0 refused. Registry version 1." in result.stdout
    assert registry_of(project) == (1, [entity], [table])
    assert (project / ".provender" / "registry.db").is_file() or not is_sqlite()  # relative to the config file

    again = run(project, "apply", str(project))
    lines = again.stdout.splitlines()
    assert any(line.split()[:3] == ["unchanged", "entity", "driver_id"] for line in lines)
    assert any(line.split()[:4] == ["unchanged", "feature", "table", "driver_statistics"] for line in lines)
    assert "Applied: 0 added, 0 changed, 2 unchanged, 0 refused. Registry version 1." in again.stdout
    assert registry_of(project) == (1, [entity], [table])


def test_apply_from_the_project_directory_without_config(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    result = CliRunner().invoke(cli, ["apply", "driver_repo.py"])
    assert result.exit_code == 0, result.output
    assert registry_of(project)[0] == 1


def test_apply_into_another_project(applied: Path) -> None:
    run(applied, "--project", "fraud", "apply", str(applied))
    projects = json.loads(run(applied, "projects", "list", "--json").stdout)
    assert [(p["name"], p["version"]) for p in projects] == [("default", 1), ("fraud", 1)]


def test_changed_definition_is_applied(applied: Path) -> None:
    set_feature_type(applied, 'description="Driver id"', 'description="The driver"')
    result = run(applied, "apply", str(applied))
    assert any(line.split()[:3] == ["changed", "entity", "driver_id"] for line in result.stdout.splitlines())
    assert "Registry version 2." in result.stdout


def test_refused_apply_fails_cleanly(applied: Path) -> None:
    set_feature_type(applied, "avg_daily_trips", "avg_daily_trips_renamed")  # fine: a new feature
    set_feature_type(applied, '"conv_rate", pv.ValueType.FLOAT', '"conv_rate", pv.ValueType.DOUBLE')
    result = run(applied, "apply", str(applied), exit_code=1)
    assert any(
        line.split()[:4] == ["refused", "feature", "table", "driver_statistics"] for line in result.stdout.splitlines()
    )
    assert "Refused (project 'default', nothing was changed)" in result.stderr
    assert "'conv_rate' value_type FLOAT -> DOUBLE" in result.stderr
    assert "Traceback" not in result.output
    version, _, tables = registry_of(applied)
    assert version == 1
    assert tables[0].feature_names == ("avg_daily_trips", "conv_rate", "acc_rate")

    dry = run(applied, "apply", str(applied), "--dry-run", exit_code=1)
    assert "FLOAT -> DOUBLE" in dry.stderr


def test_refused_apply_with_debug_raises(applied: Path) -> None:
    set_feature_type(applied, '"conv_rate", pv.ValueType.FLOAT', '"conv_rate", pv.ValueType.DOUBLE')
    result = CliRunner().invoke(cli, ["--debug", "--config", str(applied / "provender.yaml"), "apply", str(applied)])
    assert result.exit_code == 1
    assert isinstance(result.exception, RegistryConflictError)


def test_bad_definition_names_the_file_and_the_field(project: Path) -> None:
    bad = project / "bad_definitions.py"
    bad.write_text(
        "from datetime import timedelta\n"
        "import provender as pv\n"
        "trips = pv.FeatureTable(name='trips', entities=['driver_id'],\n"
        "    features=[pv.Feature('trips', pv.ValueType.INT64)],\n"
        "    batch_source=pv.FileSource(path='x.parquet', event_timestamp_column='ts'),\n"
        "    max_age=timedelta(0))\n",
        encoding="utf-8",
    )
    result = run(project, "apply", str(project), exit_code=1)
    assert str(bad) in result.stderr
    assert "max_age" in result.stderr
    assert "FeatureTable 'trips'" in result.stderr
    assert "Traceback" not in result.output
    assert registry_of(project) == (0, [], [])


def test_definitions_file_that_fails_to_import_is_named(project: Path) -> None:
    broken = project / "broken.py"
    broken.write_text("import provender as pv\nx = undefined_name\n", encoding="utf-8")
    result = run(project, "apply", str(broken), exit_code=1)
    assert str(broken) in result.stderr
    assert "NameError" in result.stderr
    assert "Traceback" not in result.output


def test_apply_without_definitions(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "nothing.py").write_text("x = 1\n", encoding="utf-8")
    result = run(project, "apply", str(empty), exit_code=1)
    assert "no Entity, FeatureTable or OnDemandFeatures objects found" in result.stderr


def test_apply_missing_path(project: Path, tmp_path: Path) -> None:
    result = run(project, "apply", str(tmp_path / "nowhere"), exit_code=1)
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.output


# -- registry views -----------------------------------------------------------------------------


def test_entities_list(applied: Path) -> None:
    text = run(applied, "entities", "list").stdout
    header, _, row = text.splitlines()
    assert header.split() == ["NAME", "TYPE", "DESCRIPTION"]
    assert row.split() == ["driver_id", "INT64", "Driver", "id"]
    assert json.loads(run(applied, "entities", "list", "--json").stdout) == [
        {"name": "driver_id", "value_type": "INT64", "description": "Driver id", "labels": {}}
    ]


def test_tables_list(applied: Path) -> None:
    text = run(applied, "tables", "list").stdout
    header, _, row = text.splitlines()
    assert header.split() == ["NAME", "ENTITIES", "FEATURES", "MAX_AGE", "SOURCE"]
    assert row.split()[:3] == ["driver_statistics", "driver_id", "3"]
    assert row.split()[3] == "1d"
    assert row.endswith("data/driver_statistics/")
    listed = json.loads(run(applied, "tables", "list", "--json").stdout)
    assert [t["name"] for t in listed] == ["driver_statistics"]
    assert listed[0]["entities"] == ["driver_id"]


def test_tables_describe(applied: Path) -> None:
    text = run(applied, "tables", "describe", "driver_statistics").stdout
    assert "Feature table: driver_statistics" in text
    assert "entities:  driver_id" in text
    assert "max_age:   1d\n" in text
    assert (
        "data/driver_statistics/ (ParquetFormat), event time 'datetime', created 'created', partitions 'date'" in text
    )
    assert "labels:    owner=ride-team" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["avg_daily_trips", "INT32"] in rows
    assert ["conv_rate", "FLOAT"] in rows
    assert ["acc_rate", "FLOAT"] in rows

    described = json.loads(run(applied, "tables", "describe", "driver_statistics", "--json").stdout)
    assert described["name"] == "driver_statistics"
    assert described["entities"] == ["driver_id"]
    assert described["features"] == [
        {"name": "avg_daily_trips", "value_type": "INT32", "description": "", "expect": []},
        {"name": "conv_rate", "value_type": "FLOAT", "description": "", "expect": []},
        {"name": "acc_rate", "value_type": "FLOAT", "description": "", "expect": []},
    ]
    assert described["max_age_us"] == 24 * 3600 * 1_000_000
    assert described["labels"] == {"owner": "ride-team"}
    assert described["batch_source"]["path"] == "data/driver_statistics/"
    assert described["batch_source"]["date_partition_column"] == "date"
    assert described["stream_source"] is None


def test_tables_describe_shows_aggregations(applied: Path) -> None:
    with Client(settings=load_settings(applied / "provender.yaml", environ={})) as client:
        table = client.get_feature_table("driver_statistics")
        week = Aggregation(column="conv_rate", function="mean", window=timedelta(days=7), name="conv_rate_mean_7d")
        client.apply([dataclasses.replace(table, aggregations=[week])])
    text = run(applied, "tables", "describe", "driver_statistics").stdout
    rows = [line.split() for line in text.splitlines()]
    assert ["conv_rate_mean_7d", "DOUBLE"] in rows
    assert "aggregations (events with T - window < event_timestamp <= T):" in text
    assert ["conv_rate_mean_7d", "mean", "conv_rate", "7d"] in rows
    described = json.loads(run(applied, "tables", "describe", "driver_statistics", "--json").stdout)
    assert described["aggregations"] == [
        {
            "name": "conv_rate_mean_7d",
            "column": "conv_rate",
            "function": "mean",
            "window_us": 7 * 24 * 3600 * 1_000_000,
            "description": "",
        }
    ]


def test_tables_describe_unknown(applied: Path) -> None:
    result = run(applied, "tables", "describe", "nope", exit_code=1)
    assert "No feature table 'nope' in project 'default'." in result.stderr
    assert "Traceback" not in result.output
    typo = run(applied, "tables", "describe", "driver_statistic", exit_code=1)
    assert "Did you mean 'driver_statistics'?" in typo.stderr


def test_tables_describe_shows_expectations(applied: Path) -> None:
    with Client(config=applied / "provender.yaml") as client:
        table = client.get_feature_table("driver_statistics")
        features = [
            dataclasses.replace(f, expect=(pv_expect.not_null(), pv_expect.between(0, 1)))
            if f.name == "conv_rate"
            else f
            for f in table.features
        ]
        client.apply(
            dataclasses.replace(
                table, features=features, expect=(pv_expect.row_count_between(1),), validation_policy="warn"
            )
        )
    text = run(applied, "tables", "describe", "driver_statistics").stdout
    assert "validation: policy warn; table: row_count_between(1, None)" in text
    rows = [line.split(None, 2) for line in text.splitlines()]
    assert ["conv_rate", "FLOAT", "not_null, between(0, 1)"] in rows
    described = json.loads(run(applied, "tables", "describe", "driver_statistics", "--json").stdout)
    assert described["validation_policy"] == "warn"
    assert described["features"][1]["expect"] == [{"type": "not_null"}, {"type": "between", "min": 0, "max": 1}]


def test_projects_list(applied: Path) -> None:
    text = run(applied, "projects", "list").stdout
    header, _, row = text.splitlines()
    assert header.split() == ["NAME", "VERSION", "UPDATED_AT"]
    assert row.split()[:2] == ["default", "1"]
    projects = json.loads(run(applied, "projects", "list", "--json").stdout)
    assert len(projects) == 1
    assert (projects[0]["name"], projects[0]["version"]) == ("default", 1)
    updated_at = datetime.fromisoformat(projects[0]["updated_at"])
    assert updated_at.tzinfo is not None
    assert abs(datetime.now(UTC) - updated_at) < timedelta(minutes=5)


def test_views_of_an_empty_registry(project: Path) -> None:
    assert run(project, "entities", "list").stdout.strip() == "(none)"
    assert run(project, "tables", "list").stdout.strip() == "(none)"
    assert json.loads(run(project, "entities", "list", "--json").stdout) == []
    assert json.loads(run(project, "tables", "list", "--json").stdout) == []
    assert json.loads(run(project, "projects", "list", "--json").stdout) == [
        {"name": "default", "version": 0, "updated_at": None}
    ]


def test_bad_config_is_reported_without_traceback(project: Path) -> None:
    (project / "provender.yaml").write_text("onlin: {store: sqlite}\n", encoding="utf-8")
    result = run(project, "entities", "list", exit_code=1)
    assert "Did you mean 'online'?" in result.stderr
    assert "Traceback" not in result.output


def test_every_command_has_help() -> None:
    for args in (["--help"], ["init", "--help"], ["apply", "--help"], ["tables", "describe", "--help"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, args
        assert "Usage:" in result.stdout


# -- the installed console script ---------------------------------------------------------------


def test_console_script_end_to_end(project: Path) -> None:
    assert CONSOLE_SCRIPT.is_file(), "the provender console script is not installed in this environment"
    config = str(project / "provender.yaml")

    version = run_script("--version", cwd=project)
    assert version.returncode == 0
    assert "provender" in version.stdout

    applied = run_script("--config", config, "apply", str(project), cwd=project)
    assert applied.returncode == 0, applied.stderr
    assert "Registry version 1." in applied.stdout

    listed = run_script("tables", "list", "--json", cwd=project)  # finds ./provender.yaml
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)] == ["driver_statistics"]

    set_feature_type(project, '"conv_rate", pv.ValueType.FLOAT', '"conv_rate", pv.ValueType.DOUBLE')
    refused = run_script("--config", config, "apply", str(project), cwd=project)
    assert refused.returncode == 1
    assert "'conv_rate' value_type FLOAT -> DOUBLE" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout

    debug = run_script("--debug", "--config", config, "apply", str(project), cwd=project)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert "RegistryConflictError" in debug.stderr
