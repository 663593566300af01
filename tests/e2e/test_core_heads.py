"""The core service bounds request heads like the serving service: oversized and endless heads are cut off.

Against a real ``provender core``: a head over 32 KiB is answered 431 (or cut off while it is
still being sent), an endless one is closed long before it ends, and the service keeps answering.
"""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from provender.asgi import MAX_HEADER_BYTES
from tests.support.core import CoreServer, StartCore

pytestmark = pytest.mark.service


@pytest.fixture
def core(start_core: StartCore, tmp_path: Path) -> CoreServer:
    return start_core(tmp_path / "core", registry="sqlite:///registry.db")


def _read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def _healthy(core: CoreServer) -> None:
    started = time.monotonic()
    with urllib.request.urlopen(core.url + "/v1/health", timeout=5) as answer:
        assert answer.status == 200
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("size", [MAX_HEADER_BYTES + 100, 200_000, 2_000_000])
def test_oversized_heads_are_refused(core: CoreServer, size: int) -> None:
    with socket.create_connection(("127.0.0.1", core.port)) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # cut off while sending: refused too
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * size + b"\r\n\r\n")
        answer = _read_until_closed(sock, 5)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    if size < 100_000:
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    _healthy(core)


def test_an_endless_head_is_cut_off(core: CoreServer) -> None:
    sent = 0
    with socket.create_connection(("127.0.0.1", core.port)) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nhost: x\r\nx-endless: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 50 * MAX_HEADER_BYTES:
                sock.sendall(b"z" * 4096)
                sent += 4096
                time.sleep(0.001)
        _read_until_closed(sock, 5)
    assert sent < 50 * MAX_HEADER_BYTES, "the core service accepted an endless head"
    _healthy(core)
