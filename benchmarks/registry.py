"""Benchmark: the registry (issue 12, "Performance"): apply, list and get, per backend.

For each contender and each run, on a fresh, empty registry:

- ``apply 100``: one ``Client.apply`` of an entity and 100 feature tables (5 features, a
  ``FileSource`` each), timed alone;
- then 900 more tables are applied (untimed), and a new client lists them:
  ``list 1,000 cold`` is its first ``list_feature_tables()`` (nothing cached in the process),
  ``list 1,000`` the median of ``--list-calls`` further calls;
- ``get p50`` / ``get p99``: ``get_feature_table(name)`` for ``--get-calls`` random names
  among the 1,000 (after 50 warm-up calls).

Contenders: ``provender-sqlite`` (a file in a temporary directory), ``provender-postgresql``
(a database of its own on a PostgreSQL 15 server this script starts on a free loopback port,
fsync off), ``provender-core-sqlite`` and ``provender-core-postgresql`` (the same registries
behind a ``provender core`` process, the client using ``registry: http://...``), and
``feast-sql-postgresql``: Feast 0.67's SQL registry on a database of the same
server, from the peer virtualenv (``bash benchmarks/peers_setup.sh``), with the same tables as
feature views, timed on ``apply``, ``list_feature_views`` and ``get_feature_view`` (Feast's
defaults read the database on each call, as Provender does: every Provender read checks the
project's version, and reuses its decoded snapshot only while the version is unchanged).
Figures are medians over ``--runs`` runs (default 3), in milliseconds. For the core service
contenders, ``/v1/health p99`` times a request that does no registry work, sent after each get:
the floor the machine's load puts under any request's tail, measured at the same moments.

Apply to served: with a ``provender core`` (SQLite) and a ``provender serve`` reading the registry
through it with ``registry_refresh_seconds: 1``, the time from the return of an apply of a new
feature table through the core service until the serving process answers 200 for it (polled
every 5 ms), ``--served-tables`` times per run.

Usage::

    .venv/bin/python benchmarks/registry.py                # 3 runs, all contenders
    .venv/bin/python benchmarks/registry.py --contenders provender-sqlite --runs 5

Writes ``benchmarks/results/registry.json`` and ``benchmarks/results/registry.md`` (``--name`` another
name). On a shared machine the tail is the load's: ``/v1/health p99`` shows its floor, and
``nice -n -15 .venv/bin/python benchmarks/registry.py --contenders provender-core-sqlite,provender-core-postgresql
--served-tables 0 --name registry-priority`` measures the core service with the CPU given to it first
(its child processes, the core service and PostgreSQL, inherit the priority).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from _services import create_database, free_port, postgres_server, provender_process

import provender as pv

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FEAST_PYTHON = HERE / "peers" / "feast" / "bin" / "python"
APPLY_TABLES = 100
TOTAL_TABLES = 1000
METRICS = ("apply_ms", "list_cold_ms", "list_ms", "get_p50_ms", "get_p99_ms", "health_p99_ms")
LABELS = {
    "apply_ms": "apply 100",
    "list_cold_ms": "list 1,000 cold",
    "list_ms": "list 1,000",
    "get_p50_ms": "get p50",
    "get_p99_ms": "get p99",
    "health_p99_ms": "/v1/health p99",
}

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)


def table(n: int) -> pv.FeatureTable:
    """Feature table number ``n``: 4 floats and an int, a Parquet source (the Feast side mirrors it)."""
    return pv.FeatureTable(
        name=f"table_{n:04d}",
        entities=["driver_id"],
        features=[pv.Feature(f"f{i}", pv.ValueType.FLOAT) for i in range(4)]
        + [pv.Feature("trips", pv.ValueType.INT64)],
        batch_source=pv.FileSource(
            path=f"data/table_{n:04d}.parquet",
            event_timestamp_column="event_timestamp",
            created_timestamp_column="created",
        ),
        max_age=timedelta(days=1),
    )


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def run_provender(
    url: str, base_dir: Path, *, list_calls: int, get_calls: int, seed: int, health_port: int | None = None
) -> dict[str, float]:
    """One run of the three measures on the registry at ``url`` (empty).

    With ``health_port`` (a core service), each ``get`` is followed by a ``GET /v1/health`` on that
    port, which does no registry work: its p99 is the floor the machine's load puts under any
    request's, measured in step with the gets.
    """
    settings = pv.Settings(registry=url, base_dir=base_dir)
    tables = [table(n) for n in range(TOTAL_TABLES)]
    result: dict[str, float] = {}
    with pv.Client(settings=settings) as writer:
        began = time.perf_counter()
        writer.apply([DRIVER, *tables[:APPLY_TABLES]])
        result["apply_ms"] = (time.perf_counter() - began) * 1000
        writer.apply([DRIVER, *tables[APPLY_TABLES:]])
    with pv.Client(settings=settings) as reader:
        began = time.perf_counter()
        listed = reader.list_feature_tables()
        result["list_cold_ms"] = (time.perf_counter() - began) * 1000
        assert len(listed) == TOTAL_TABLES, len(listed)
        timings = []
        for _ in range(list_calls):
            began = time.perf_counter()
            reader.list_feature_tables()
            timings.append((time.perf_counter() - began) * 1000)
        result["list_ms"] = statistics.median(timings)
        rng = random.Random(seed)
        names = [f"table_{rng.randrange(TOTAL_TABLES):04d}" for _ in range(get_calls)]
        for name in names[:50]:
            reader.get_feature_table(name)
        timings, floor = [], []
        health = None if health_port is None else http.client.HTTPConnection("127.0.0.1", health_port, timeout=10)
        for name in names:
            began = time.perf_counter()
            reader.get_feature_table(name)
            timings.append((time.perf_counter() - began) * 1000)
            if health is not None:
                began = time.perf_counter()
                health.request("GET", "/v1/health")
                health.getresponse().read()
                floor.append((time.perf_counter() - began) * 1000)
        timings.sort()
        result["get_p50_ms"] = percentile(timings, 0.50)
        result["get_p99_ms"] = percentile(timings, 0.99)
        if health is not None:
            health.close()
            result["health_p99_ms"] = percentile(sorted(floor), 0.99)
    return result


def run_feast(registry: str, work: Path, *, list_calls: int, get_calls: int, seed: int) -> dict[str, float]:
    """One run of Feast 0.67's SQL registry in the peer virtualenv (a subprocess)."""
    spec = {
        "work": str(work),
        "registry": registry,
        "apply": APPLY_TABLES,
        "total": TOTAL_TABLES,
        "list_calls": list_calls,
        "get_calls": get_calls,
        "seed": seed,
    }
    spec_path = work.parent / f"{work.name}.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        [str(FEAST_PYTHON), str(HERE / "peer_feast_registry.py"), str(spec_path)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("@@RESULT "):
            figures: dict[str, float] = json.loads(line.removeprefix("@@RESULT "))
            return figures
    raise RuntimeError("feast run failed: " + " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:]))


Contender = Callable[[int, Path], dict[str, float]]


def run_core(registry: str, scratch: Path, *, list_calls: int, get_calls: int, seed: int) -> dict[str, float]:
    """One run of the measures through a ``provender core`` process serving ``registry``."""
    core_dir = scratch / "core"
    core_dir.mkdir()
    port = free_port()
    config = core_dir / "provender.yaml"
    config.write_text(yaml.safe_dump({"registry": registry, "core": {"port": port}}))
    with provender_process(config, "core", port=port) as url:
        return run_provender(url, scratch, list_calls=list_calls, get_calls=get_calls, seed=seed, health_port=port)


def apply_to_served(scratch: Path, *, tables: int) -> list[float]:
    """Milliseconds from each apply through the core service until serving answers for the new table."""
    core_port, serve_port = free_port(), free_port()
    core_config = scratch / "core" / "provender.yaml"
    core_config.parent.mkdir(parents=True)
    core_config.write_text(yaml.safe_dump({"registry": "sqlite:///registry.db", "core": {"port": core_port}}))
    serve_config = scratch / "serve" / "provender.yaml"
    serve_config.parent.mkdir(parents=True)
    served: list[float] = []
    with provender_process(core_config, "core", port=core_port) as core_url:
        settings = {
            "registry": core_url,
            "online": {"store": "sqlite", "path": "online.db"},
            "serving": {"registry_refresh_seconds": 1.0},
        }
        serve_config.write_text(yaml.safe_dump(settings))
        with pv.Client(settings=pv.Settings(registry=core_url, base_dir=scratch)) as client:
            client.apply([DRIVER, table(0)])
            args = ("serve", "--http-port", str(serve_port), "--no-grpc")
            with provender_process(serve_config, *args, port=serve_port):
                connection = http.client.HTTPConnection("127.0.0.1", serve_port, timeout=10)
                for n in range(1, tables + 1):
                    body = json.dumps({"features": [f"table_{n:04d}:trips"], "entities": {"driver_id": [1]}})
                    time.sleep(random.uniform(0.0, 1.0))  # not in step with the refresh
                    client.apply([DRIVER, table(n)])
                    applied = time.perf_counter()
                    while True:
                        connection.request("POST", "/v1/online-features", body=body)
                        response = connection.getresponse()
                        response.read()
                        if response.status == 200:
                            break
                        time.sleep(0.005)
                    served.append((time.perf_counter() - applied) * 1000)
                connection.close()
    return served


def contenders(pg_admin: str, args: argparse.Namespace) -> dict[str, Contender]:
    """Every contender: a function of (run number, scratch dir) giving that run's figures."""
    counts = {"list_calls": args.list_calls, "get_calls": args.get_calls}

    def sqlite(run: int, scratch: Path) -> dict[str, float]:
        return run_provender(f"sqlite:///{scratch}/registry.db", scratch, seed=run, **counts)

    def postgresql(run: int, scratch: Path) -> dict[str, float]:
        url = create_database(pg_admin, f"provender_{uuid.uuid4().hex[:8]}")
        return run_provender(url, scratch, seed=run, **counts)

    def feast(run: int, scratch: Path) -> dict[str, float]:
        if not FEAST_PYTHON.exists():
            raise RuntimeError("peer venv missing: bash benchmarks/peers_setup.sh")
        url = create_database(pg_admin, f"feast_{uuid.uuid4().hex[:8]}")
        return run_feast(url.replace("postgresql://", "postgresql+psycopg://"), scratch / "feast", seed=run, **counts)

    def core_sqlite(run: int, scratch: Path) -> dict[str, float]:
        return run_core(f"sqlite:///{scratch}/registry.db", scratch, seed=run, **counts)

    def core_postgresql(run: int, scratch: Path) -> dict[str, float]:
        url = create_database(pg_admin, f"provender_{uuid.uuid4().hex[:8]}")
        return run_core(url, scratch, seed=run, **counts)

    return {
        "provender-sqlite": sqlite,
        "provender-postgresql": postgresql,
        "provender-core-sqlite": core_sqlite,
        "provender-core-postgresql": core_postgresql,
        "feast-sql-postgresql": feast,
    }


def machine() -> dict[str, object]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "niceness": os.nice(0),
    }


def render_markdown(report: dict[str, object]) -> str:
    figures: dict[str, dict[str, float]] = report["figures"]  # type: ignore[assignment]
    info: dict[str, object] = report["machine"]  # type: ignore[assignment]
    lines = [
        "# Registry: apply, list, get",
        "",
        f"Run {report['date']} on {info['cpus']} CPUs ({info['cpu']}), Python {info['python']}, PostgreSQL 15 "
        f"(local, fsync off); medians of {report['runs']} runs, milliseconds. Command: "
        f"`.venv/bin/python {report['command']}` at niceness {info['niceness']}. Load average at start: "
        f"{info['load_average_at_start']} (the machine is shared with other work; p99 is sensitive to it).",
        "",
        "| contender | " + " | ".join(LABELS[m] for m in METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for name, row in figures.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[m]:.2f}" if m in row else "-" for m in METRICS) + " |")
    errors: dict[str, str] = report.get("errors", {})  # type: ignore[assignment]
    for name, error in errors.items():
        lines.append(f"\n{name} failed: {error}")
    served: list[float] = report.get("served_ms", [])  # type: ignore[assignment]
    if served:
        ordered = sorted(served)
        lines += [
            "",
            "Apply to served (core service over SQLite, `provender serve` reading the registry through it, "
            f"`registry_refresh_seconds: 1`), {len(ordered)} new tables, milliseconds:",
            "",
            "| median | p90 | max |",
            "|---:|---:|---:|",
            f"| {statistics.median(ordered):.0f} | {percentile(ordered, 0.9):.0f} | {ordered[-1]:.0f} |",
        ]
    lines += [
        "",
        "`apply 100`: one apply of an entity and 100 feature tables into an empty registry. `list 1,000`: "
        "`list_feature_tables()` (Feast: `list_feature_views()`) with 1,000 tables, in a new client (cold: "
        "its first call) and then warm (median). `get`: `get_feature_table(name)` (Feast: `get_feature_view`) "
        "for random names. `/v1/health p99` (core service contenders): a `GET /v1/health`, which does no registry "
        "work, sent after each get on the same machine at the same moment: the floor the machine's load puts "
        "under any request's p99. Provender's reads check the project's version in the database on every call "
        "and decode the definitions only when it changed; Feast's defaults read the database on every call.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--list-calls", type=int, default=5)
    parser.add_argument("--get-calls", type=int, default=2000)
    parser.add_argument("--contenders", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--served-tables", type=int, default=10, help="apply-to-served samples per run (0: skip)")
    parser.add_argument("--no-save", action="store_true", help="print only, write nothing")
    parser.add_argument("--name", default="registry", help="results file name (results/NAME.json and .md)")
    args = parser.parse_args()
    report: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["benchmarks/registry.py", *sys.argv[1:]]),
        "machine": machine(),
        "runs": args.runs,
        "list_calls": args.list_calls,
        "get_calls": args.get_calls,
    }
    figures: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    per_run: dict[str, list[dict[str, float]]] = {}
    served_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="provender-bench-registry-") as tmp, postgres_server(Path(tmp)) as pg:
        chosen = contenders(pg, args)
        if args.contenders:
            chosen = {name: chosen[name] for name in args.contenders.split(",")}
        for run in range(args.runs):
            for name, contender in chosen.items():
                if name in errors:
                    continue
                scratch = Path(tmp) / f"{name}-{run}"
                scratch.mkdir()
                try:
                    measured = contender(run, scratch)
                except Exception as exc:  # noqa: BLE001 - report the contender's failure, keep the others
                    errors[name] = str(exc)
                    print(f"{name}: FAILED {exc}", file=sys.stderr)
                    continue
                measured["load_1min"] = round(os.getloadavg()[0], 2)
                per_run.setdefault(name, []).append(measured)
                shown = ", ".join(f"{LABELS[m]} {measured[m]:.2f}" for m in METRICS if m in measured)
                print(f"run {run + 1} {name}: {shown} (load {os.getloadavg()[0]:.1f})")
            if args.served_tables:
                scratch = Path(tmp) / f"served-{run}"
                scratch.mkdir()
                samples = apply_to_served(scratch, tables=args.served_tables)
                served_ms.extend(samples)
                print(f"run {run + 1} apply to served: " + ", ".join(f"{ms:.0f}" for ms in samples))
    for name, runs in per_run.items():
        figures[name] = {m: statistics.median(r[m] for r in runs) for m in METRICS if all(m in r for r in runs)}
    report["figures"], report["per_run"], report["errors"] = figures, per_run, errors
    report["served_ms"] = served_ms
    markdown = render_markdown(report)
    print(markdown)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / f"{args.name}.md").write_text(markdown)


if __name__ == "__main__":
    main()
