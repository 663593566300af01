"""A real S3-compatible server for the object-store tests: moto's server mode on a loopback port.

``s3_server`` accepts any credentials; ``s3_locked_server`` enforces IAM authentication (no
key is known to it, so every request is denied), for the access-denied tests. Both are stopped
by pid at session end; under ``PROVENDER_REQUIRE_SERVICES=1`` a missing ``moto_server`` fails.
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

from tests.support.services import HOST, Services, free_port, popen_stop, service_unavailable, wait_until

ACCESS_KEY = "AKIAPROVENDERTEST01"
SECRET_KEY = "provender-test-secret-0123456789abcdef"


@dataclass(frozen=True, slots=True)
class S3Server:
    """A running moto S3 server."""

    port: int
    pid: int

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

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
    found = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
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
    port, log = free_port(), base / "moto.log"
    env = dict(os.environ)
    if locked:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-H", HOST, "-p", str(port)], stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )
    services.add_cleanup(f"stop moto server (pid {proc.pid})", lambda: popen_stop(proc))
    wait_until(lambda: _serving(port), f"moto S3 server on port {port}", log, alive=lambda: proc.poll() is None)
    return S3Server(port=port, pid=proc.pid)


@pytest.fixture(scope="session")
def s3_server(services: Services) -> S3Server:
    """A moto S3 server accepting any credentials."""
    return start_s3(services, "moto")


@pytest.fixture(scope="session")
def s3_locked_server(services: Services) -> S3Server:
    """A moto S3 server that denies every request (IAM authentication on, no keys known)."""
    return start_s3(services, "moto-locked", locked=True)
