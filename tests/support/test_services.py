"""The test servers' launchers tell our server from another process that took its port.

free_port() only guesses; the suite runs several groups at once, so another group's server can
bind the port between the guess and our server's bind, and would then answer our readiness probe
(a core service test once talked to another group's server and saw its answers).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import (
    HOST,
    PortTakenError,
    RedisServer,
    foreign_listeners,
    free_port,
    on_free_ports,
    port_open,
    redis_argv,
    require_binary,
    serves_port,
    wait_serving,
)

NO_LOG = Path(os.devnull)
LISTEN = """
import socket, sys, time
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if sys.argv[2] == "reuse-port":
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("listening", flush=True)
time.sleep(60)
"""


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def listen(processes: list[subprocess.Popen[str]], port: int, *, reuse_port: bool = False) -> subprocess.Popen[str]:
    """Start a process that listens on ``port``; return once it listens (or has failed to)."""
    argv = [sys.executable, "-c", LISTEN, str(port), "reuse-port" if reuse_port else "-"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    processes.append(proc)
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening", or "" once it exited
    return proc


def test_the_listener_of_a_port_is_found(processes: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    ours, other = listen(processes, port), listen(processes, free_port())
    assert serves_port(ours.pid, port)
    assert not serves_port(other.pid, port)
    assert foreign_listeners(other.pid, port) == {ours.pid}
    assert foreign_listeners(ours.pid, port) == set()


def test_a_server_that_lost_its_port_is_refused_though_the_port_answers(
    processes: list[subprocess.Popen[str]],
) -> None:
    port = free_port()
    squatter = listen(processes, port)
    ours = listen(processes, port)  # cannot bind: exits
    with pytest.raises(PortTakenError, match=rf"port.*{port}.*{squatter.pid}"):
        wait_serving(lambda: port_open(port), "our server", NO_LOG, pid=ours.pid, ports=[port],
                     alive=lambda: ours.poll() is None)  # fmt: skip


def test_a_port_shared_through_so_reuseport_is_refused(processes: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    squatter = listen(processes, port, reuse_port=True)
    ours = listen(processes, port, reuse_port=True)  # binds too: the kernel would share connections
    assert ours.poll() is None
    with pytest.raises(PortTakenError, match=rf"port {port} shared with other processes \[{squatter.pid}\]"):
        wait_serving(lambda: port_open(port), "our server", NO_LOG, pid=ours.pid, ports=[port])


def test_launchers_retry_on_fresh_ports(processes: list[subprocess.Popen[str]]) -> None:
    taken = free_port()
    listen(processes, taken)
    ports = iter([taken, free_port()])

    def start() -> int:
        port = next(ports)
        proc = listen(processes, port)
        wait_serving(lambda: port_open(port), "our server", NO_LOG, pid=proc.pid, ports=[port],
                     alive=lambda: proc.poll() is None)  # fmt: skip
        return port

    assert on_free_ports(start) != taken


def test_free_ports_are_free() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind((HOST, port))


@pytest.mark.service
def test_a_redis_server_on_a_taken_port_is_refused_and_the_next_start_in_its_folder_works(
    processes: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    binary = require_binary("redis-server", "redis-server")
    taken = free_port()
    listen(processes, taken)
    lost = RedisServer(port=taken, data_dir=tmp_path, argv=redis_argv(binary, taken, tmp_path))
    with pytest.raises(PortTakenError, match=f"redis-server on port {taken}"):
        lost.start()
    port = free_port()  # the same folder and log file, which holds the failure above
    server = RedisServer(port=port, data_dir=tmp_path, argv=redis_argv(binary, port, tmp_path))
    server.start()
    try:
        assert serves_port(server.pid, port)
    finally:
        server.stop()
