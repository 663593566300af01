"""``provender apply``'s file selection (.provenderignore) and pruning; ``tables|entities delete``.

Each test works on a copy of one ``provender init`` project whose sample data was generated once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from provender import Client
from provender.cli.ignore import IgnoreRules, python_files
from provender.cli.main import cli
from tests.support.registries import use_test_registry
from tests.support.services import RedisServer
from tests.support.terminal import init_project

DRIVER_REFS = ["driver_statistics:conv_rate"]
SIDE_EFFECT = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_project(tmp_path_factory.mktemp("apply") / "driver_project", apply=False)


@pytest.fixture
def project(generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("PROVENDER_"):
            monkeypatch.delenv(name)
    directory = tmp_path / "driver_project"
    shutil.copytree(generated, directory)
    use_test_registry(directory / "provender.yaml")
    monkeypatch.chdir(directory)
    return directory


def run(*args: str, exit_code: int = 0, input: str | None = None, env: Mapping[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input, env=dict(env or {}))
    assert result.exit_code == exit_code, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def plan_rows(result: Result) -> list[list[str]]:
    return [line.split() for line in result.stdout.splitlines()]


def online_status(env: Mapping[str, str] | None = None) -> str:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        with Client() as client:
            return str(
                client.get_online_features(DRIVER_REFS, [{"driver_id": 1001}]).statuses()[
                    "driver_statistics__conv_rate"
                ][0]
            )


# -- which files are imported ---------------------------------------------------------------------


def test_init_writes_an_ignore_file_that_keeps_generate_data_out(project: Path) -> None:
    assert "generate_data.py" in (project / ".provenderignore").read_text(encoding="utf-8")
    result = run("apply", ".", "--dry-run")
    assert "Imported 1 file: driver_repo.py" in result.stdout


def test_dry_run_does_not_import_ignored_files(project: Path) -> None:
    marker = project / "snippet_ran"
    (project / "snippet.py").write_text(SIDE_EFFECT.format(marker=str(marker)), encoding="utf-8")
    run("apply", ".", "--dry-run")
    assert marker.exists()  # documented: apply imports (runs) every file that is not ignored
    marker.unlink()

    with (project / ".provenderignore").open("a", encoding="utf-8") as ignore:
        ignore.write("\n# saved snippets\nsnippet*.py\n")
    result = run("apply", ".", "--dry-run")
    assert not marker.exists()
    assert "snippet.py" not in result.stdout


def test_default_ignores_skip_virtualenvs_and_build_output(project: Path) -> None:
    for folder in (
        "venv/lib",
        "env",
        "lib/python3.11/site-packages/pkg",
        "build/lib",
        ".hidden",
        "__pycache__",
        "dist",
    ):
        (project / folder).mkdir(parents=True, exist_ok=True)
        (project / folder / "module.py").write_text("raise SystemExit('imported')\n", encoding="utf-8")
    (project / "features").mkdir()
    (project / "features" / "more.py").write_text("x = 1\n", encoding="utf-8")
    assert [p.relative_to(project).as_posix() for p in python_files(project)] == ["driver_repo.py", "features/more.py"]
    run("apply", ".", "--dry-run")


@pytest.mark.parametrize(
    ("patterns", "path", "is_folder", "ignored"),
    [
        (["scratch/"], "scratch", True, True),
        (["scratch/"], "scratch", False, False),  # a trailing slash matches folders only
        (["scratch/"], "a/scratch", True, True),  # no inner slash: matches at any depth
        (["/scratch"], "a/scratch", True, False),  # a leading slash anchors at the folder
        (["a/*.py"], "a/b.py", False, True),
        (["a/*.py"], "a/b/c.py", False, False),  # * does not cross folders
        (["a/**/c.py"], "a/b/x/c.py", False, True),
        (["**/c.py"], "c.py", False, True),
        (["*.py", "!keep.py"], "keep.py", False, False),  # the last match wins
        (["!.config.py"], ".config.py", False, False),  # re-include what a default excludes
        (["# generate_data.py", ""], "generate_data.py", False, False),
    ],
)
def test_ignore_patterns_follow_gitignore(patterns: list[str], path: str, is_folder: bool, ignored: bool) -> None:
    assert IgnoreRules(patterns).is_ignored(path, is_folder=is_folder) is ignored


# -- objects no file defines any more -------------------------------------------------------------


def remove_table_definition(project: Path) -> None:
    text = (project / "driver_repo.py").read_text(encoding="utf-8")
    (project / "driver_repo.py").write_text(text[: text.index("driver_statistics = ")], encoding="utf-8")


def test_apply_reports_and_prunes_a_table_no_file_defines(project: Path) -> None:
    run("apply", ".")
    run("ingest", "--table", "driver_statistics", "--start", "2020-01-01")
    assert online_status() == "PRESENT"
    remove_table_definition(project)

    kept = run("apply", ".")
    assert any(row[:5] == ["not", "defined", "feature", "table", "driver_statistics"] for row in plan_rows(kept))
    assert "Applied: 0 added, 0 changed, 1 unchanged, 0 refused, 1 not defined. Registry version 1." in kept.stdout
    assert "--prune" in kept.stdout

    dry = run("apply", ".", "--prune", "--dry-run")
    assert any(row[:4] == ["deleted", "feature", "table", "driver_statistics"] for row in plan_rows(dry))
    assert "Dry run: 0 added, 0 changed, 1 unchanged, 0 refused, 1 deleted; nothing applied." in dry.stdout
    assert online_status() == "PRESENT"

    pruned = run("apply", ".", "--prune")
    assert "Applied: 0 added, 0 changed, 1 unchanged, 0 refused, 1 deleted. Registry version 2." in pruned.stdout
    assert run("tables", "list").stdout.strip() == "(none)"
    # re-created from the same definition, the table starts empty online: its old rows were deleted
    init_again = CliRunner().invoke(cli, ["init", ".", "--force"])
    assert init_again.exit_code == 0, init_again.output
    run("apply", ".")
    assert online_status() == "NOT_FOUND"


def test_prune_needs_a_folder(project: Path) -> None:
    run("apply", ".")
    result = run("apply", "driver_repo.py", "--prune", exit_code=2)
    assert "--prune needs the folder of every definition" in result.stderr
    assert "driver_statistics" in run("tables", "list").stdout


def test_prune_refuses_an_entity_a_kept_table_uses(project: Path) -> None:
    run("apply", ".")
    text = (project / "driver_repo.py").read_text(encoding="utf-8")
    # the entity is no longer a module-level object, so no file defines it; the table still uses it
    (project / "driver_repo.py").write_text(
        text.replace("driver = pv.Entity(", "driver = lambda: pv.Entity(", 1), encoding="utf-8"
    )
    result = run("apply", ".", "--prune", exit_code=1)
    assert "cannot be pruned: used by feature tables driver_statistics" in result.output
    assert run("entities", "list").stdout.count("driver_id") == 1


# -- tables delete / entities delete --------------------------------------------------------------


def test_tables_delete_asks_first_and_deletes_the_online_rows(project: Path) -> None:
    run("apply", ".")
    run("ingest", "--table", "driver_statistics", "--start", "2020-01-01")

    declined = run("tables", "delete", "driver_statistics", input="n\n", exit_code=1)
    assert "Delete feature table 'driver_statistics' of project 'default' and its online rows?" in declined.output
    assert "Aborted" in declined.output
    assert online_status() == "PRESENT"

    deleted = run("tables", "delete", "driver_statistics", input="y\n")
    assert "Deleted feature table 'driver_statistics' and 10 online rows. Registry version 2." in deleted.stdout
    assert run("tables", "list").stdout.strip() == "(none)"
    run("apply", ".")
    assert online_status() == "NOT_FOUND"


def test_tables_delete_unknown_name_has_a_hint(project: Path) -> None:
    run("apply", ".")
    result = run("tables", "delete", "driver_statistic", "--yes", exit_code=1)
    assert "Did you mean 'driver_statistics'?" in result.stderr


def test_entities_delete(project: Path) -> None:
    run("apply", ".")
    refused = run("entities", "delete", "driver_id", "--yes", exit_code=1)
    assert "used by feature tables: driver_statistics" in refused.stderr
    run("tables", "delete", "driver_statistics", "--yes")
    deleted = run("entities", "delete", "driver_id", "--yes")
    assert "Deleted entity 'driver_id'. Registry version 3." in deleted.stdout
    assert run("entities", "list").stdout.strip() == "(none)"


@pytest.mark.service
def test_tables_delete_deletes_the_rows_in_redis(project: Path, redis_server: RedisServer) -> None:
    env = {
        "PROVENDER_ONLINE__STORE": "redis",
        "PROVENDER_ONLINE__URL": redis_server.url,
        "PROVENDER_PROJECT": f"delete_{project.parent.name[-20:].replace('-', '_')}",
    }
    run("apply", ".", env=env)
    run("ingest", "--table", "driver_statistics", "--start", "2020-01-01", env=env)
    assert online_status(env) == "PRESENT"
    deleted = run("tables", "delete", "driver_statistics", "--yes", env=env)
    assert "and 10 online rows" in deleted.stdout
    run("apply", ".", env=env)
    assert online_status(env) == "NOT_FOUND"


def test_applying_one_file_does_not_report_the_other_files_objects(project: Path) -> None:
    (project / "more.py").write_text(
        "import provender as pv\ncustomer = pv.Entity(name='customer_id', value_type=pv.ValueType.STRING)\n",
        encoding="utf-8",
    )
    run("apply", ".")
    result = run("apply", "more.py")
    assert "not defined" not in result.stdout
    assert "Applied: 0 added, 0 changed, 1 unchanged, 0 refused." in result.stdout
