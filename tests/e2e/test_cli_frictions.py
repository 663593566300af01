"""Small things a new user trips over: a busy port, exit codes, a mistyped --project, stray files."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from provender.cli.main import cli
from tests.support.registries import use_test_registry

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An applied ``provender init`` project, as the working directory."""
    for name in list(os.environ):
        if name.startswith("PROVENDER_"):
            monkeypatch.delenv(name)
    directory = tmp_path / "driver_project"
    assert CliRunner().invoke(cli, ["init", str(directory)]).exit_code == 0
    use_test_registry(directory / "provender.yaml")
    monkeypatch.chdir(directory)
    run("apply", ".")
    return directory


def run(*args: str, exit_code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == exit_code, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_busy_http_port_is_named(project: Path, busy_port: int) -> None:
    result = run("serve", "--http-port", str(busy_port), "--no-grpc", exit_code=1)
    assert f"cannot listen on 127.0.0.1:{busy_port} (HTTP): Address already in use" in result.stderr
    assert "--http-port" in result.stderr
    assert "unexpected" not in result.output
    assert "Traceback" not in result.output


def test_busy_grpc_port_is_named(project: Path, busy_port: int) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        http_port = free.getsockname()[1]
    result = run("serve", "--http-port", str(http_port), "--grpc-port", str(busy_port), exit_code=1)
    assert f"cannot listen on 127.0.0.1:{busy_port} (gRPC): Address already in use" in result.stderr
    assert "--grpc-port" in result.stderr


def test_exit_codes_are_the_ones_the_readme_documents(project: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "exit code 1" in readme
    assert re.search(r"usage errors[^.]*exit code 2", readme), "the README documents usage errors' exit code"
    assert run("tables", "describe", "nope", exit_code=1).stderr.startswith("Error: No feature table 'nope'")
    assert "No such option '--nope'" in run("tables", "list", "--nope", exit_code=2).stderr
    assert "Missing option '--table'" in run("ingest", "--start", "now", exit_code=2).stderr


@pytest.mark.parametrize(
    "command",
    [
        ["tables", "list"],
        ["entities", "list"],
        ["tables", "describe", "driver_statistics"],
        ["online", "get", "-f", "driver_statistics", "-e", "driver_id=1001"],
        ["ingest", "--table", "driver_statistics", "--start", "now-1d"],
    ],
)
def test_a_mistyped_project_is_an_error_with_a_hint(project: Path, command: list[str]) -> None:
    result = run("--project", "defualt", *command, exit_code=1)
    assert "No project 'defualt'. Did you mean 'default'?" in result.stderr
    assert "(none)" not in result.output


def test_apply_creates_a_new_project_and_then_reads_work(project: Path) -> None:
    unknown = run("--project", "fraud", "tables", "list", exit_code=1)
    assert "`provender projects list` shows the projects" in unknown.stderr
    run("--project", "fraud", "apply", ".")
    assert "driver_statistics" in run("--project", "fraud", "tables", "list").stdout
    assert "fraud" in run("--project", "fraud", "projects", "list").stdout


def test_the_readmes_example_project_is_not_tracked_by_git() -> None:
    checked = subprocess.run(
        ["git", "check-ignore", "-q", "driver_project/provender.yaml"], cwd=REPO, check=False, timeout=30
    )
    assert checked.returncode == 0, ".gitignore does not ignore driver_project/ (the README's `provender init`)"
