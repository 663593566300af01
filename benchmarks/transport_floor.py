"""Benchmark: the server CPU per call of bare echo servers, the floor under each serving protocol.

Each server answers a 100-byte body with the same bytes and does nothing else: grpcio's asyncio
server (``grpc.aio``, what ``provender serve`` runs), grpcio's threaded server (2 threads, what it
ran before), and uvicorn with httptools on uvloop (what serves HTTP). ``h2load`` loads each for
``--duration`` seconds at concurrency 8 (HTTP/2 for gRPC, HTTP/1.1 keep-alive for HTTP); the CPU
time the server process used, divided by the calls answered, is its floor per call. Medians of
``--runs``. What a protocol's floor costs, no request path can save (``docs/scaling.md``).

Usage::

    .venv/bin/python benchmarks/transport_floor.py     # ~1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from serving import free_port, tree_cpu_seconds  # noqa: E402

SERVERS = ("grpc-aio", "grpc-threaded", "uvicorn")
MESSAGE = b"x" * 100


def serve(kind: str, port: int) -> None:  # pragma: no cover - runs in a child process
    import grpc
    import uvloop

    if kind == "grpc-threaded":
        server = grpc.server(ThreadPoolExecutor(2))
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("e.E", {"M": grpc.unary_unary_rpc_method_handler(lambda r, _c: r)}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        server.wait_for_termination()
    elif kind == "grpc-aio":

        async def main() -> None:
            async def echo(request: bytes, _context: object) -> bytes:
                return request

            server = grpc.aio.server()
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler("e.E", {"M": grpc.unary_unary_rpc_method_handler(echo)}),)
            )
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            await server.wait_for_termination()

        uvloop.run(main())
    else:
        import uvicorn

        async def app(scope: dict[str, object], receive: object, send: object) -> None:
            if scope["type"] != "http":
                return
            message = await receive()  # type: ignore[operator]
            body = message["body"]
            headers = [(b"content-length", b"%d" % len(body))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
            await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

        uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning")


def measure(kind: str, duration: float) -> float:
    """Server CPU microseconds per answered call."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)])
    try:
        time.sleep(3)
        with tempfile.TemporaryDirectory() as scratch:
            body = Path(scratch) / "body"
            grpc = kind.startswith("grpc")
            body.write_bytes(b"\x00" + struct.pack(">I", len(MESSAGE)) + MESSAGE if grpc else MESSAGE)
            argv = ["h2load", "-c", "8", "-m", "1", "-t", "1", "-D", f"{duration:g}", "-d", str(body)]
            if grpc:
                argv += ["-H", "content-type: application/grpc", "-H", "te: trailers", f"http://127.0.0.1:{port}/e.E/M"]
            else:
                argv += ["--h1", f"http://127.0.0.1:{port}/"]
            before = tree_cpu_seconds(proc.pid)
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            used = tree_cpu_seconds(proc.pid) - before
        line = next(line for line in out.splitlines() if line.startswith("requests:"))
        answered = int(line.split()[7])  # "requests: N total, N started, N done, N succeeded, ..."
        return used / answered * 1e6
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    runs: dict[str, list[float]] = {kind: [] for kind in SERVERS}
    load = []
    for number in range(args.runs):
        for kind in SERVERS:
            load.append(os.getloadavg()[0])
            runs[kind].append(measure(kind, args.duration))
            print(f"run {number + 1} {kind:14} {runs[kind][-1]:7.1f} us CPU per call", flush=True)
    medians = {kind: round(statistics.median(values), 1) for kind, values in runs.items()}
    result = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average": [min(load), max(load)],
        "cpu_us_per_call": medians,
        "runs": runs,
    }
    lines = [
        "# Transport floors: server CPU per call of bare echo servers",
        "",
        f"`benchmarks/transport_floor.py`, {result['finished_at']}: {os.cpu_count()} CPUs shared with other work "
        f"(load average {min(load):.1f} to {max(load):.1f}); h2load at concurrency 8, {args.duration:g} s per "
        f"point, medians of {args.runs} runs; a 100-byte body echoed.",
        "",
        "| server | CPU us per call |",
        "|---|---:|",
        *[f"| {kind} | {value:,.1f} |" for kind, value in medians.items()],
        "",
    ]
    print("\n".join(lines))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "transport_floor.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "transport_floor.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
