"""The command line configured by environment variables, as the README and Kubernetes do it.

Runs the installed console script in an ``init`` project (whose provender.yaml pins the SQLite
online store) with the README's own ``PROVENDER_*`` example, against a real Redis.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import redis

from tests.support.kubernetes import KUBERNETES_SERVICE_LINKS
from tests.support.services import RedisServer
from tests.support.terminal import init_project, run_script

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_environment_example() -> tuple[dict[str, str], list[str]]:
    """The README's ``PROVENDER_...=... provender ...`` line: its variables and its command."""
    lines = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("PROVENDER_")]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    assignments = [w for w in words if "=" in w and w.startswith("PROVENDER_")]
    command = words[len(assignments) :]
    assert command[0] == "provender"
    return dict(w.split("=", 1) for w in assignments), command[1:]


@pytest.mark.service
def test_readme_environment_example_switches_an_init_project_to_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    project = init_project(tmp_path / "driver_project", apply=False)
    assert "store: sqlite, path:" in (project / "provender.yaml").read_text(encoding="utf-8")
    env, command = readme_environment_example()
    assert env["PROVENDER_ONLINE__STORE"] == "redis"
    env["PROVENDER_ONLINE__URL"] = redis_server.url
    env["PROVENDER_PROJECT"] = f"readme_{tmp_path.name[-20:].replace('-', '_')}"

    applied = run_script("apply", ".", cwd=project, env=env)
    assert applied.returncode == 0, applied.stderr
    listed = run_script(*command, cwd=project, env=env)  # the README's own command (tables list)
    assert listed.returncode == 0, listed.stderr
    assert "driver_statistics" in listed.stdout

    ingested = run_script("ingest", "--table", "driver_statistics", "--start", "2020-01-01", cwd=project, env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert "10 entity keys written" in ingested.stdout
    got = run_script(
        "online",
        "get",
        "--features",
        "driver_statistics",
        "--entity",
        "driver_id=1001",
        "--json",
        cwd=project,
        env=env,
    )
    assert got.returncode == 0, got.stderr
    statuses = json.loads(got.stdout)["statuses"]
    assert statuses["driver_statistics__conv_rate"] == ["PRESENT"]

    # the rows are in Redis, and the file's SQLite store was never created
    keys = redis.Redis.from_url(redis_server.url).keys(f"*{env['PROVENDER_PROJECT']}*")
    assert keys
    assert not (project / ".provender" / "online.db").exists()


def test_kubernetes_service_variables_do_not_stop_the_command_line(tmp_path: Path) -> None:
    project = init_project(tmp_path / "driver_project", generate=False, apply=False)
    applied = run_script("apply", ".", cwd=project, env=KUBERNETES_SERVICE_LINKS)
    assert applied.returncode == 0, applied.stderr
    assert applied.stderr == ""
    typo = run_script("tables", "list", cwd=project, env={"PROVENDER_ONLNE__STORE": "redis"})
    assert typo.returncode == 0, typo.stderr
    assert "PROVENDER_ONLNE__STORE" in typo.stderr
    assert "Did you mean PROVENDER_ONLINE__STORE?" in typo.stderr
