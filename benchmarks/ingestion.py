"""Offline-to-online ingestion: Provender vs Feast 0.67 vs the raw Redis floor, same data, one run.

The driver scenario of ``_data.py`` (size S: 1.1M source rows, 20k keys; L: 11M rows, 200k keys)
is ingested over its whole 90-day window into a fresh Redis (and SQLite): per entity key, the
latest row. Contenders run in their own subprocess, so each peak RSS is its own:

- ``provender-redis`` / ``provender-sqlite``: ``client.start_offline_to_online_ingestion`` for both
  tables (DuckDB computes the latest rows, batches stream to the store with the event-time guard);
- ``raw-floor``: the latest rows precomputed (untimed), then only a pipelined redis-py ``HSET`` of
  the same keys and payload: the cost of talking to Redis at all;
- ``feast-redis``: Feast 0.67 ``materialize`` (file offline store, Redis online store) from the peer
  virtualenv ``benchmarks/peers/feast`` (``bash benchmarks/peers_setup.sh``); best effort.

Usage: ``python benchmarks/ingestion.py --size S|L [--runs 3] [--contenders ...]``.
Prints medians, peak RSS and ratios; writes ``benchmarks/results/ingestion_<size>.json`` and
``ingestion.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import provender as pv

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _data import (  # noqa: E402
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    SCENARIO_DAYS,
    SCENARIO_START,
    SIZES,
    TABLES,
    ScenarioFiles,
    TableSpec,
    ensure_scenario,
)
from _services import redis_server  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results"
FEAST_PYTHON = BENCH_DIR / "peers" / "feast" / "bin" / "python"
RESULT_MARK = "@@RESULT "
CONTENDERS = ("provender-redis", "provender-sqlite", "raw-floor", "feast-redis")
TIMEOUT_SECONDS = {"S": 300, "L": 900}
WINDOW_START = SCENARIO_START - timedelta(days=1)
WINDOW_END = SCENARIO_START + timedelta(days=SCENARIO_DAYS + 1)
TARGETS = {"S": 0.5, "L": 3.0}
FEAST_L_ANCHOR_SECONDS = 31.9


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- children: one contender, one run ----------------------------------------------------------


def child_provender(files: ScenarioFiles, work: Path, online: dict[str, object]) -> dict[str, object]:
    import yaml

    import provender as pv
    from provender.config import load_settings

    (work / "provender.yaml").write_text(
        yaml.safe_dump({"registry": "sqlite:///.provender/registry.db", "online": online})
    )
    client = pv.Client(settings=load_settings(work / "provender.yaml", environ={}))
    definitions: list[pv.Entity | pv.FeatureTable] = []
    for spec in TABLES:
        definitions.append(pv.Entity(name=spec.key, value_type=pv.ValueType.INT64))
        definitions.append(_provender_table(spec, files.source(spec)))
    client.apply(definitions)
    # Warm-up: an empty window loads the engine and store modules once, as a long-lived process has.
    client.start_offline_to_online_ingestion(
        TABLES[0].name, start=WINDOW_START - timedelta(days=2), end=WINDOW_START - timedelta(days=1)
    ).wait()
    began = time.perf_counter()
    written = 0
    for spec in TABLES:
        job = client.start_offline_to_online_ingestion(spec.name, start=WINDOW_START, end=WINDOW_END).wait()
        written += job.rows_written
    seconds = time.perf_counter() - began
    client.close()
    return {"seconds": seconds, "keys_written": written}


def _provender_table(spec: TableSpec, path: Path) -> pv.FeatureTable:
    import provender as pv

    types = {"float32": "FLOAT", "float64": "DOUBLE", "int64": "INT64"}
    return pv.FeatureTable(
        name=spec.name,
        entities=[spec.key],
        features=[pv.Feature(f.name, pv.ValueType[types[f.dtype]]) for f in spec.features],
        batch_source=pv.FileSource(
            path=str(path),
            event_timestamp_column=EVENT_TIMESTAMP,
            created_timestamp_column=CREATED_TIMESTAMP,
        ),
        max_age=spec.max_age,
    )


def child_raw_floor(files: ScenarioFiles, redis_url: str) -> dict[str, object]:
    import duckdb
    import redis

    latest: dict[str, list[tuple[object, ...]]] = {}
    with duckdb.connect() as con:
        for spec in TABLES:
            cols = ", ".join(spec.feature_names)
            latest[spec.name] = con.execute(
                f"SELECT {spec.key}, {cols}, epoch_us({EVENT_TIMESTAMP}) FROM read_parquet('{files.source(spec)}') "
                f"QUALIFY row_number() OVER (PARTITION BY {spec.key} ORDER BY {EVENT_TIMESTAMP} DESC, "
                f"{CREATED_TIMESTAMP} DESC) = 1"
            ).fetchall()
    client = redis.Redis.from_url(redis_url)
    began = time.perf_counter()
    written = 0
    for spec in TABLES:
        names = [*spec.feature_names, "event_ts"]
        pipe = client.pipeline(transaction=False)
        for n, row in enumerate(latest[spec.name], 1):
            pipe.hset(f"{spec.name}:{row[0]}", mapping=dict(zip(names, (str(v) for v in row[1:]), strict=True)))
            if n % 10_000 == 0:
                pipe.execute()
        pipe.execute()
        written += len(latest[spec.name])
    seconds = time.perf_counter() - began
    client.close()
    return {"seconds": seconds, "keys_written": written}


FEAST_DRIVER = r'''
import json, sys, time, resource
from datetime import datetime, timedelta, timezone
from pathlib import Path
spec = json.loads(sys.argv[1])
repo = Path(spec["work"])
(repo / "feature_store.yaml").write_text(f"""project: bench
registry: {repo}/registry.db
provider: local
online_store:
  type: redis
  connection_string: "{spec['redis']}"
offline_store:
  type: file
entity_key_serialization_version: 3
""")
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float32, Float64, Int64
types = {"float32": Float32, "float64": Float64, "int64": Int64}
objects = []
for t in spec["tables"]:
    entity = Entity(name=t["key"], join_keys=[t["key"]])
    source = FileSource(path=t["path"], timestamp_field="event_timestamp", created_timestamp_column="created")
    view = FeatureView(name=t["name"], entities=[entity], ttl=timedelta(days=t["max_age_days"]),
                       schema=[Field(name=f, dtype=types[d]) for f, d in t["features"]], source=source, online=True)
    objects += [entity, view]
store = FeatureStore(repo_path=str(repo))
store.apply(objects)
start = datetime.fromisoformat(spec["start"]); end = datetime.fromisoformat(spec["end"])
began = time.perf_counter()
store.materialize(start_date=start, end_date=end)
seconds = time.perf_counter() - began
print("@@RESULT " + json.dumps({"seconds": seconds, "keys_written": None,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def run_feast(files: ScenarioFiles, work: Path, redis_url: str, timeout: float) -> dict[str, object]:
    if not FEAST_PYTHON.exists():
        return {"error": "peer venv missing: bash benchmarks/peers_setup.sh"}
    script = work / "feast_driver.py"
    script.write_text(FEAST_DRIVER)
    host_port = redis_url.removeprefix("redis://").split("/")[0]
    spec = {
        "work": str(work),
        "redis": host_port,
        "start": WINDOW_START.isoformat(),
        "end": WINDOW_END.isoformat(),
        "tables": [
            {
                "name": t.name,
                "key": t.key,
                "path": str(files.source(t)),
                "max_age_days": t.max_age.days,
                "features": [[f.name, f.dtype] for f in t.features],
            }
            for t in TABLES
        ],
    }
    return _run([str(FEAST_PYTHON), str(script), json.dumps(spec)], timeout=timeout, cwd=work)


def _run(argv: list[str], *, timeout: float, cwd: Path) -> dict[str, object]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result: dict[str, object] = json.loads(line.removeprefix(RESULT_MARK))
            return result
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {done.returncode}: {' | '.join(tail)}"}


def child_main(args: argparse.Namespace) -> None:
    files = ensure_scenario(SIZES[args.size])
    work = Path(args.work)
    if args.child == "provender-redis":
        result = child_provender(files, work, {"store": "redis", "url": args.redis_url})
    elif args.child == "provender-sqlite":
        result = child_provender(files, work, {"store": "sqlite", "path": ".provender/online.db"})
    else:
        result = child_raw_floor(files, args.redis_url)
    result["peak_rss_mb"] = peak_rss_mb()
    print(RESULT_MARK + json.dumps(result), flush=True)


# -- the benchmark -------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> int:
    size = SIZES[args.size]
    files = ensure_scenario(size)
    source_rows = size.driver_rows + size.customer_rows
    results: dict[str, list[dict[str, object]]] = {c: [] for c in args.contenders}
    with tempfile.TemporaryDirectory(prefix="provender-bench-") as tmp:
        root = Path(tmp)
        with redis_server(root) as redis_url:
            import redis

            flush = redis.Redis.from_url(redis_url)
            for run in range(args.runs):
                for contender in args.contenders:
                    flush.flushall()
                    work = root / f"{contender}-{run}"
                    work.mkdir()
                    if contender == "feast-redis":
                        result = run_feast(files, work, redis_url, TIMEOUT_SECONDS[args.size])
                    else:
                        argv = [
                            sys.executable,
                            __file__,
                            "--child",
                            contender,
                            "--size",
                            args.size,
                            "--work",
                            str(work),
                            "--redis-url",
                            redis_url,
                        ]
                        result = _run(argv, timeout=TIMEOUT_SECONDS[args.size], cwd=work)
                    results[contender].append(result)
                    shown = f"{result['seconds']:.2f} s" if "seconds" in result else result.get("error")
                    print(f"  run {run + 1} {contender:<17} {shown}", flush=True)
            flush.close()
    summary = summarize(results, source_rows=source_rows)
    report(args.size, summary, source_rows=source_rows)
    return 0


def summarize(results: dict[str, list[dict[str, object]]], *, source_rows: int) -> dict[str, dict[str, object]]:
    summary: dict[str, dict[str, object]] = {}
    for contender, runs in results.items():
        ok = [r for r in runs if "seconds" in r]
        if not ok:
            summary[contender] = {"error": runs[-1].get("error") if runs else "not run"}
            continue
        seconds = sorted(float(r["seconds"]) for r in ok)  # type: ignore[arg-type]
        median = statistics.median(seconds)
        summary[contender] = {
            "median_s": median,
            "min_s": seconds[0],
            "max_s": seconds[-1],
            "runs": len(ok),
            "peak_rss_mb": max(float(r["peak_rss_mb"]) for r in ok),  # type: ignore[arg-type]
            "keys_written": ok[-1].get("keys_written"),
            "source_rows_per_s": source_rows / median,
        }
    return summary


def report(size: str, summary: dict[str, dict[str, object]], *, source_rows: int) -> None:
    reference = summary.get("provender-redis", {}).get("median_s")
    assert reference is None or isinstance(reference, float)  # summarize()'s median
    lines = [
        "| contender | median s | min s | max s | peak RSS MB | keys written | rows/s | vs provender-redis |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for contender, s in summary.items():
        if "error" in s:
            lines.append(f"| {contender} | failed: {s['error']} | | | | | | |")
            continue
        ratio = f"{float(s['median_s']) / float(reference):.2f}x" if reference else "-"  # type: ignore[arg-type]
        lines.append(
            f"| {contender} | {s['median_s']:.2f} | {s['min_s']:.2f} | {s['max_s']:.2f} | {s['peak_rss_mb']:.0f} "
            f"| {s['keys_written'] or '-'} | {s['source_rows_per_s']:,.0f} | {ratio} |"
        )
    target = TARGETS[size]
    verdict = (
        f"target {target} s: " + ("met" if reference and reference <= target else f"missed ({reference:.2f} s)")
        if reference
        else "provender-redis did not run"
    )
    header = (
        f"## Ingestion, size {size} ({source_rows:,} source rows)\n\nRun {datetime.now(UTC):%Y-%m-%dT%H:%M}Z on "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; medians of the runs; each contender in "
        f"its own process. Command: `.venv/bin/python benchmarks/ingestion.py --size {size}`.\n"
    )
    notes = [f"\n- {verdict}"]
    if size == "L":
        notes.append(
            f"- Feast's reference figure for L (measured earlier, similar machine): {FEAST_L_ANCHOR_SECONDS} s"
        )
    text = header + "\n" + "\n".join(lines) + "\n" + "\n".join(notes) + "\n"
    print("\n" + text)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"ingestion_{size}.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = RESULTS_DIR / "ingestion.md"
    sections = {}
    if md.exists():
        for block in md.read_text().split("## Ingestion, size ")[1:]:
            sections[block[0]] = "## Ingestion, size " + block
    sections[size] = text
    md.write_text("# Offline-to-online ingestion\n\n" + "\n".join(sections[k] for k in sorted(sections, reverse=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["S", "L"], default="S")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--child", choices=CONTENDERS[:3], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return 0
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
