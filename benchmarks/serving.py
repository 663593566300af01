"""Benchmark: online serving throughput and latency (issue 5, "Performance").

Contenders, each one server process with one worker, over the same Redis server and the same
values (``SEED``):

- ``provender-http``: ``provender serve`` (``--workers 1``), ``POST /v1/online-features``;
- ``provender-grpc``: the same process, ``ServingService/GetOnlineFeatures`` over gRPC;
- ``feast-http`` (unless ``--no-peers``): Feast 0.67's ``feast serve`` from the peer virtualenv
  ``benchmarks/peers/feast`` (``bash benchmarks/peers_setup.sh``), tuned as in the issue: one
  worker, no access log, no worker recycling (``--max-requests 0``), ``POST /get-online-features``.
  If the peer is absent or fails, that is recorded and the rest still runs.

Cases: ``1x5`` (1 entity row x 5 features of a 5-feature table), ``1x50`` (1 x 50 features of a
50-feature table), ``100x5`` (100 rows x 5 features). Each at concurrency 8 and 32.

The load generator is ``h2load`` (Debian package ``nghttp2-client``), a separate process: HTTP/1.1
keep-alive connections for the JSON APIs and HTTP/2 for gRPC, ``-c`` connections with one request
in flight each, for ``--duration`` seconds after ``--warmup`` seconds; every response's latency
goes to its log file, from which p50 and p99 are computed. Loopback only. Errors are non-2xx
answers, plus (for gRPC, whose errors travel in trailers) the server's non-OK request count.
Server RSS is the server's process tree, sampled at the end of each run. Every point runs
``--runs`` times (default 3), interleaved across contenders; the tables show medians.

Usage::

    .venv/bin/python benchmarks/serving.py                 # ~12 minutes
    .venv/bin/python benchmarks/serving.py --quick         # 3 s points, 1 run: a smoke test

Writes ``benchmarks/results/serving.json`` and ``benchmarks/results/serving.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
FEAST_PYTHON = HERE / "peers" / "feast" / "bin" / "python"
FEAST_VERSION = "0.67.0"

SEED = 20261127
ENTITY_KEYS = 10_000
FIRST_KEY = 1001
CASES = {"1x5": (1, 5), "1x50": (1, 50), "100x5": (100, 5)}
CONCURRENCY = (8, 32)
LATENCY_POINTS = (("100x5", 1), ("1x5", 1))  # one request at a time: latency beside the in-process read
INPROCESS_CALLS = 2000
TARGET_BATCH_RATIO = 2.0  # 100x5 served p50 within 2x of the in-process read's p50
DURATION_SECONDS = 10.0
WARMUP_SECONDS = 2.0
RUNS = 3
START_TIMEOUT_SECONDS = 90.0
ANCHOR_FEAST_TUNED = {"rps": 895.0, "p50_ms": 8.0, "p99_ms": 89.0}  # the figures, same machine kind
TARGET_SPEEDUP = 5.0
TARGET_P99_MS = 2.0
GRPC_PATH = "/provender.serving.v1.ServingService/GetOnlineFeatures"


def table_name(features: int) -> str:
    return f"driver_stats_{features}"


def feature_names(features: int) -> list[str]:
    return [f"f{i:02d}" for i in range(features)]


def is_double(index: int) -> bool:
    return index % 2 == 0


# ------------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, *, body: bytes | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {START_TIMEOUT_SECONDS}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) used so far by ``pid`` and its descendants."""
    ticks = 0
    for current in tree_pids(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MiB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total / 1024


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: apt-get install redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


# ------------------------------------------------------------------------------ data


def write_data(directory: Path) -> dict[int, Path]:
    """One Parquet file per table (5 and 50 features), seeded; the same values for every contender."""
    rng = np.random.default_rng(SEED)
    event = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    paths = {}
    for features in sorted({f for _, f in CASES.values()}):
        columns: dict[str, pa.Array] = {"driver_id": pa.array(np.arange(FIRST_KEY, FIRST_KEY + ENTITY_KEYS))}
        for index, name in enumerate(feature_names(features)):
            if is_double(index):
                columns[name] = pa.array(rng.random(ENTITY_KEYS))
            else:
                columns[name] = pa.array(rng.integers(0, 1_000_000, ENTITY_KEYS))
        columns["event_timestamp"] = pa.array([event] * ENTITY_KEYS, pa.timestamp("us", tz="UTC"))
        paths[features] = directory / f"{table_name(features)}.parquet"
        pq.write_table(pa.table(columns), paths[features])
    return paths


def setup_provender(directory: Path, redis_url: str, data: dict[int, Path]) -> Path:
    """A project on the benchmark Redis, with both tables registered and ingested; returns its config."""
    sys.path.insert(0, str(ROOT / "src"))
    import provender as pv
    from provender.online.redis import RedisStore

    config = directory / "provender.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "project": "default",
                "registry": "sqlite:///registry.db",
                "online": {"store": "redis", "url": redis_url},
                "serving": {"host": "127.0.0.1", "max_entity_rows": 1000},
            }
        )
    )
    driver = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
    tables = []
    for features, path in data.items():
        tables.append(
            pv.FeatureTable(
                name=table_name(features),
                entities=["driver_id"],
                features=[
                    pv.Feature(name, pv.ValueType.DOUBLE if is_double(i) else pv.ValueType.INT64)
                    for i, name in enumerate(feature_names(features))
                ],
                batch_source=pv.FileSource(path=str(path), event_timestamp_column="event_timestamp"),
            )
        )
    with contextlib.closing(pv.Client(config)) as client:
        client.apply([driver, *tables])
    with contextlib.closing(RedisStore.from_options({"url": redis_url}, base_dir=directory)) as store:
        for table, path in zip(tables, data.values(), strict=True):
            store.write(table, pq.read_table(path))
    return config


def inprocess_latency(config: Path, case: str, calls: int) -> dict[str, float]:
    """p50 / p99 (ms) of ``Client.get_online_features`` in this process, for the same request."""
    import provender as pv

    rows, features = CASES[case]
    refs = [f"{table_name(features)}:{name}" for name in feature_names(features)]
    entity_rows = [{"driver_id": key} for key in range(FIRST_KEY, FIRST_KEY + rows)]
    timings = []
    with contextlib.closing(pv.Client(config)) as client:
        for _ in range(200):
            client.get_online_features(refs, entity_rows)
        for _ in range(calls):
            started = time.perf_counter()
            client.get_online_features(refs, entity_rows)
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {"p50_ms": round(timings[len(timings) // 2], 3), "p99_ms": round(timings[int(len(timings) * 0.99)], 3)}


FEAST_REPO = """
import sys
from datetime import timedelta
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64, Int64

features = {features}
driver = Entity(name="driver", join_keys=["driver_id"])
views = []
for count, path in features.items():
    source = FileSource(path=path, timestamp_field="event_timestamp")
    schema = [Field(name=f"f{{i:02d}}", dtype=Float64 if i % 2 == 0 else Int64) for i in range(count)]
    views.append(FeatureView(name=f"driver_stats_{{count}}", entities=[driver], schema=schema, source=source,
                             ttl=timedelta(days=3650)))
store = FeatureStore(repo_path=".")
store.apply([driver, *views])
for view, path in zip(views, features.values()):
    store.write_to_online_store(view.name, pd.read_parquet(path))
print("feast repo ready")
"""


def setup_feast(directory: Path, redis_url: str, data: dict[int, Path]) -> str | None:
    """A Feast repo on the same Redis (its own key layout) with the same values; None if it works."""
    if not FEAST_PYTHON.exists():
        return f"no peer virtualenv at {FEAST_PYTHON} (run bash benchmarks/peers_setup.sh)"
    check = subprocess.run([str(FEAST_PYTHON), "-c", "import feast, redis"], capture_output=True, text=True)
    if check.returncode != 0:
        # Feast's Redis online store needs its `redis` extra, which peers_setup.sh may not install.
        install = [str(FEAST_PYTHON), "-m", "pip", "install", "-q", f"feast[redis]=={FEAST_VERSION}"]
        if subprocess.run(install, capture_output=True, text=True).returncode != 0:
            return "feast[redis] could not be installed in the peer virtualenv"
    host_port = redis_url.removeprefix("redis://").split("/")[0]
    (directory / "feature_store.yaml").write_text(
        yaml.safe_dump(
            {
                "project": "bench",
                "registry": "registry.db",
                "provider": "local",
                "online_store": {"type": "redis", "connection_string": host_port},
                "offline_store": {"type": "file"},
                "entity_key_serialization_version": 3,
            }
        )
    )
    script = FEAST_REPO.format(features={count: str(path) for count, path in data.items()})
    (directory / "setup_repo.py").write_text(script)
    done = subprocess.run(
        [str(FEAST_PYTHON), "setup_repo.py"], cwd=directory, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        return f"feast setup failed: {done.stderr[-2000:]}"
    return None


# ------------------------------------------------------------------------------ servers


@dataclass
class Target:
    """A contender: how to reach it and what to send."""

    name: str
    url: str
    protocol: str  # "http" (HTTP/1.1 JSON) or "grpc"
    pid: int
    metrics_url: str | None = None

    def body(self, rows: int, features: int) -> bytes:
        refs = [f"{table_name(features)}:{name}" for name in feature_names(features)]
        keys = list(range(FIRST_KEY, FIRST_KEY + rows))
        if self.protocol == "grpc":
            sys.path.insert(0, str(ROOT / "src"))
            from provender.wire._proto import serving_pb2 as pb

            request = pb.GetOnlineFeaturesRequest(features=refs)
            column = request.entities.add()
            column.name = "driver_id"
            column.int64_values.values.extend(keys)
            message = request.SerializeToString()
            return b"\x00" + struct.pack(">I", len(message)) + message
        return json.dumps({"features": refs, "entities": {"driver_id": keys}}).encode()


def start_provender(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    http_port, grpc_port = free_port(), free_port()
    argv = [
        sys.executable, "-c", "from provender.cli.main import main; main()",
        "--config", str(config), "serve", "--http-port", str(http_port), "--grpc-port", str(grpc_port),
        "--workers", "1",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=config.parent)
    wait_for(f"http://127.0.0.1:{http_port}/v1/ready", proc, log)
    return proc, http_port, grpc_port


def start_feast(directory: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    feast = FEAST_PYTHON.parent / "feast"
    argv = [
        str(feast), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--no-access-log", "--max-requests", "0", "--registry_ttl_sec", "600",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=directory)
    body = Target("feast", "", "http", 0).body(1, 5)
    wait_for(f"http://127.0.0.1:{port}/get-online-features", proc, log, body=body)
    return proc, port


# ------------------------------------------------------------------------------ load


@dataclass
class Run:
    """One measured point."""

    target: str
    case: str
    concurrency: int
    run: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    error_statuses: dict[str, int]
    rss_mb: float
    load_average: float
    cpu_us: float = float("nan")  # server CPU time per answered request (warm-up included), microseconds


def grpc_errors(target: Target) -> int:
    """Non-OK gRPC answers so far, from the server's metrics."""
    if target.metrics_url is None:
        return 0
    with urllib.request.urlopen(target.metrics_url, timeout=10) as response:
        text = response.read().decode()
    total = 0
    for line in text.splitlines():
        is_grpc = line.startswith("provender_serving_requests_total{") and 'protocol="grpc"' in line
        if is_grpc and 'status="OK"' not in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def measure(target: Target, case: str, concurrency: int, number: int, args: argparse.Namespace) -> Run:
    rows, features = CASES[case]
    with tempfile.TemporaryDirectory() as scratch:
        body, log = Path(scratch) / "body", Path(scratch) / "h2load.log"
        body.write_bytes(target.body(rows, features))
        argv = [
            "h2load", "-c", str(concurrency), "-m", "1", "-t", "1",
            "-D", f"{args.duration:g}", f"--warm-up-time={args.warmup:g}",
            "-d", str(body), f"--log-file={log}",
        ]  # fmt: skip
        if target.protocol == "grpc":
            argv += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        else:
            argv += ["--h1", "-H", "content-type: application/json"]
        errors_before = grpc_errors(target) if target.protocol == "grpc" else 0
        load = os.getloadavg()[0]
        started = time.time()
        cpu_before = tree_cpu_seconds(target.pid)
        done = subprocess.run([*argv, target.url], capture_output=True, text=True, timeout=args.duration + 120)
        cpu_seconds = tree_cpu_seconds(target.pid) - cpu_before
        if done.returncode != 0:
            raise RuntimeError(f"h2load failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        rss = tree_rss_mb(target.pid)
        measured_from = (started + args.warmup) * 1e6
        latencies, statuses = [], Counter[str]()
        answered = 0
        for line in log.read_text().splitlines():
            start_us, status, duration_us = line.split("\t")
            answered += status != "0"
            if float(start_us) < measured_from:
                continue
            latencies.append(int(duration_us) / 1000)
            if not 200 <= int(status) < 300:
                statuses[status] += 1
        if target.protocol == "grpc":
            failed = grpc_errors(target) - errors_before
            if failed:
                statuses["grpc-non-OK"] += failed
        errors = count_errors(dict(statuses))
    latencies.sort()
    count = len(latencies)

    def quantile(q: float) -> float:
        return latencies[min(count - 1, int(q * count))] if count else float("nan")

    return Run(
        target=target.name,
        case=case,
        concurrency=concurrency,
        run=number,
        requests=count,
        rps=count / args.duration,
        p50_ms=quantile(0.50),
        p99_ms=quantile(0.99),
        errors=errors,
        error_statuses=dict(statuses),
        rss_mb=round(rss, 1),
        load_average=round(load, 2),
        cpu_us=round(cpu_seconds / answered * 1e6, 1) if answered else float("nan"),
    )


# ------------------------------------------------------------------------------ report


def count_errors(statuses: dict[str, int]) -> int:
    """Failed requests; h2load logs status 0 for the requests still in flight when time is up."""
    return sum(count for status, count in statuses.items() if status != "0")


def summarize(runs: list[Run]) -> list[dict[str, object]]:
    points: dict[tuple[str, str, int], list[Run]] = {}
    for run in runs:
        points.setdefault((run.target, run.case, run.concurrency), []).append(run)
    summary = []
    for (target, case, concurrency), group in points.items():
        summary.append(
            {
                "target": target,
                "case": case,
                "concurrency": concurrency,
                "runs": len(group),
                "rps": round(statistics.median(r.rps for r in group), 1),
                "p50_ms": round(statistics.median(r.p50_ms for r in group), 3),
                "p99_ms": round(statistics.median(r.p99_ms for r in group), 3),
                "errors": sum(count_errors(r.error_statuses) for r in group),
                "rss_mb": max(r.rss_mb for r in group),
                "cpu_us": round(statistics.median(r.cpu_us for r in group), 1),
            }
        )
    return summary


def point(summary: list[dict[str, object]], target: str, case: str, concurrency: int) -> dict[str, object] | None:
    for row in summary:
        if (row["target"], row["case"], row["concurrency"]) == (target, case, concurrency):
            return row
    return None


def verdicts(summary: list[dict[str, object]], inprocess: dict[str, dict[str, float]] | None = None) -> list[str]:
    lines = []
    http = point(summary, "provender-http", "1x5", 8)
    grpc = point(summary, "provender-grpc", "1x5", 8)
    feast = point(summary, "feast-http", "1x5", 8)
    if http is not None:
        rps, p99 = float(http["rps"]), float(http["p99_ms"])  # type: ignore[arg-type]
        anchor = ANCHOR_FEAST_TUNED["rps"]
        lines.append(
            f"- Throughput, 1x5 at concurrency 8, HTTP: {rps:,.0f} req/s = {rps / anchor:.1f}x "
            f"the reference figure of a tuned `feast serve` ({anchor:,.0f} req/s); target >= {TARGET_SPEEDUP:.0f}x "
            f"({TARGET_SPEEDUP * anchor:,.0f} req/s): {'met' if rps >= TARGET_SPEEDUP * anchor else 'MISSED'}."
        )
        if feast is not None and float(feast["rps"]) > 0:  # type: ignore[arg-type]
            ratio = rps / float(feast["rps"])  # type: ignore[arg-type]
            lines.append(
                f"- Against `feast serve` measured here: {ratio:.1f}x its {float(feast['rps']):,.0f} req/s "  # type: ignore[arg-type]
                f"(p99 {float(feast['p99_ms']):.2f} ms vs ours {p99:.2f} ms): "  # type: ignore[arg-type]
                f"{'met' if ratio >= TARGET_SPEEDUP and p99 <= float(feast['p99_ms']) else 'MISSED'}."  # type: ignore[arg-type]
            )
        if feast is not None and float(feast.get("cpu_us", "nan")) > 0:  # type: ignore[arg-type]
            ours, theirs = float(http.get("cpu_us", "nan")), float(feast["cpu_us"])  # type: ignore[arg-type]
            lines.append(
                f"- Server CPU time per request, 1x5 at concurrency 8: HTTP {ours:.0f} us, gRPC "
                f"{float(grpc.get('cpu_us', 'nan')) if grpc else float('nan'):.0f} us, `feast serve` {theirs:.0f} us "  # type: ignore[arg-type]
                f"({theirs / ours:.1f}x ours over HTTP)."
            )
        lines.append(
            f"- p99, 1x5 at concurrency 8, HTTP: {p99:.2f} ms; target <= {TARGET_P99_MS:.0f} ms: "
            f"{'met' if p99 <= TARGET_P99_MS else 'MISSED'}."
        )
    if http is not None and grpc is not None:
        g_rps, h_rps = float(grpc["rps"]), float(http["rps"])  # type: ignore[arg-type]
        g_p99, h_p99 = float(grpc["p99_ms"]), float(http["p99_ms"])  # type: ignore[arg-type]
        lines.append(
            f"- gRPC vs HTTP, 1x5 at concurrency 8: {g_rps:,.0f} vs {h_rps:,.0f} req/s, p99 {g_p99:.2f} vs "
            f"{h_p99:.2f} ms; target gRPC no slower: {'met' if g_rps >= h_rps * 0.98 else 'MISSED'}."
        )
    for protocol in ("http", "grpc"):
        served = point(summary, f"provender-{protocol}", "100x5", 1)
        local = (inprocess or {}).get("100x5")
        if served is None or local is None:
            continue
        ratio = float(served["p50_ms"]) / local["p50_ms"]  # type: ignore[arg-type]
        lines.append(
            f"- Batch lookup 100x5, one request at a time, {protocol.upper()}: p50 {float(served['p50_ms']):.3f} ms "  # type: ignore[arg-type]
            f"vs the in-process read's {local['p50_ms']:.3f} ms ({ratio:.2f}x); target <= {TARGET_BATCH_RATIO:g}x: "
            f"{'met' if ratio <= TARGET_BATCH_RATIO else 'MISSED'}."
        )
    return lines


def write_report(result: dict[str, object], results: Path = RESULTS) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "serving.json").write_text(json.dumps(result, indent=2) + "\n")
    summary: list[dict[str, object]] = result["summary"]  # type: ignore[assignment]
    machine: dict[str, object] = result["machine"]  # type: ignore[assignment]
    lines = [
        "# Serving benchmark",
        "",
        f"`benchmarks/serving.py`, {result['finished_at']}: {machine['cpus']} CPUs ({machine['cpu']}), "
        f"Python {machine['python']}, {machine['h2load']}, {machine['redis']}. {result['runs']} run(s) of "
        f"{result['duration_seconds']:g} s (after {result['warmup_seconds']:g} s warm-up) per point, medians; "
        "one server process with one worker per contender; load generator, servers and Redis on the same machine"
        + (f", all at niceness {result['niceness']}." if result.get("niceness") else "."),
        "",
    ]
    if result.get("feast_error"):
        lines += [f"Feast was not measured: {result['feast_error']}", ""]
    inprocess: dict[str, dict[str, float]] = result.get("inprocess") or {}  # type: ignore[assignment]
    lines += ["## Targets", "", *verdicts(summary, inprocess), ""]
    for case in CASES:
        lines += [
            f"## {case} (entity rows x features)",
            "",
            "| contender | concurrency | req/s | p50 ms | p99 ms | errors | server CPU us/req | server RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for concurrency in sorted({*CONCURRENCY, *(c for name, c in LATENCY_POINTS if name == case)}):
            for target in ("provender-http", "provender-grpc", "feast-http"):
                row = point(summary, target, case, concurrency)
                if row is None:
                    continue
                lines.append(
                    f"| {target} | {concurrency} | {float(row['rps']):,.0f} | {float(row['p50_ms']):.2f} | "  # type: ignore[arg-type]
                    f"{float(row['p99_ms']):.2f} | {row['errors']} | {float(row.get('cpu_us', 'nan')):.0f} | "  # type: ignore[arg-type]
                    f"{float(row['rss_mb']):.0f} |"  # type: ignore[arg-type]
                )
        local = inprocess.get(case)
        if local is not None:
            lines.append(
                f"| in-process read (`Client.get_online_features`) | 1 | | {local['p50_ms']:.3f} | "
                f"{local['p99_ms']:.3f} | | | |"
            )
        lines.append("")
    notes = result.get("notes")
    if notes:
        assert isinstance(notes, list)  # load_notes()'s lines
        lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    (results / "serving.md").write_text("\n".join(lines))


# ------------------------------------------------------------------------------ main


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--duration", type=float, default=DURATION_SECONDS, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, default=WARMUP_SECONDS)
    parser.add_argument("--quick", action="store_true", help="3 s per point, 1 run")
    parser.add_argument("--no-peers", action="store_true", help="skip Feast")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--concurrency", nargs="*", type=int, default=list(CONCURRENCY))
    parser.add_argument("--no-write", action="store_true", help="print, do not write results/")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write serving.json/.md")
    parser.add_argument(
        "--no-latency", action="store_true", help="skip the one-at-a-time points and the in-process read"
    )
    parser.add_argument("--inprocess-calls", type=int, default=INPROCESS_CALLS)
    parser.add_argument("--report-only", action="store_true", help="rewrite serving.md from serving.json")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run Redis, the servers and h2load at this niceness (e.g. -10 on a machine shared with other work)",
    )
    args = parser.parse_args()
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by every process started below
    if args.report_only:
        saved = json.loads((RESULTS / "serving.json").read_text())
        for point in saved["points"]:
            point["errors"] = count_errors(point["error_statuses"])
        saved["machine"]["redis"] = _short_redis_version(saved["machine"]["redis"])
        saved_runs = [Run(**point) for point in saved["points"]]
        saved["summary"] = summarize(saved_runs)
        saved["notes"] = load_notes([run.load_average for run in saved_runs])
        write_report(saved)
        return 0
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 3.0, 1.0
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: run `make bench-deps` (Debian package nghttp2-client)")

    runs: list[Run] = []
    notes: list[str] = []
    inprocess: dict[str, dict[str, float]] = {}
    feast_error: str | None = "skipped (--no-peers)" if args.no_peers else None
    with tempfile.TemporaryDirectory(prefix="provender-bench-serving-") as scratch:
        root = Path(scratch)
        (root / "redis").mkdir()
        (root / "feast").mkdir()
        with redis_server(root / "redis") as redis_url:
            data = write_data(root)
            config = setup_provender(root, redis_url, data)
            procs: list[subprocess.Popen[bytes]] = []
            try:
                proc, http_port, grpc_port = start_provender(config, root / "provender.log")
                procs.append(proc)
                metrics = f"http://127.0.0.1:{http_port}/metrics"
                targets = [
                    Target("provender-http", f"http://127.0.0.1:{http_port}/v1/online-features", "http", proc.pid),
                    Target("provender-grpc", f"http://127.0.0.1:{grpc_port}{GRPC_PATH}", "grpc", proc.pid, metrics),
                ]
                if feast_error is None:
                    feast_error = setup_feast(root / "feast", redis_url, data)
                if feast_error is None:
                    try:
                        feast_proc, feast_port = start_feast(root / "feast", root / "feast.log")
                        procs.append(feast_proc)
                        url = f"http://127.0.0.1:{feast_port}/get-online-features"
                        targets.append(Target("feast-http", url, "http", feast_proc.pid))
                    except RuntimeError as exc:
                        feast_error = f"feast serve did not start: {exc}"
                if feast_error:
                    print(f"Feast: {feast_error}", file=sys.stderr)
                if not args.no_latency:
                    for case in {case for case, _ in LATENCY_POINTS if case in args.cases}:
                        inprocess[case] = inprocess_latency(config, case, args.inprocess_calls)
                        print(f"in-process {case}: {inprocess[case]}", flush=True)
                points = [(case, c) for case in args.cases for c in args.concurrency]
                if not args.no_latency:
                    points += [(case, c) for case, c in LATENCY_POINTS if case in args.cases]
                for number in range(1, args.runs + 1):
                    for case, concurrency in points:
                        for target in targets:
                            run = measure(target, case, concurrency, number, args)
                            runs.append(run)
                            print(
                                f"run {number} {target.name:15} {case:6} c={concurrency:<3} {run.rps:9,.0f} req/s "
                                f"p50 {run.p50_ms:7.2f} ms p99 {run.p99_ms:7.2f} ms errors {run.errors} "
                                f"cpu {run.cpu_us:.0f} us/req rss {run.rss_mb:.0f} MiB load {run.load_average}",
                                flush=True,
                            )
            finally:
                for proc in procs:
                    stop(proc)
    notes += load_notes([run.load_average for run in runs])
    result: dict[str, object] = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or _cpu_model(),
            "python": platform.python_version(),
            "h2load": tool_version(["h2load", "--version"]),
            "redis": _short_redis_version(tool_version(["redis-server", "--version"])),
        },
        "runs": args.runs,
        "niceness": args.nice,
        "duration_seconds": args.duration,
        "warmup_seconds": args.warmup,
        "anchor_feast_tuned": ANCHOR_FEAST_TUNED,
        "feast_error": feast_error,
        "inprocess": inprocess,
        "summary": summarize(runs),
        "points": [asdict(run) for run in runs],
        "notes": notes,
    }
    for line in verdicts(result["summary"], inprocess):  # type: ignore[arg-type]
        print(line)
    if not args.no_write:
        write_report(result, args.out)
        print(f"wrote {args.out / 'serving.json'} and {args.out / 'serving.md'}")
    return 0


def load_notes(loads: list[float]) -> list[str]:
    """A note on how busy the machine was, from the 1-minute load average at each point's start."""
    if not loads or max(loads) <= 2.5:
        return []
    return [
        f"The machine was busy with other work: the 1-minute load average was {min(loads):.1f} to "
        f"{max(loads):.1f} on its 2 cores during the runs (median {statistics.median(loads):.1f}); "
        "all contenders shared that, so absolute figures understate each server, and ratios are the "
        "fairer reading."
    ]


def _short_redis_version(text: str) -> str:
    """``Redis server v=7.0.15 sha=...`` -> ``Redis 7.0.15``."""
    for part in text.split():
        if part.startswith("v="):
            return f"Redis {part[2:]}"
    return text


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    sys.exit(main())
