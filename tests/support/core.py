"""``provender core`` processes for tests: started as users start them, on free ports, stopped by pid.

``start_core`` is a fixture returning a factory: ``start_core(tmp_path, registry="sqlite:///r.db")``
writes a ``provender.yaml`` in the directory, runs ``provender --config ... core`` in a child
process and returns once ``/v1/health`` answers. Every process it started is stopped at teardown.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import yaml

from tests.support.services import HOST, PortTakenError, free_port, on_free_ports, read_log, wait_serving


@dataclass
class CoreServer:
    """A running ``provender core`` process."""

    root: Path
    port: int
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    stopped: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def config(self) -> Path:
        return self.root / "provender.yaml"

    def start(self) -> CoreServer:
        """Start (or restart) the process and wait until it answers."""
        argv = [sys.executable, "-c", "from provender.cli.main import main; main()", "--config", str(self.config)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*argv, "core"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        proc = self.proc
        try:
            wait_serving(
                self._healthy,
                "provender core",
                self.log,
                pid=proc.pid,
                ports=[self.port],
                alive=lambda: proc.poll() is None,
            )
        except PortTakenError:
            self.kill()
            raise
        except RuntimeError as exc:
            exited = proc.poll()
            self.kill()
            if exited is not None:
                raise RuntimeError(f"provender core exited with {exited}:\n{read_log(self.log)}") from exc
            raise
        return self

    def _healthy(self) -> bool:
        try:
            return self.request("GET", "/v1/health")[0] == 200
        except OSError:
            return False

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, object]]:
        """Send one request; return the status and the JSON answer ({} if none)."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        try:
            connection.request(method, path, body=None if body is None else orjson.dumps(body), headers=sent)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        answer = orjson.loads(raw) if raw and response.getheader("content-type") == "application/json" else {}
        return response.status, answer if isinstance(answer, dict) else {"value": answer}

    def text(self, path: str) -> str:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            connection.request("GET", path)
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the process and return its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.stopped.append(self.proc.pid)
        return code

    def kill(self) -> None:
        """SIGKILL the process (a crash: nothing is finished)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


StartCore = Callable[..., CoreServer]


def write_config(root: Path, *, registry: str, port: int, settings: Mapping[str, object] | None = None) -> Path:
    """Write the core's provender.yaml (``settings`` merged over the registry and port)."""
    root.mkdir(parents=True, exist_ok=True)
    values: dict[str, object] = {"registry": registry, **(settings or {})}
    core = dict(values.get("core", {}) or {})  # type: ignore[call-overload]
    values["core"] = {"port": port, **core}
    path = root / "provender.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def launch_core(
    root: Path,
    *,
    registry: str,
    settings: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
) -> CoreServer:
    """Start ``provender core`` for the registry ``registry`` with its config in ``root``; stop it yourself."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("PROVENDER_") or k == "PROVENDER_REQUIRE_SERVICES"
    }
    environ.update(env or {})

    def start() -> CoreServer:
        port = free_port()
        write_config(root, registry=registry, port=port, settings=settings)
        return CoreServer(root=root, port=port, log=root / "core.log", env=environ).start()

    return on_free_ports(start)


@pytest.fixture
def start_core() -> Iterator[StartCore]:
    """Return :func:`launch_core`; every process it started is stopped at teardown."""
    started: list[CoreServer] = []

    def start(
        root: Path,
        *,
        registry: str,
        settings: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CoreServer:
        server = launch_core(root, registry=registry, settings=settings, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
