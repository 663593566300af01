"""Request heads are bounded against a real ``provender serve``: size (431), time to send, idle sockets.

Oversized heads of several sizes, an endless header, a slow head and a silent connection are each
cut off, while ordinary requests keep being answered promptly.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Iterator

import pytest
import yaml

import provender as pv
from tests.e2e.test_serving import ProjectFolder, Server, start_server
from tests.support.online import DRIVER, DRIVER_STATS
from tests.support.registries import registry_url
from tests.support.services import read_log

MAX_HEADER_BYTES = 4096
HEADER_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("heads")
    config = {
        "registry": registry_url(root),
        "online": {"store": "sqlite", "path": "online.db"},
        "serving": {
            "projects": ["default"],
            "max_header_bytes": MAX_HEADER_BYTES,
            "header_timeout_seconds": HEADER_TIMEOUT,
        },
    }
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    with pv.Client(root / "provender.yaml") as client:
        client.apply([DRIVER, DRIVER_STATS])
    started = start_server(ProjectFolder(root))
    try:
        yield started
    finally:
        assert started.stop() == 0, read_log(started.log)


def health_is_prompt(server: Server) -> None:
    started = time.monotonic()
    status, _, _ = server.request("GET", "/v1/health")
    assert status == 200 and time.monotonic() - started < 1.0


def closed_within(sock: socket.socket, seconds: float) -> bytes:
    """Read until the server closes ``sock``; fail if it stays open longer than ``seconds``."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for more than {seconds}s")
    return received


@pytest.mark.parametrize("size", [5_000, 100_000, 2_000_000])
def test_oversized_heads_are_refused(server: Server, size: int) -> None:
    with socket.create_connection(("127.0.0.1", server.http_port)) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # cut off while sending: refused too
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * size + b"\r\n\r\n")
        answer = closed_within(sock, 5)
    if size <= 100_000:  # sent whole: answered
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    else:  # possibly cut off while sending
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    health_is_prompt(server)


@pytest.mark.parametrize("headers", [1, 200])
def test_endless_headers_are_cut_off(server: Server, headers: int) -> None:
    sent = 0
    with socket.create_connection(("127.0.0.1", server.http_port)) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n")
        try:
            while sent < 50 * MAX_HEADER_BYTES:
                line = b"x-h: " + b"b" * 1000 if headers > 1 else b"c" * 1000
                sock.sendall(line + (b"\r\n" if headers > 1 else b""))
                sent += len(line)
                time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed_within(sock, 5)
    assert sent < 50 * MAX_HEADER_BYTES, "the server accepted an endless head"
    health_is_prompt(server)


@pytest.mark.parametrize("partial", [b"", b"GET /v1/health HTTP/1.1\r\n", b"GET /v1/he"])
def test_slow_or_silent_connections_are_closed(server: Server, partial: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.http_port)) as sock:
        started = time.monotonic()
        sock.sendall(partial)
        closed_within(sock, HEADER_TIMEOUT + 4)
        assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9
    health_is_prompt(server)


def test_keep_alive_connections_serve_several_requests(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        for _ in range(3):
            connection.request("GET", "/v1/health", headers={"x-pad": "p" * (MAX_HEADER_BYTES // 2)})
            response = connection.getresponse()
            assert response.status == 200
            response.read()
            time.sleep(HEADER_TIMEOUT * 1.2)  # idle longer than the head timeout, within keep-alive
    finally:
        connection.close()
