"""The probe's kinds of abusive requests against a real ``provender serve`` (loopback, bounded).

While abusive clients send oversized ref lists, bodies, gRPC messages, deep nesting and endless
or slow headers, an ordinary client keeps reading features; its p99 latency and the server's RSS
must stay within bounds. The figures are printed (``-s``) for the report.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import orjson
import pytest
import yaml

import provender as pv
from provender.wire._proto import serving_pb2 as pb
from tests.e2e.test_serving import ProjectFolder, Server, entity_column, start_server
from tests.support.online import DRIVER, DRIVER_STATS, batch
from tests.support.services import read_log

# A stall bound, not the latency target: the defect was ordinary requests stalled for 8.7 s behind
# abusive ones. The 50 ms p99 target is measured by a benchmark on a quiet machine; this suite runs
# beside five other jobs on two cores, where a 250 ms bound failed with nothing stalled.
P99_BOUND_SECONDS = 1.0
RSS_BOUND_BYTES = 300 * 1024 * 1024
ORDINARY = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("abuse")
    config = {
        "registry": "sqlite:///registry.db",
        "online": {"store": "sqlite", "path": "online.db"},
        "serving": {"projects": ["default"], "header_timeout_seconds": 2.0},
    }
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    with pv.Client(root / "provender.yaml") as client:
        client.apply([DRIVER, DRIVER_STATS])
        client._online_store.write(DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": 1, "trips": 2}]))
    started = start_server(ProjectFolder(root))
    try:
        yield started
    finally:
        assert started.stop() == 0, read_log(started.log)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def many_refs(server: Server) -> None:
    body = orjson.dumps({"features": ["driver_stats:trips"] * 300_000, "entities": {"driver_id": [1]}})
    with contextlib.suppress(OSError):
        server.request("POST", "/v1/online-features", body)


def huge_body(server: Server) -> None:
    body = orjson.dumps({**ORDINARY, "entities": {"driver_id": [1], "note": ["x" * 30_000_000]}})
    with contextlib.suppress(OSError):
        server.request("POST", "/v1/online-features", body)


def deep_nesting(server: Server) -> None:
    body = b'{"features": ["driver_stats:trips"], "entities": {"driver_id": [1], "n": [' + b"[" * 900 + b"]" * 900
    with contextlib.suppress(OSError):
        server.request("POST", "/v1/online-features", body + b"]}}")


def big_grpc(server: Server) -> None:
    note = pb.Column(name="note")
    note.string_values.values.extend(["y" * 1000] * 20_000)
    with contextlib.suppress(grpc.RpcError):
        server.grpc_call(
            pb.GetOnlineFeaturesRequest(
                features=["driver_stats:trips"] * 50_000, entities=[entity_column("driver_id", [1]), note]
            )
        )


def endless_header(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.http_port)) as sock, contextlib.suppress(OSError):
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nx: ")
        for _ in range(2000):
            sock.sendall(b"z" * 4096)


def slow_header(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.http_port)) as sock, contextlib.suppress(OSError):
        sock.sendall(b"GET /v1/health HTTP/1.1\r\n")
        time.sleep(3)


ABUSE: list[Callable[[Server], None]] = [many_refs, huge_body, deep_nesting, big_grpc, endless_header, slow_header]


def test_ordinary_requests_stay_fast_and_memory_bounded_under_abuse(server: Server) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def abuse() -> None:
        try:
            while not stop.is_set():
                for attack in ABUSE:
                    if stop.is_set():
                        return
                    attack(server)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    attackers = [threading.Thread(target=abuse, daemon=True) for _ in range(2)]
    for thread in attackers:
        thread.start()
    latencies: list[float] = []
    peak = 0
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status, _ = server.post(ORDINARY)
            latencies.append(time.perf_counter() - started)
            assert status == 200
            peak = max(peak, rss(server.proc.pid))
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in attackers:
            thread.join(30)
    assert not errors, errors
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(  # noqa: T201 - the figures for the report (run with -s)
        f"\nabuse probe: {len(latencies)} ordinary requests, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"peak RSS {peak / 2**20:.0f} MiB"
    )
    assert p99 < P99_BOUND_SECONDS, f"p99 {p99 * 1000:.1f} ms"
    assert peak < RSS_BOUND_BYTES, f"peak RSS {peak / 2**20:.0f} MiB"
