"""Benchmark: in-process online reads, Redis and SQLite (issue 4, "Performance").

The driver scenario of ``_data.py`` (size S by default: 10k drivers, 10k customers) is loaded
into a Redis server this script starts on a free loopback port and into a SQLite file, through
``OnlineStore.write`` (every source row, in Parquet batches: the store keeps the newest row per
key). Then, on the same data, it times single calls of:

- ``provender-redis``, ``provender-sqlite``: ``Client.get_online_features(refs, rows).to_dict()``
  in-process, where ``refs`` are 5 features (the 3 of ``driver_hourly_stats`` and 2 of
  ``customer_profile``) and each entity row is ``{driver_id, customer_id}``: two tables, two
  entity keys per row;
- ``raw-hmget`` (the floor named by the issue): redis-py pipelined ``HMGET`` of the same
  payloads laid out as one hash per entity key with a field per table, one ``HMGET`` per
  (row, table), no decoding;
- ``raw-mget``: redis-py ``MGET`` of Provender's own keys (its layout, one string key per
  (entity key, table)), no decoding: Provender's round trip without Provender's work;
- ``raw-lua-hmget``: the hash layout read by one ``EVALSHA`` whose Lua script runs the
  ``HMGET`` calls server-side (the other one-command alternative for the hash layout);
- ``raw-sqlite-in``: the SQLite store's own query, ``SELECT entity_key, value ... WHERE
  entity_key IN (...)`` once per table, on the same file through a connection opened like the
  store's, fetched into a dict, no decoding: Provender's SQLite reads without Provender's work
  (the B-tree lookups run in the calling thread, where Redis runs them on its own core).

Each call is timed in wall time and in the calling thread's CPU time (``time.thread_time``).

Cases: 1 entity row x 5 features and 100 entity rows x 5 features, ``--calls`` timed calls each
(default 2000, after 200 warm-up calls), over 64 pre-drawn random request sets. Each run times
every contender in turn; the figures are the medians over ``--runs`` runs (default 3) of each
run's p50 and p99. The feature tables are declared with a long ``max_age`` (10 years) so the
scenario's 2025 values read as PRESENT while the max_age check still runs.

Usage::

    .venv/bin/python benchmarks/online_read.py            # size S, 3 runs x 2000 calls
    .venv/bin/python benchmarks/online_read.py --runs 5 --calls 5000

Writes ``benchmarks/results/online_read.json`` and ``benchmarks/results/online_read.md``.
Feast 0.67 runs from the peer virtualenv (benchmarks/peers_setup.sh) via peer_feast_online.py.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import redis
import yaml
from _data import CREATED_TIMESTAMP, CUSTOMER_PROFILE, DRIVER_STATS, SIZES, ScenarioFiles, TableSpec, ensure_scenario
from _services import redis_server

import provender as pv
from provender.online.keys import KeyEncoder

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS = 200
REQUEST_SETS = 64
SEED = 4
CASES = {"1x5": 1, "100x5": 100}
REFS = [*DRIVER_STATS.refs(), *CUSTOMER_PROFILE.refs()[:2]]
LONG_MAX_AGE = timedelta(days=3650)
TARGETS_MS = {("1x5", "p50"): 0.10, ("1x5", "p99"): 0.25, ("100x5", "p50"): 1.2, ("100x5", "p99"): 2.5}
# Feast 0.67's in-process get_online_features on Redis, as measured in issue 4 (not re-measured here).
FEAST_ISSUE_MS = {("1x5", "p50"): 0.34, ("1x5", "p99"): 0.70, ("100x5", "p50"): 7.3, ("100x5", "p99"): 25.0}
_TYPES = {"int64": pv.ValueType.INT64, "float32": pv.ValueType.FLOAT, "float64": pv.ValueType.DOUBLE}
_LUA_HMGET = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HMGET', key, ARGV[i])
end
return out
"""

Call = Callable[[list[dict[str, int]]], object]


# ----------------------------------------------------------------------------- set-up


def definitions() -> list[pv.Entity | pv.FeatureTable]:
    source = pv.FileSource(path="unused.parquet", event_timestamp_column="event_timestamp")
    result: list[pv.Entity | pv.FeatureTable] = []
    for spec in (DRIVER_STATS, CUSTOMER_PROFILE):
        result.append(pv.Entity(name=spec.key, value_type=pv.ValueType.INT64))
        result.append(
            pv.FeatureTable(
                name=spec.name,
                entities=[spec.key],
                batch_source=source,
                max_age=LONG_MAX_AGE,
                features=[pv.Feature(f.name, _TYPES[f.dtype]) for f in spec.features],
            )
        )
    return result


def open_client(root: Path, online: dict[str, object]) -> pv.Client:
    root.mkdir(parents=True)
    config = {"registry": "sqlite:///registry.db", "online": online}
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    return pv.Client(config=root / "provender.yaml")


def load(client: pv.Client, files: ScenarioFiles, specs: tuple[TableSpec, ...]) -> float:
    """Write every source row through the store (it keeps the newest per key); return seconds."""
    started = time.perf_counter()
    for spec in specs:
        table = client.get_feature_table(spec.name)
        for batch in pq.ParquetFile(files.source(spec)).iter_batches(batch_size=250_000):
            names = ["created_timestamp" if n == CREATED_TIMESTAMP else n for n in batch.schema.names]
            client._online_store.write(table, pa.Table.from_batches([batch]).rename_columns(names))
    return time.perf_counter() - started


# ----------------------------------------------------------------------------- contenders


def provender_call(client: pv.Client) -> Call:
    def call(rows: list[dict[str, int]]) -> object:
        return client.get_online_features(REFS, rows).to_dict()

    return call


def hash_layout(r: redis.Redis, project: str) -> None:
    """Copy Provender's rows into the hash-per-entity layout under ``floor:`` keys."""
    prefix = f"pv:{project}:{{".encode()
    pipe = r.pipeline(transaction=False)
    for key in r.scan_iter(match=prefix + b"*", count=10_000):
        entity, table = key[len(prefix) :].rsplit(b"}:", 1)
        pipe.hset(b"floor:" + entity, table, r.get(key))
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()


def key_parts(rows: list[dict[str, int]]) -> list[tuple[bytes, bytes]]:
    """(encoded entity key, table name) of every value a request needs, driver's then customer's."""
    drivers = KeyEncoder([(DRIVER_STATS.key, pv.ValueType.INT64)]).encode_rows(rows)
    customers = KeyEncoder([(CUSTOMER_PROFILE.key, pv.ValueType.INT64)]).encode_rows(rows)
    return [(k, DRIVER_STATS.name.encode()) for k in drivers] + [(k, CUSTOMER_PROFILE.name.encode()) for k in customers]


def raw_calls(r: redis.Redis, project: str) -> dict[str, Call]:
    """The floors; their keys are computed outside the timed call (pre-encoded per request)."""
    sha = r.script_load(_LUA_HMGET)
    prefix = f"pv:{project}:{{".encode()
    cache: dict[int, list[tuple[bytes, bytes]]] = {}

    def parts(rows: list[dict[str, int]]) -> list[tuple[bytes, bytes]]:
        found = cache.get(id(rows))
        if found is None:
            found = cache[id(rows)] = key_parts(rows)
        return found

    def hmget(rows: list[dict[str, int]]) -> object:
        pipe = r.pipeline(transaction=False)
        for entity, table in parts(rows):
            pipe.hmget(b"floor:" + entity, [table])
        return pipe.execute()

    def mget(rows: list[dict[str, int]]) -> object:
        return r.mget([prefix + entity + b"}:" + table for entity, table in parts(rows)])

    def lua(rows: list[dict[str, int]]) -> object:
        pairs = parts(rows)
        return r.evalsha(sha, len(pairs), *(b"floor:" + e for e, _ in pairs), *(t for _, t in pairs))

    return {"raw-hmget": hmget, "raw-mget": mget, "raw-lua-hmget": lua}


def raw_sqlite_call(client: pv.Client) -> Call:
    """The SQLite store's query alone (keys encoded outside the timed call, no decoding)."""
    store = client._online_store
    connection = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)  # type: ignore[attr-defined]
    connection.execute("PRAGMA mmap_size=268435456")  # as the store opens its read connections
    select = "SELECT entity_key, value FROM online_rows WHERE project = ? AND feature_table = ? AND entity_key IN ({})"
    project = client.project
    cache: dict[int, list[tuple[str, list[bytes]]]] = {}

    def per_table(rows: list[dict[str, int]]) -> list[tuple[str, list[bytes]]]:
        found = cache.get(id(rows))
        if found is None:
            parts = key_parts(rows)
            found = cache[id(rows)] = [
                (spec.name, [e for e, t in parts if t == spec.name.encode()])
                for spec in (DRIVER_STATS, CUSTOMER_PROFILE)
            ]
        return found

    def call(rows: list[dict[str, int]]) -> object:
        result = []
        for table, keys in per_table(rows):
            sql = select.format(",".join("?" * len(keys)))
            stored = dict(connection.execute(sql, (project, table, *keys)).fetchall())
            result.append([stored.get(key) for key in keys])
        return result

    return call


# ----------------------------------------------------------------------------- measuring


def request_sets(rng: random.Random, n_rows: int) -> list[list[dict[str, int]]]:
    def row() -> dict[str, int]:
        return {
            DRIVER_STATS.key: DRIVER_STATS.key_base + rng.randrange(SIZE.drivers),
            CUSTOMER_PROFILE.key: CUSTOMER_PROFILE.key_base + rng.randrange(SIZE.customers),
        }

    return [[row() for _ in range(n_rows)] for _ in range(REQUEST_SETS)]


def time_calls(call: Call, requests: list[list[dict[str, int]]], calls: int) -> tuple[list[float], list[float]]:
    """Milliseconds per call, wall and the calling thread's CPU time, after warm-up calls."""
    for i in range(WARMUP_CALLS):
        call(requests[i % len(requests)])
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    timings, cpu_times = [], []
    for i in range(calls):
        rows = requests[i % len(requests)]
        cpu_started, started = cpu_clock(), clock()
        call(rows)
        timings.append((clock() - started) / 1e6)
        cpu_times.append((cpu_clock() - cpu_started) / 1e6)
    return timings, cpu_times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def check_answers(clients: dict[str, pv.Client], requests: list[list[dict[str, int]]]) -> None:
    """Redis and SQLite must return the same values, all PRESENT (the data covers every key)."""
    for rows in requests[:8]:
        answers = [clients[name].get_online_features(REFS, rows) for name in clients]
        first = answers[0].to_dict()
        if any(a.to_dict() != first for a in answers[1:]):
            sys.exit("the stores disagree")
        statuses = answers[0].statuses()
        if any(s != "PRESENT" for column in statuses.values() for s in column):
            sys.exit(f"unexpected statuses: {statuses}")


# ----------------------------------------------------------------------------- reporting


def machine() -> dict[str, object]:
    with contextlib.suppress(OSError):
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        )
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def render_markdown(report: dict[str, object]) -> str:
    figures: dict[str, dict[str, float]] = report["figures"]  # type: ignore[assignment]
    lines = [
        "# Online reads (in-process)",
        "",
        f"Run {report['date']} on {report['machine']['cpus']} CPUs ({report['machine']['cpu']}), "  # type: ignore[index]
        f"Python {report['machine']['python']}, redis-server {report['redis_version']}, size "  # type: ignore[index]
        f"{report['size']}; medians of {report['runs']} runs x {report['calls']} calls (p50 / p99, ms). "
        "Command: `.venv/bin/python benchmarks/online_read.py`. Load average at start: "
        f"{report['machine']['load_average_at_start']} (the machine is shared; p99 is sensitive to it).",  # type: ignore[index]
        "",
        "| contender | 1 x 5 p50 | 1 x 5 p99 | 100 x 5 p50 | 100 x 5 p99 | 1 x 5 CPU p50 | 100 x 5 CPU p50 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in figures.items():
        cells = [f"{row[f'{case}_{q}']:.3f}" for case in CASES for q in ("p50", "p99", "cpu_p50")]
        cells = [cells[0], cells[1], cells[3], cells[4], cells[2], cells[5]]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines.append(
        "| target (Provender, Redis) | "
        + " | ".join(f"<= {TARGETS_MS[(case, q)]}" for case in CASES for q in ("p50", "p99"))
        + " | - | - |"
    )
    lines.append(
        "| Feast 0.67, Redis (reference figure, not re-measured) | "
        + " | ".join(f"{FEAST_ISSUE_MS[(case, q)]}" for case in CASES for q in ("p50", "p99"))
        + " | - | - |"
    )
    lines += ["", "Ratios (median p50 / p99):", ""]
    for line in report["ratios"]:  # type: ignore[attr-defined]
        lines.append(f"- {line}")
    lines += ["", "Targets:", ""]
    for line in report["verdicts"]:  # type: ignore[attr-defined]
        lines.append(f"- {line}")
    lines += [
        "",
        f"Memory per value (Redis `MEMORY USAGE`, mean over 200 keys): string key per (entity, table) "
        f"{report['memory_bytes']['string_key']:.0f} B, hash per entity with one field "  # type: ignore[index]
        f"{report['memory_bytes']['hash_field']:.0f} B.",  # type: ignore[index]
        "Load (every source row through `OnlineStore.write`): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in report["load_seconds"].items())  # type: ignore[attr-defined]
        + f" for {report['source_rows']:,} source rows.",
        "",
        "Notes:",
        "",
        "- `1 x 5` is one entity row `{driver_id, customer_id}` and 5 features of 2 tables: 2 keys per row.",
        "- SQLite reads run on the calling thread: 100 rows x 2 tables are 200 B-tree lookups through "
        "Python's sqlite3, where Redis executes one `MGET` on its own core (its CPU is not in the CPU "
        "column, which is the calling thread's). `raw-sqlite-in` is the store's query alone: "
        "provender-sqlite minus raw-sqlite-in is the decoding and the response, the same work as on Redis. "
        "So SQLite is faster for a single row and slower for 100.",
        "- CPU p50 is the calling thread's CPU time (`time.thread_time`), steadier than wall time on a shared machine.",
        "- The Feast row above is a reference figure measured earlier on a similar machine; Feast measured in "
        "this run, when its peer virtualenv exists, is in the section below.",
        "",
    ]
    return "\n".join(lines)


def summarize(raw: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {
        name: {metric: statistics.median(values) for metric, values in metrics.items()} for name, metrics in raw.items()
    }


def verdicts(figures: dict[str, dict[str, float]]) -> tuple[list[str], list[str]]:
    ratios, results = [], []
    ours, floor = figures["provender-redis"], figures["raw-hmget"]
    for case in CASES:
        for q in ("p50", "p99"):
            key = f"{case}_{q}"
            target = TARGETS_MS[(case, q)]
            verdict = "met" if ours[key] <= target else f"MISSED by {ours[key] / target:.2f}x"
            results.append(f"Redis {case} {q}: {ours[key]:.3f} ms vs target {target} ms: {verdict}")
            sqlite = figures["provender-sqlite"][key]
            results.append(
                f"SQLite {case} {q}: {sqlite:.3f} ms, {'no slower than' if sqlite <= ours[key] else 'SLOWER than'} "
                f"Redis ({sqlite / ours[key]:.2f}x)"
            )
            ratios.append(
                f"{case} {q}: provender-redis / raw-hmget = {ours[key] / floor[key]:.2f}; "
                f"provender-redis / raw-mget = {ours[key] / figures['raw-mget'][key]:.2f}; "
                f"Feast (reference figure) / provender-redis = {FEAST_ISSUE_MS[(case, q)] / ours[key]:.1f}"
            )
    return ratios, results


def print_table(figures: dict[str, dict[str, float]]) -> None:
    header = f"{'contender':<18}" + "".join(f"{case + ' ' + q:>14}" for case in CASES for q in ("p50", "p99"))
    print(header)
    print("-" * len(header))
    for name, row in figures.items():
        print(f"{name:<18}" + "".join(f"{row[f'{case}_{q}']:>14.3f}" for case in CASES for q in ("p50", "p99")))


# ----------------------------------------------------------------------------- main

SIZE = SIZES["S"]


FEAST_PYTHON = Path(__file__).resolve().parent / "peers" / "feast" / "bin" / "python"


def run_feast(
    tmp: Path, url: str, files: ScenarioFiles, requests: dict[str, list[list[dict[str, int]]]], *, calls: int, runs: int
) -> dict[str, object]:
    """Feast 0.67's get_online_features on the same Redis (db 1), data and requests; median ms per case."""
    if not FEAST_PYTHON.exists():
        return {"error": "peer venv missing: bash benchmarks/peers_setup.sh"}
    scenario_start = datetime(2025, 1, 1, tzinfo=UTC)
    spec = {
        "work": str(tmp / "feast"),
        "redis": url.removeprefix("redis://").split("/")[0],
        "start": (scenario_start - timedelta(days=1)).isoformat(),
        "end": (scenario_start + timedelta(days=92)).isoformat(),
        "tables": [
            {
                "name": t.name,
                "key": t.key,
                "path": str(files.source(t)),
                "features": [[f.name, f.dtype] for f in t.features],
            }
            for t in (DRIVER_STATS, CUSTOMER_PROFILE)
        ],
        "refs": REFS,
        "requests": requests,
        "calls": calls,
        "runs": runs,
    }
    spec_path = tmp / "feast_spec.json"
    spec_path.write_text(json.dumps(spec))
    script = Path(__file__).resolve().parent / "peer_feast_online.py"
    done = subprocess.run(
        [str(FEAST_PYTHON), str(script), str(spec_path)], capture_output=True, text=True, timeout=900, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("@@RESULT "):
            per_run: dict[str, list[float]] = json.loads(line.removeprefix("@@RESULT "))
            return {key: statistics.median(values) for key, values in per_run.items()}
    return {"error": " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])}


def render_feast(report: dict[str, object]) -> str:
    """A markdown section with Feast measured in this run, beside Provender on Redis."""
    feast = report.get("feast_measured_ms") or {}
    assert isinstance(feast, dict)
    if "error" in feast:
        return f"\n## Feast 0.67 measured in this run\n\nFailed: {feast['error']}\n"
    ours = report["figures"]["provender-redis"]  # type: ignore[index]
    lines = [
        "",
        "## Feast 0.67 measured in this run (same Redis server, data and requests)",
        "",
        "| case | Feast p50 ms | Feast p99 ms | Provender p50 ms | Provender p99 ms | Feast / Provender (p50) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        p50, p99 = feast[f"{case}_p50"], feast[f"{case}_p99"]
        mine50, mine99 = ours[f"{case}_p50"], ours[f"{case}_p99"]
        lines.append(f"| {case} | {p50:.3f} | {p99:.3f} | {mine50:.3f} | {mine99:.3f} | {p50 / mine50:.1f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    global SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="S")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--feast-calls", type=int, default=500, help="calls per case for Feast (it is slower)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write online_read.json/.md")
    args = parser.parse_args()
    SIZE = SIZES[args.size]
    files = ensure_scenario(SIZE)
    report: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": args.size,
        "runs": args.runs,
        "calls": args.calls,
        "machine": machine(),
        "refs": REFS,
    }
    with tempfile.TemporaryDirectory(prefix="provender-bench-") as tmp, redis_server(Path(tmp)) as url:
        clients = {
            "provender-redis": open_client(Path(tmp) / "redis", {"store": "redis", "url": url}),
            "provender-sqlite": open_client(Path(tmp) / "sqlite", {"store": "sqlite"}),
        }
        specs = (DRIVER_STATS, CUSTOMER_PROFILE)
        load_seconds = {}
        for name, client in clients.items():
            client.apply(definitions())
            load_seconds[name.removeprefix("provender-")] = load(client, files, specs)
        report["load_seconds"] = load_seconds
        report["source_rows"] = SIZE.driver_rows + SIZE.customer_rows
        r = redis.Redis.from_url(url)
        report["redis_version"] = r.info("server")["redis_version"]
        hash_layout(r, clients["provender-redis"].project)
        rng = random.Random(SEED)
        requests = {case: request_sets(rng, n) for case, n in CASES.items()}
        check_answers(clients, requests["100x5"])
        sample = key_parts(requests["100x5"][0])
        prefix = f"pv:{clients['provender-redis'].project}:{{".encode()

        def used(key: bytes) -> int:
            size = r.memory_usage(key)
            assert size is not None, key  # None: no such key
            return size

        report["memory_bytes"] = {
            "string_key": statistics.mean(used(prefix + e + b"}:" + t) for e, t in sample),
            "hash_field": statistics.mean(used(b"floor:" + e) for e, _ in sample),
        }
        contenders: dict[str, Call] = {name: provender_call(client) for name, client in clients.items()}
        contenders.update(raw_calls(r, clients["provender-redis"].project))
        contenders["raw-sqlite-in"] = raw_sqlite_call(clients["provender-sqlite"])
        raw: dict[str, dict[str, list[float]]] = {name: {} for name in contenders}
        gc.collect()
        for run in range(args.runs):
            for name, call in contenders.items():
                for case in CASES:
                    timings, cpu_times = time_calls(call, requests[case], args.calls)
                    raw[name].setdefault(f"{case}_p50", []).append(percentile(timings, 0.50))
                    raw[name].setdefault(f"{case}_p99", []).append(percentile(timings, 0.99))
                    raw[name].setdefault(f"{case}_cpu_p50", []).append(percentile(cpu_times, 0.50))
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
        for client in clients.values():
            client.close()
        r.close()
        report["feast_measured_ms"] = run_feast(Path(tmp), url, files, requests, calls=args.feast_calls, runs=args.runs)
    figures = summarize(raw)
    ratios, results = verdicts(figures)
    report.update(
        figures=figures,
        per_run=raw,
        ratios=ratios,
        verdicts=results,
        targets_ms={f"{case}_{q}": value for (case, q), value in TARGETS_MS.items()},
        feast_issue_ms={f"{case}_{q}": value for (case, q), value in FEAST_ISSUE_MS.items()},
    )
    print_table(figures)
    print()
    for line in [*ratios, *results]:
        print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "online_read.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "online_read.md").write_text(render_markdown(report) + render_feast(report))
    print(f"\nwrote {args.out / 'online_read.json'} and {args.out / 'online_read.md'}")


if __name__ == "__main__":
    main()
