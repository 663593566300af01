"""Benchmark: the online store's server side, Redis standalone vs a 3-master Redis Cluster, same load.

For the capacity model of ``docs/scaling.md``: how many reads one Redis shard answers, and what
a cluster changes. ``redis-benchmark`` (Debian ``redis-tools``, beside ``redis-server``) drives
each server with the same load: ``GET`` of random keys among ``--keys`` values of ``--value-bytes``
bytes (a 1x50 row is about 400 bytes packed), ``--clients`` connections, with and without
pipelining (``-P 16``, like the serving worker's coalesced ``MGET``s), 2 client threads. Every
point runs ``--runs`` times, interleaved; medians.

On one 2-core machine the three cluster nodes, the standalone server and the load generator
share the same cores, so the cluster cannot show its scaling here: what this measures is the
per-shard rate and the cost of cluster mode per command (redirect-free, slot-aware client). The
model extrapolates one shard per core.

Usage::

    .venv/bin/python benchmarks/redis_scaling.py            # ~2 minutes

Writes ``benchmarks/results/redis_scaling.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from _services import free_port  # noqa: E402


def start(binary: str, port: int, directory: Path, *extra: str) -> subprocess.Popen[bytes]:
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(directory), *extra]
    log = (directory / "redis.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False)
        if ping.stdout.strip() == "PONG":
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"redis-server on port {port} exited: {(directory / 'redis.log').read_text()[-1500:]}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"redis-server on port {port} did not start")


@contextlib.contextmanager
def servers(root: Path) -> Iterator[tuple[int, int]]:
    """A standalone server and a 3-master cluster; yields (standalone port, a cluster node's port)."""
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-benchmark") is None:
        raise SystemExit("redis-server and redis-benchmark are needed (apt-get install redis-server redis-tools)")
    procs = []
    try:
        standalone = free_port()
        (root / "standalone").mkdir()
        procs.append(start(binary, standalone, root / "standalone"))
        nodes = []
        for index in range(3):
            port = free_port()
            directory = root / f"node{index}"
            directory.mkdir()
            cluster_args = ("--cluster-enabled", "yes", "--cluster-config-file", str(directory / "nodes.conf"))
            procs.append(start(binary, port, directory, *cluster_args))
            nodes.append(port)
        create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in nodes), "--cluster-yes"]
        subprocess.run(create, capture_output=True, check=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = subprocess.run(["redis-cli", "-p", str(nodes[0]), "cluster", "info"], capture_output=True, text=True)
            if "cluster_state:ok" in info.stdout:
                break
            time.sleep(0.2)
        yield standalone, nodes[0]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def bench(port: int, *, cluster: bool, test: str, args: argparse.Namespace, pipeline: int) -> dict[str, float]:
    argv = ["redis-benchmark", "-p", str(port), "-t", test, "-r", str(args.keys), "-d", str(args.value_bytes)]
    argv += ["-c", str(args.clients), "-n", str(args.requests), "-P", str(pipeline), "--threads", "2", "--csv"]
    if cluster:
        argv.append("--cluster")
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300)
    table = done.stdout[done.stdout.find('"test"') :]  # cluster mode prints its nodes first
    rows = [row for row in csv.DictReader(io.StringIO(table)) if row.get("test")]
    if not rows:
        raise SystemExit(f"redis-benchmark printed no result: {done.stdout[-500:]} {done.stderr[-500:]}")
    row = rows[-1]
    return {"rps": float(row["rps"]), "p50_ms": float(row["p50_latency_ms"]), "p99_ms": float(row["p99_latency_ms"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--value-bytes", type=int, default=400)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    points: dict[str, list[dict[str, float]]] = {}
    load = []
    with tempfile.TemporaryDirectory(prefix="provender-bench-redis-") as scratch, servers(Path(scratch)) as ports:
        standalone, cluster = ports
        for port, is_cluster in ((standalone, False), (cluster, True)):
            bench(port, cluster=is_cluster, test="set", args=args, pipeline=16)  # fill the key space
        for run in range(args.runs):
            for mode, port, is_cluster in (("standalone", standalone, False), ("cluster-3", cluster, True)):
                for pipeline in (1, 16):
                    load.append(os.getloadavg()[0])
                    figures = bench(port, cluster=is_cluster, test="get", args=args, pipeline=pipeline)
                    points.setdefault(f"{mode} P{pipeline}", []).append(figures)
                    print(f"run {run + 1} {mode:10} -P {pipeline:<2} {figures}", flush=True)
    summary = {
        name: {metric: statistics.median(r[metric] for r in runs) for metric in ("rps", "p50_ms", "p99_ms")}
        for name, runs in points.items()
    }
    result = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "settings": {k: v for k, v in vars(args).items() if k != "no_write"},
        "load_average": {"min": min(load), "median": statistics.median(load), "max": max(load)},
        "summary": summary,
        "points": points,
    }
    lines = [
        "# Redis standalone vs 3-master Cluster (same load)",
        "",
        f"`benchmarks/redis_scaling.py`, {result['finished_at']}: {os.cpu_count()} CPUs shared by the servers, "
        f"the load generator and other work (1-minute load average {min(load):.1f} to {max(load):.1f}). "
        f"`redis-benchmark` GET of {args.keys:,} random keys of {args.value_bytes} bytes, {args.clients} "
        f"connections, 2 threads, {args.requests:,} requests per point; medians of {args.runs} runs.",
        "",
        "| server | pipeline | GET/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, figures in summary.items():
        server, flag = name.split(" ")  # "cluster-3 P16"
        lines.append(
            f"| {server} | {flag[1:]} | {figures['rps']:,.0f} | {figures['p50_ms']:.3f} | {figures['p99_ms']:.3f} |"
        )
    lines += [
        "",
        "The three cluster nodes run on the same two cores as everything else, so the cluster's total",
        "here is not three shards' worth: read it as the per-command cost of cluster mode. The capacity",
        "model in `docs/scaling.md` assumes one core per shard.",
        "",
    ]
    print("\n".join(lines))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "redis_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "redis_scaling.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
