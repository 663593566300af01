"""`provender history` and `provender projects archive`, through the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from provender.cli.main import cli
from tests.support.registries import use_test_registry


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tmp_path with no PROVENDER_* settings from the outer environment."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PROVENDER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project written by `provender init`, with its definitions applied."""
    directory = tmp_path / "driver_project"
    assert CliRunner().invoke(cli, ["init", str(directory)]).exit_code == 0
    use_test_registry(directory / "provender.yaml")
    run(directory, "apply", str(directory))
    return directory


def run(project: Path, *args: str, exit_code: int = 0, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(cli, ["--config", str(project / "provender.yaml"), *args], input=stdin)
    assert result.exit_code == exit_code, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def test_history_lists_changes_newest_first(project: Path) -> None:
    run(project, "tables", "delete", "driver_statistics", "--yes")
    lines = run(project, "history").output.splitlines()
    assert lines[0].split() == ["VERSION", "CHANGED_AT", "ACTOR", "WHAT"]
    assert lines[2].split()[0] == "1->2"
    assert "deleted feature_table:driver_statistics" in lines[2]
    assert lines[3].split()[0] == "0->1"
    assert "anonymous" in lines[3] and "added entity:driver_id" in lines[3]
    assert len(run(project, "history", "--limit", "1").output.splitlines()) == 3


def test_history_as_json(project: Path) -> None:
    records = json.loads(run(project, "history", "--json").output)
    assert len(records) == 1
    record = records[0]
    assert (record["project"], record["version_before"], record["version_after"], record["actor"]) == (
        "default",
        0,
        1,
        "anonymous",
    )
    assert {"kind": "entity", "name": "driver_id", "action": "added", "fields": []} in record["items"]


def test_archive_a_project(project: Path) -> None:
    run(project, "--project", "fraud", "apply", str(project))
    run(project, "projects", "archive", "fraud", stdin="n\n", exit_code=1)  # declined: nothing happens
    assert "fraud" in run(project, "projects", "list").output
    result = run(project, "projects", "archive", "fraud", "--yes")
    assert "Archived project 'fraud' at version 2" in result.output
    assert "fraud" not in run(project, "projects", "list").output
    listed = json.loads(run(project, "projects", "list", "--archived", "--json").output)
    assert [(p["name"], p["archived_at"] is not None) for p in listed] == [("default", False), ("fraud", True)]
    assert "driver_statistics" in run(project, "--project", "fraud", "tables", "list").output
    refused = run(project, "--project", "fraud", "apply", str(project), exit_code=1)
    assert "archived" in refused.output
    everything = run(project, "history", "--all-projects").output
    assert "archive project fraud" in everything
    assert everything.splitlines()[0].split()[0] == "PROJECT"


def test_history_prints_the_readable_diff_of_each_change(project: Path) -> None:
    definitions = project / "driver_repo.py"
    text = definitions.read_text()
    edited = text.replace('labels={"owner": "ride-team"}', 'labels={"owner": "pricing"}').replace(
        'pv.Feature("acc_rate", pv.ValueType.FLOAT),',
        'pv.Feature("acc_rate", pv.ValueType.FLOAT, description="Accepted offers"),\n'
        '        pv.Feature("speed", pv.ValueType.DOUBLE),',
    )
    assert edited.count("pricing") == 1 and edited.count('"speed"') == 1
    definitions.write_text(edited.replace('pv.Feature("conv_rate", pv.ValueType.FLOAT),\n', ""))
    run(project, "apply", str(project))
    lines = run(project, "history").output.splitlines()
    assert lines[2].split()[0] == "1->2" and "changed feature_table:driver_statistics" in lines[2]
    assert lines[3:9] == [
        "    ~ feature_table:driver_statistics",
        "        + feature speed (DOUBLE)",
        "        - feature conv_rate",
        "        ~ feature acc_rate: description '' -> 'Accepted offers'",
        "        labels: {owner='ride-team'} -> {owner='pricing'}",
        lines[8],
    ]
    assert lines[8].split()[0] == "0->1"  # the first apply added everything: no diff lines under it
    assert len(lines) == 9
    summaries = run(project, "history", "--no-diff").output.splitlines()
    assert summaries == [*lines[:3], lines[8]]
    [record, _] = json.loads(run(project, "history", "--json").output)
    [item] = record["items"]
    assert item["diff"] == [line.strip() for line in lines[4:8]]
