"""Worker supervision: a worker killed at any time, even in its first seconds, is restarted.

A real ``provender serve --workers 2`` has a worker SIGKILLed right after start-up, twice in a
row; the supervisor must restart it each time (with backoff) and keep serving throughout.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

import provender as pv
from tests.e2e.test_serving import ProjectFolder, Server, start_server
from tests.e2e.test_serving_ops import _children
from tests.support.online import DRIVER, DRIVER_STATS
from tests.support.registries import registry_url
from tests.support.services import read_log


def wait_for_workers(pid: int, count: int, exclude: set[int], timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        children = [child for child in _children(pid) if child not in exclude]
        if len(children) == count:
            return children
        assert time.monotonic() < deadline, f"workers: {children}"
        time.sleep(0.05)


def wait_until_healthy(server: Server, timeout: float = 30.0) -> None:
    """Poll /v1/health until it answers 200 (workers still starting refuse connections)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if server.request("GET", "/v1/health")[0] == 200:
                return
        except ConnectionError:
            pass
        assert time.monotonic() < deadline, "the service did not answer /v1/health in time"
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_workers_killed_early_are_restarted(tmp_path: Path) -> None:
    config = {
        "registry": registry_url(tmp_path),
        "online": {"store": "sqlite", "path": "online.db"},
        "serving": {"projects": ["default"]},
    }
    (tmp_path / "provender.yaml").write_text(yaml.safe_dump(config))
    with pv.Client(tmp_path / "provender.yaml") as client:
        client.apply([DRIVER, DRIVER_STATS])
    server = start_server(ProjectFolder(tmp_path), "--workers", "2")
    killed: set[int] = set()
    try:
        for _ in range(2):
            victim = wait_for_workers(server.proc.pid, 2, killed)[0]
            os.kill(victim, signal.SIGKILL)  # within its first seconds
            killed.add(victim)
            # (connections queued on the killed worker's socket are reset: that is the kill)
            wait_for_workers(server.proc.pid, 2, killed)
            wait_until_healthy(server)  # the workers (re)bind their ports
            for _ in range(5):
                assert server.request("GET", "/v1/health")[0] == 200
        wait_for_workers(server.proc.pid, 2, killed)
        assert server.proc.poll() is None, read_log(server.log)
        assert read_log(server.log).count("restarting it") == 2
        for _ in range(10):
            assert server.request("GET", "/v1/health")[0] == 200
    finally:
        assert server.stop() == 0, read_log(server.log)
