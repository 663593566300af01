"""Performance regression guard (``make bench-quick``): small versions of the key benchmarks, in minutes.

Runs, each as its own process and with Feast 0.67 as the peer when ``benchmarks/peers/feast``
exists (``bash benchmarks/peers_setup.sh``):

- ``serving.py``: 1 entity x 5 features at concurrency 8, HTTP, gRPC and ``feast serve``, one
  3-second point each;
- ``online_read.py``: the in-process reads (Redis, SQLite, Feast) on size S, few calls;
- ``historical.py``: size S, Provender (DataFrame), the plain-ASOF floor and Feast's DuckDB store.

From these it computes ratios that do not depend on how busy the machine is (each compares two
contenders measured in the same run, higher is better) and compares them with the last recorded
ones (``benchmarks/results/quick.json``): a ratio more than 20% below its recorded value is
flagged as a regression, and the exit status is 1. ``--record`` stores this run as the new
reference. The figures are small samples on a shared machine: a flag says "look again with the
full benchmark", not "proven slower".

Usage::

    .venv/bin/python benchmarks/quick.py            # compare with the recorded ratios
    .venv/bin/python benchmarks/quick.py --record   # and record this run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RECORDED = RESULTS / "quick.json"
ADHOC = HERE / "data" / "results"
FEAST_PYTHON = HERE / "peers" / "feast" / "bin" / "python"
TOLERANCE = 0.20

# name -> what it means (every ratio: higher is better)
RATIOS = {
    "serving_rps_vs_feast": "HTTP 1x5 c=8 req/s over feast serve's",
    "serving_cpu_vs_feast": "feast serve's server CPU per request over ours (HTTP)",
    "serving_grpc_vs_http": "gRPC 1x5 c=8 req/s over HTTP's",
    "online_1x5_vs_feast": "Feast's in-process 1x5 p50 over ours (Redis)",
    "online_100x5_vs_feast": "Feast's in-process 100x5 p50 over ours (Redis)",
    "online_sqlite_vs_redis_100x5": "Redis 100x5 p50 over SQLite's (>= 1: SQLite no slower)",
    "historical_vs_feast_duckdb": "Feast DuckDB store's seconds over ours (S)",
    "historical_vs_floor": "the plain-ASOF floor's seconds over ours (S; 1 = at the floor)",
}


def run(argv: list[str], what: str) -> None:
    started = time.monotonic()
    print(f"== {what}: {' '.join(argv[1:])}", flush=True)
    done = subprocess.run(argv, cwd=HERE.parent, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    print(f"   {time.monotonic() - started:.0f} s", flush=True)


def serving_ratios(out: Path, peers: bool) -> dict[str, float]:
    argv = [sys.executable, str(HERE / "serving.py"), "--cases", "1x5", "--concurrency", "8"]
    argv += ["--duration", "3", "--warmup", "1", "--runs", "1", "--no-latency", "--out", str(out)]
    run([*argv, *([] if peers else ["--no-peers"])], "serving")
    summary = json.loads((out / "serving.json").read_text())["summary"]
    rows = {row["target"]: row for row in summary}
    ratios = {"serving_grpc_vs_http": rows["provender-grpc"]["rps"] / rows["provender-http"]["rps"]}
    feast = rows.get("feast-http")
    if feast is not None:
        ratios["serving_rps_vs_feast"] = rows["provender-http"]["rps"] / feast["rps"]
        ratios["serving_cpu_vs_feast"] = feast["cpu_us"] / rows["provender-http"]["cpu_us"]
    return ratios


def online_ratios(out: Path) -> dict[str, float]:
    argv = [sys.executable, str(HERE / "online_read.py"), "--runs", "1", "--calls", "300", "--feast-calls", "100"]
    run([*argv, "--out", str(out)], "online reads")
    report = json.loads((out / "online_read.json").read_text())
    figures = report["figures"]
    redis, sqlite = figures["provender-redis"], figures["provender-sqlite"]
    ratios = {"online_sqlite_vs_redis_100x5": redis["100x5_p50"] / sqlite["100x5_p50"]}
    feast = report.get("feast_measured_ms") or {}
    if "1x5_p50" in feast:
        ratios["online_1x5_vs_feast"] = feast["1x5_p50"] / redis["1x5_p50"]
        ratios["online_100x5_vs_feast"] = feast["100x5_p50"] / redis["100x5_p50"]
    return ratios


def historical_ratios(peers: bool) -> dict[str, float]:
    contenders = "provender-df,duckdb-asof" + (",feast-duckdb" if peers else "")
    argv = [sys.executable, str(HERE / "historical.py"), "--size", "S", "--runs", "1", "--no-check"]
    run([*argv, "--contenders", contenders], "historical retrieval")
    report = json.loads((ADHOC / "historical_S.json").read_text())
    seconds = {row["contender"]: row["median_s"] for row in report["contenders"] if row.get("median_s")}
    ratios = {"historical_vs_floor": seconds["duckdb-asof"] / seconds["provender-df"]}
    if "feast-duckdb" in seconds:
        ratios["historical_vs_feast_duckdb"] = seconds["feast-duckdb"] / seconds["provender-df"]
    return ratios


def compare(now: dict[str, float], before: dict[str, float]) -> list[str]:
    """Lines for each ratio; regressions start with ``REGRESSION``."""
    lines = []
    for name, meaning in RATIOS.items():
        if name not in now:
            lines.append(f"   {name}: not measured ({meaning})")
            continue
        value, old = now[name], before.get(name)
        if old is None:
            lines.append(f"   {name}: {value:.2f} (nothing recorded) - {meaning}")
        elif value < old * (1 - TOLERANCE):
            lines.append(f"REGRESSION {name}: {value:.2f}, recorded {old:.2f} (-{1 - value / old:.0%}) - {meaning}")
        else:
            lines.append(f"   {name}: {value:.2f}, recorded {old:.2f} ({value / old - 1:+.0%}) - {meaning}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--record", action="store_true", help=f"store this run's ratios in {RECORDED.name}")
    parser.add_argument("--no-peers", action="store_true", help="skip Feast (its ratios are then not compared)")
    args = parser.parse_args()
    peers = not args.no_peers and FEAST_PYTHON.exists()
    if not peers and not args.no_peers:
        print(f"no peer virtualenv at {FEAST_PYTHON}: Feast ratios skipped (bash benchmarks/peers_setup.sh)")
    started = time.monotonic()
    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="provender-bench-quick-") as scratch:
        ratios |= serving_ratios(Path(scratch), peers)
        ratios |= online_ratios(Path(scratch))
    ratios |= historical_ratios(peers)
    seconds = time.monotonic() - started
    before = json.loads(RECORDED.read_text())["ratios"] if RECORDED.exists() else {}
    lines = compare(ratios, before)
    print(f"\nratios (higher is better), {seconds:.0f} s; regression = more than {TOLERANCE:.0%} below the recorded:")
    print("\n".join(lines))
    if args.record:
        RESULTS.mkdir(exist_ok=True)
        record = {
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds),
            "ratios": {name: round(value, 3) for name, value in ratios.items()},
            "note": "one short run per benchmark on a shared 2-core machine under load; ratios are same-run",
        }
        RECORDED.write_text(json.dumps(record, indent=2) + "\n")
        print(f"recorded {RECORDED}")
    return 1 if any(line.startswith("REGRESSION") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
