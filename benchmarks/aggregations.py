"""Benchmark: windowed aggregations (issue 16, "Performance").

**Historical.** 7-day and 30-day ``sum``/``count``/``mean`` of a fare over ``--events`` events
(``events / 100`` riders over 60 days) for ``--rows`` entity rows (a random rider at a random time
in the last 30 days), on the same Parquet files, each run in a fresh process, timing only the
retrieval (the result fully built as an Arrow table):

- ``provender``: ``Client.get_historical_features(refs, <entity rows Parquet path>).to_arrow()``
  (DuckDB engine; entity rows kept one for one, in order);
- ``duckdb-range-join``: the plain DuckDB formulation: the entity rows ``LEFT JOIN`` the events of
  their rider with ``T - 30 days < ts <= T`` (times as integer microseconds), ``GROUP BY`` entity
  row, each aggregate keeping its window by a ``FILTER``; in no particular order;
- ``feast-precomputed`` (``--peers feast``): Feast 0.67 has no windowed aggregation; its fairest
  equivalent is a precomputed table of the aggregates served by a point-in-time join. The table
  is computed by DuckDB (per rider and day, the aggregates over the 7 and 30 days ending at the
  end of that day: daily buckets summed by a window function over a dense rider x day grid) and
  read by Feast's ``duckdb`` offline store with ``ttl`` one day. Its values are as of the end of
  the last day before *T* (daily granularity), not exactly at *T*: it does less than the others.
  Both times are reported; its total is precompute + retrieval.

**Stream.** ``--stream-records`` Avro records (``benchmarks/stream.py``'s driver trips, 100,000
drivers, event time = produce time) are published to a 4-partition noida-db topic first; then one
process runs ``Client.start_stream_to_online_ingestion`` into Redis on a table with 7-day and
30-day ``sum``/``count``/``mean`` of ``trips_today`` (tiles, default batch settings), and the rate
is counted from its first record to its last. Freshness: write time minus event time of the
records written in the last seconds (``job.freshness_seconds()``) at the end, which includes
the time the records waited in the topic (a backlog): the steady-state freshness of stream
ingestion is measured by ``benchmarks/stream.py``.

Usage::

    .venv/bin/python benchmarks/aggregations.py --events 1000000 --rows 100000 --runs 3 --peers feast
    .venv/bin/python benchmarks/aggregations.py --events 10000000 --rows 1000000 --runs 1 --peers feast
    .venv/bin/python benchmarks/aggregations.py --stream-only --runs 3

Each invocation merges its figures into ``benchmarks/results/aggregations.json`` (by size) and
rewrites ``benchmarks/results/aggregations.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE / "data" / "aggregations"
FEAST_PYTHON = HERE / "peers" / "feast" / "bin" / "python"
END = datetime(2026, 6, 1, tzinfo=UTC)
DAYS = 60
WINDOWS = {"7d": 7, "30d": 30}
FUNCTIONS = ("sum", "count", "mean")
TARGET_RATIO = 1.5
TARGET_STREAM_RATE = 50_000
SPARK_UNCAPPED = "12g"  # --memory mode: Spark's driver heap (local mode: the executors' too) when not capped


def refs() -> list[str]:
    return [f"trips:fare_{f}_{w}" for w in WINDOWS for f in FUNCTIONS]


def ensure_data(events: int, rows: int) -> tuple[Path, Path]:
    """Generate (once) the events and entity rows as Parquet; return their paths."""
    import duckdb

    folder = DATA / f"e{events}_r{rows}"
    source, entity = folder / "events", folder / "entity_rows.parquet"
    if entity.exists():
        return source, entity
    source.mkdir(parents=True, exist_ok=True)
    riders = max(1, events // 100)
    span = DAYS * 86_400_000_000
    end_us = int(END.timestamp() * 1_000_000)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"COPY (SELECT (hash(i) % {riders})::BIGINT + 1 AS rider, "
        f"round((hash(i + 7) % 10000) / 100.0, 2)::DOUBLE AS fare, "
        f"make_timestamptz({end_us} - (hash(i + 13) % {span})::BIGINT) AS ts "
        f"FROM range({events}) t(i)) TO '{source / 'part-0.parquet'}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)"
    )
    window = 30 * 86_400_000_000
    con.execute(
        f"COPY (SELECT (hash(i + 1000003) % {riders})::BIGINT + 1 AS rider, "
        f"make_timestamptz({end_us} - (hash(i + 17) % {window})::BIGINT) AS event_timestamp "
        f"FROM range({rows}) t(i)) TO '{entity}' (FORMAT parquet)"
    )
    return source, entity


# -- contenders (each run in a fresh process: ``--role``) ------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def role_provender(
    source: str, entity: str, work: str, engine: str = "duckdb", memory_limit: str = "", out: str = ""
) -> dict[str, Any]:
    """Provender's retrieval; ``--memory`` mode: ``engine``, its memory cap, the result written to ``out``."""
    import yaml

    import provender as pv

    project = Path(work) / "project"
    project.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"project": "bench", "registry": "sqlite:///registry.db", "online": {"store": "memory"}}
    if engine == "duckdb":
        config["offline"] = {"engine": "duckdb", "temp_directory": str(Path(work) / "spill")}
        if memory_limit:
            config["offline"]["memory_limit"] = memory_limit
    elif engine == "spark":
        config["offline"] = {
            "engine": "spark",
            "master": "local[2]",
            "conf": {
                "spark.driver.memory": memory_limit or SPARK_UNCAPPED,
                "spark.local.dir": str(Path(work) / "spill"),
            },
        }
    (project / "provender.yaml").write_text(yaml.safe_dump(config))
    aggregations = [
        pv.Aggregation(column="fare", function=f, window=timedelta(days=days), name=f"fare_{f}_{w}")
        for w, days in WINDOWS.items()
        for f in FUNCTIONS
    ]
    table = pv.FeatureTable(
        name="trips",
        entities=["rider"],
        features=[pv.Feature("fare", pv.ValueType.DOUBLE)],
        batch_source=pv.FileSource(path=source, event_timestamp_column="ts"),
        aggregations=aggregations,
    )
    with pv.Client(config=project / "provender.yaml") as client:
        client.apply([pv.Entity(name="rider", value_type=pv.ValueType.INT64), table])
        cpu, started = cpu_seconds(), time.perf_counter()
        result = client.get_historical_features(refs(), entity).to_arrow()
        seconds = time.perf_counter() - started
    if out:
        import pyarrow.parquet as pq

        pq.write_table(result, out)
    return {"seconds": seconds, "cpu_s": cpu_seconds() - cpu, "rows": result.num_rows}


def range_join_sql(source: str, entity: str) -> str:
    """The plain DuckDB formulation (see the module docstring).

    Times are compared as integer microseconds (``epoch_us``): interval arithmetic on TIMESTAMPTZ
    goes through the ICU calendar row by row and made the same query 3x slower here.
    """
    day = 86_400_000_000
    aggregates = []
    for w, days in WINDOWS.items():
        keep = f"FILTER (WHERE v.t > e.at - {days * day})"
        aggregates += [
            f"sum(v.fare) {keep} AS fare_sum_{w}",
            f"count(v.fare) {keep} AS fare_count_{w}",
            f"avg(v.fare) {keep} AS fare_mean_{w}",
        ]
    return (
        f"SELECT any_value(e.rider) AS rider, any_value(e.event_timestamp) AS event_timestamp, {', '.join(aggregates)} "
        f"FROM (SELECT rider, event_timestamp, epoch_us(event_timestamp) AS at, row_number() OVER () AS rid "
        f"FROM read_parquet('{entity}')) e "
        f"LEFT JOIN (SELECT rider, fare, epoch_us(ts) AS t FROM read_parquet('{source}/*.parquet')) v "
        f"ON v.rider = e.rider AND v.t <= e.at AND v.t > e.at - {30 * day} GROUP BY e.rid"
    )


def role_range_join(
    source: str, entity: str, memory_limit: str = "", threads: str = "", temp: str = ""
) -> dict[str, Any]:
    """The plain DuckDB formulation; ``--memory-control``: under ``memory_limit`` with ``threads``."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET temp_directory = '{temp}'")
        con.execute("SET preserve_insertion_order = false")  # as Provender's DuckDB engine
    cpu, started = cpu_seconds(), time.perf_counter()
    result = con.sql(range_join_sql(source, entity)).to_arrow_table()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu_s": cpu_seconds() - cpu, "rows": result.num_rows}


FEAST_DRIVER = textwrap.dedent('''\
    """Feast 0.67: a precomputed daily table of the aggregates, then get_historical_features (duckdb store)."""
    import json, logging, resource, sys, time, warnings
    from datetime import timedelta
    from pathlib import Path

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    spec = json.loads(sys.argv[1])
    import duckdb, feast, pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    def cpu_s():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    work = Path(spec["work"])
    table = work / "daily.parquet"
    cpu, started = cpu_s(), time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""
        COPY (
          WITH buckets AS (
            SELECT rider, CAST(date_trunc('day', ts) AS DATE) AS day, sum(fare) AS s, count(fare) AS n
            FROM read_parquet('{spec["source"]}/*.parquet') GROUP BY ALL),
          grid AS (
            SELECT r.rider, d.day FROM (SELECT DISTINCT rider FROM buckets) r,
              (SELECT CAST(day AS DATE) AS day FROM range(
                 (SELECT min(day) FROM buckets), (SELECT max(day) FROM buckets) + 1, INTERVAL 1 DAY) t(day)) d),
          filled AS (
            SELECT g.rider, g.day, coalesce(b.s, 0) AS s, coalesce(b.n, 0) AS n
            FROM grid g LEFT JOIN buckets b USING (rider, day)),
          rolled AS (
            SELECT rider, day,
              sum(s) OVER w7 AS fare_sum_7d, sum(n) OVER w7 AS fare_count_7d,
              sum(s) OVER w30 AS fare_sum_30d, sum(n) OVER w30 AS fare_count_30d
            FROM filled
            WINDOW w7 AS (PARTITION BY rider ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW),
                   w30 AS (PARTITION BY rider ORDER BY day ROWS BETWEEN 29 PRECEDING AND CURRENT ROW))
          SELECT rider, CAST(day + 1 AS TIMESTAMPTZ) AS event_timestamp,
            CASE WHEN fare_count_7d > 0 THEN fare_sum_7d END AS fare_sum_7d, fare_count_7d,
            fare_sum_7d / nullif(fare_count_7d, 0) AS fare_mean_7d,
            CASE WHEN fare_count_30d > 0 THEN fare_sum_30d END AS fare_sum_30d, fare_count_30d,
            fare_sum_30d / nullif(fare_count_30d, 0) AS fare_mean_30d
          FROM rolled) TO '{table}' (FORMAT parquet)""")
    precompute = time.perf_counter() - started
    repo = work / "feast_repo"
    repo.mkdir(exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: bench\\n"
        f"registry: {repo / 'registry.db'}\\n"
        "provider: local\\n"
        f"online_store:\\n  type: sqlite\\n  path: {repo / 'online.db'}\\n"
        "offline_store:\\n  type: duckdb\\n"
        "entity_key_serialization_version: 3\\n"
    )
    rider = Entity(name="rider", join_keys=["rider"], value_type=ValueType.INT64)
    names = [f"fare_{f}_{w}" for w in ("7d", "30d") for f in ("sum", "count", "mean")]
    view = FeatureView(
        name="trips", entities=[rider], ttl=timedelta(days=1),
        schema=[Field(name="rider", dtype=Int64),
                *(Field(name=n, dtype=Int64 if "count" in n else Float64) for n in names)],
        source=FileSource(path=str(table), timestamp_field="event_timestamp"),
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([rider, view])
    entity_df = pd.read_parquet(spec["entity"])
    cpu_r, started = cpu_s(), time.perf_counter()
    result = store.get_historical_features(entity_df=entity_df, features=[f"trips:{n}" for n in names]).to_arrow()
    retrieval = time.perf_counter() - started
    print("@@RESULT " + json.dumps({
        "seconds": precompute + retrieval, "precompute_s": precompute, "retrieval_s": retrieval,
        "cpu_s": cpu_s() - cpu, "rows": result.num_rows,
        "info": {"feast": feast.__version__, "duckdb": duckdb.__version__}}), flush=True)
''')


def run_child(contender: str, source: Path, entity: Path, timeout: float) -> dict[str, Any]:
    """One run of a contender in a fresh process; returns its figures (or an error)."""
    with tempfile.TemporaryDirectory(prefix="provender-agg-") as work:
        if contender == "feast-precomputed":
            if not FEAST_PYTHON.exists():
                return {"error": f"{FEAST_PYTHON} is missing: run `bash benchmarks/peers_setup.sh feast`"}
            script = Path(work) / "feast_driver.py"
            script.write_text(FEAST_DRIVER)
            spec = json.dumps({"source": str(source), "entity": str(entity), "work": work})
            argv = [str(FEAST_PYTHON), str(script), spec]
        else:
            argv = [sys.executable, __file__, "--role", contender, str(source), str(entity), work]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        for line in done.stdout.splitlines():
            if line.startswith("@@RESULT "):
                figures: dict[str, Any] = json.loads(line[len("@@RESULT ") :])
                return figures
        return {"error": (done.stderr or done.stdout)[-2000:]}


def historical(args: argparse.Namespace) -> dict[str, Any]:
    source, entity = ensure_data(args.events, args.rows)
    contenders = ["provender", "duckdb-range-join"] + (["feast-precomputed"] if args.peers == "feast" else [])
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    for n in range(args.runs):
        for contender in contenders:
            figures = run_child(contender, source, entity, args.timeout)
            runs[contender].append(figures)
            shown = f"{figures['seconds']:.2f} s" if "seconds" in figures else figures["error"][-300:]
            print(f"  run {n + 1} {contender}: {shown}", flush=True)
    summary: dict[str, Any] = {}
    for contender, results in runs.items():
        good = [r for r in results if "seconds" in r]
        if not good:
            summary[contender] = {"error": results[-1].get("error")}
            continue
        summary[contender] = {
            "median_s": statistics.median(r["seconds"] for r in good),
            "min_s": min(r["seconds"] for r in good),
            "max_s": max(r["seconds"] for r in good),
            "cpu_s": statistics.median(r["cpu_s"] for r in good),
            "rows": good[0]["rows"],
            "runs": len(good),
        }
        if contender == "feast-precomputed":
            summary[contender]["precompute_s"] = statistics.median(r["precompute_s"] for r in good)
            summary[contender]["retrieval_s"] = statistics.median(r["retrieval_s"] for r in good)
            summary[contender]["info"] = good[0]["info"]
    base = summary["provender"].get("median_s")
    for figures in summary.values():
        if base and "median_s" in figures:
            figures["x_provender"] = figures["median_s"] / base
    floor = summary["duckdb-range-join"].get("median_s")
    return {
        "events": args.events,
        "riders": max(1, args.events // 100),
        "entity_rows": args.rows,
        "runs": args.runs,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "contenders": summary,
        "x_range_join": base / floor if base and floor else None,
        "target_x_range_join": TARGET_RATIO,
    }


# -- memory (out-of-core) --------------------------------------------------------------------------


def _process_tree(root: int) -> list[int]:
    """``root`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(path, name)).st_size
    return total


def run_measured(argv: list[str], spill: Path, timeout: float) -> dict[str, Any]:
    """Run ``argv`` sampling (every 0.2 s) its process tree's RSS and CPU and the size of ``spill``.

    CPU is the sum over every process of the tree of its last sampled user + system time (the JVM
    of Spark's local mode included); RSS the peak of the tree's summed resident memory.
    """
    page = os.sysconf("SC_PAGE_SIZE")
    ticks = os.sysconf("SC_CLK_TCK")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_rss = peak_spill = 0
    cpu: dict[int, float] = {}
    started = time.monotonic()
    while process.poll() is None:
        if time.monotonic() - started > timeout:
            process.kill()
            process.communicate()
            return {"error": f"timed out after {timeout:.0f} s"}
        rss = 0
        for pid in _process_tree(process.pid):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks
        peak_rss = max(peak_rss, rss)
        peak_spill = max(peak_spill, _folder_bytes(spill))
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    for line in stdout.splitlines():
        if line.startswith("@@RESULT "):
            figures: dict[str, Any] = json.loads(line[len("@@RESULT ") :])
            figures |= {"peak_rss_mb": peak_rss / 2**20, "peak_spill_mb": peak_spill / 2**20}
            figures["tree_cpu_s"] = sum(cpu.values())
            figures["process_s"] = time.monotonic() - started
            return figures
    return {"error": (stderr or stdout)[-2000:]}


def compare_results(left: Path, right: Path) -> dict[str, Any]:
    """Compare two retrieval results row for row (entity rows keep their order).

    Counts must be equal; sums and means may differ in the last bits (floating-point additions in
    another order): the largest relative difference is reported, and the number of unequal values.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    a, b = pq.read_table(left), pq.read_table(right)
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return {"equal": False, "why": f"shapes differ: {a.schema} {a.shape} / {b.schema} {b.shape}"}
    unequal, worst = 0, 0.0
    for name in a.schema.names:
        x, y = a.column(name), b.column(name)
        if x.equals(y):
            continue
        if not pa.types.is_floating(x.type) or not x.is_null().equals(y.is_null()):
            return {"equal": False, "why": f"{name} differs"}
        differ = pc.fill_null(pc.not_equal(x, y), False)
        unequal += pc.sum(differ).as_py() or 0
        scale = pc.max_element_wise(pc.abs(x), pc.abs(y))
        relative = pc.divide(pc.abs(pc.subtract(x, y)), pc.max_element_wise(scale, 1e-300))
        worst = max(worst, pc.max(relative).as_py() or 0.0)
    return {"equal": worst <= 1e-9, "float_values_unequal": unequal, "max_rel_diff": worst}


def memory(args: argparse.Namespace) -> dict[str, Any]:
    """``--memory``: Provender's retrieval uncapped, then under ``--memory-limit``, on ``--engine``."""
    source, entity = ensure_data(args.events, args.rows)
    keep = Path(tempfile.mkdtemp(prefix="provender-agg-mem-"))
    load_before = os.getloadavg()[0]
    caps = ["", *args.memory_limit]
    runs: dict[str, list[dict[str, Any]]] = {cap or "uncapped": [] for cap in caps}
    for n in range(args.runs):
        for cap in caps:
            label = cap or "uncapped"
            with tempfile.TemporaryDirectory(prefix="provender-agg-") as work:
                out = keep / f"{label}-{n}.parquet"
                argv = [sys.executable, __file__, "--role", "provender", str(source), str(entity), work,
                        args.engine, cap, str(out)]  # fmt: skip
                figures = run_measured(argv, Path(work) / "spill", args.timeout)
            if "seconds" in figures and out.name != "uncapped-0.parquet" and (keep / "uncapped-0.parquet").exists():
                figures["vs_uncapped"] = compare_results(keep / "uncapped-0.parquet", out)
            runs[label].append(figures)
            shown = (
                f"{figures['seconds']:.1f} s, peak RSS {figures['peak_rss_mb']:,.0f} MB, "
                f"spill {figures['peak_spill_mb']:,.0f} MB, {figures.get('vs_uncapped', '')}"
                if "seconds" in figures
                else figures["error"][-600:]
            )
            print(f"  run {n + 1} {args.engine} {label}: {shown}", flush=True)
    shutil.rmtree(keep)  # the results compared
    summary: dict[str, Any] = {}
    for label, results in runs.items():
        good = [r for r in results if "seconds" in r]
        if not good:
            summary[label] = {"error": results[-1].get("error")}
            continue
        summary[label] = {
            "median_s": statistics.median(r["seconds"] for r in good),
            "cpu_s": statistics.median(r["tree_cpu_s"] for r in good),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in good),
            "peak_spill_mb": max(r["peak_spill_mb"] for r in good),
            "rows": good[0]["rows"],
            "runs": len(good),
            "failed_runs": len(results) - len(good),
        }
        compared = [r["vs_uncapped"] for r in good if "vs_uncapped" in r]
        if compared:
            summary[label]["equal_to_uncapped"] = all(c["equal"] for c in compared)
            summary[label]["max_rel_diff"] = max(c.get("max_rel_diff", 0.0) for c in compared)
            summary[label]["float_values_unequal"] = max(c.get("float_values_unequal", 0) for c in compared)
            summary[label]["compare"] = compared[0]
    return {
        "engine": args.engine,
        "events": args.events,
        "entity_rows": args.rows,
        "memory_limit": args.memory_limit,
        "uncapped": "DuckDB default (80% of RAM)"
        if args.engine == "duckdb"
        else f"spark.driver.memory {SPARK_UNCAPPED}",
        "runs": args.runs,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": summary,
    }


def memory_control(args: argparse.Namespace) -> dict[str, Any]:
    """``--memory-control``: the plain DuckDB range join (no Provender) under each cap, 2 then 1 threads."""
    source, entity = ensure_data(args.events, args.rows)
    control: dict[str, Any] = {}
    for cap in args.memory_limit:
        for threads in (2, 1):
            with tempfile.TemporaryDirectory(prefix="provender-agg-") as work:
                argv = [sys.executable, __file__, "--role", "duckdb-range-join", str(source), str(entity), work,
                        cap, str(threads), str(Path(work) / "spill")]  # fmt: skip
                figures = run_measured(argv, Path(work) / "spill", args.timeout)
            if "error" in figures:
                figures["error"] = error_line(figures["error"])
            figures["load"] = os.getloadavg()[0]
            control[f"{cap}, {threads} thread{'s' if threads > 1 else ''}"] = figures
            print(f"  control {cap}, {threads} threads: {figures}", flush=True)
    return control


def error_line(text: str) -> str:
    """The line of a traceback that says what failed (the last one naming an error), else its end."""
    lines = [line for line in text.splitlines() if "Error:" in line or "Exception:" in line]
    if not lines:
        return text[-200:]
    phrase = re.search(r"[A-Z][\w ]* Error: .*", lines[-1])  # DuckDB's "Out of Memory Error: ..."
    return phrase.group(0) if phrase else lines[-1].strip()


# -- stream --------------------------------------------------------------------------------------


def stream(args: argparse.Namespace, drivers: int) -> dict[str, Any]:
    import redis
    import stream as stream_bench  # benchmarks/stream.py: services, topic, producer

    stream_bench.DRIVERS = drivers  # the producer's key cardinality
    results = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="provender-agg-stream-") as tmp:
        workdir = Path(tmp)
        with stream_bench.services(workdir) as (bootstrap, redis_url):
            for n in range(args.runs):
                topic = f"agg-{uuid.uuid4().hex[:8]}"
                stream_bench.create_topic(bootstrap, topic)
                stream_bench.role_produce(bootstrap, topic, args.stream_records, 0)
                server = redis.Redis.from_url(redis_url, socket_timeout=300)  # a loaded machine: a flush may take long
                server.flushall()
                redis_cpu = _redis_cpu(server)
                done = subprocess.run(
                    [sys.executable, __file__, "--role", "stream-consume", bootstrap, topic, redis_url,
                     str(workdir / f"run{n}"), str(args.stream_records)],
                    capture_output=True, text=True, timeout=args.timeout, check=False,
                )  # fmt: skip
                line = next((x for x in done.stdout.splitlines() if x.startswith("@@RESULT ")), None)
                figures: dict[str, Any] = json.loads(line[9:]) if line else {"error": done.stderr[-2000:]}
                figures["redis_cpu_s"] = _redis_cpu(server) - redis_cpu  # the whole consume, start-up included
                server.close()
                print(f"  stream run {n + 1}: {figures.get('rate', figures.get('error'))}", flush=True)
                results.append(figures)
    good = [r for r in results if "rate" in r]
    return {
        "records": args.stream_records,
        "drivers": drivers,
        "runs": len(good),
        "rate_median": statistics.median(r["rate"] for r in good) if good else None,
        "rates": [r["rate"] for r in good],
        "records_per_cpu_second": statistics.median(r["records_per_cpu_second"] for r in good) if good else None,
        "freshness_p50_s": statistics.median(r["freshness"][0] for r in good if r["freshness"]) if good else None,
        "redis_cpu_us_per_record": statistics.median(r["redis_cpu_s"] for r in good) / args.stream_records * 1e6
        if good
        else None,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target_rate": TARGET_STREAM_RATE,
        "errors": [r["error"] for r in results if "error" in r],
    }


def _redis_cpu(server: Any) -> float:
    """The Redis server's CPU seconds so far (user + system)."""
    cpu = server.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def role_stream_consume(bootstrap: str, topic: str, redis_url: str, workdir: str, records: int) -> dict[str, Any]:
    import gc

    import stream as stream_bench
    import yaml

    import provender as pv

    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"project": "bench", "registry": "sqlite:///registry.db", "online": {"store": "redis", "url": redis_url}}
    (folder / "provender.yaml").write_text(yaml.safe_dump(config))
    client = pv.Client(config=folder / "provender.yaml")
    aggregations = [
        pv.Aggregation(column="trips_today", function=f, window=timedelta(days=days), name=f"trips_{f}_{w}")
        for w, days in WINDOWS.items()
        for f in FUNCTIONS
    ]
    table = pv.FeatureTable(
        name="driver_trips",
        entities=["driver_id"],
        features=[
            pv.Feature("trips_today", pv.ValueType.INT32),
            pv.Feature("conv_rate", pv.ValueType.FLOAT),
            pv.Feature("acc_rate", pv.ValueType.FLOAT),
            pv.Feature("avg_daily_trips", pv.ValueType.INT32),
            pv.Feature("rating", pv.ValueType.DOUBLE),
        ],
        stream_source=pv.KafkaSource(
            bootstrap_servers=bootstrap,
            topic=topic,
            message_format=pv.AvroFormat(json.dumps(stream_bench.SCHEMA)),
            event_timestamp_column="event_ts",
        ),
        batch_source=pv.FileSource(path=str(folder / "log"), event_timestamp_column="event_timestamp"),
        aggregations=aggregations,
    )
    client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), table])
    job = client.start_stream_to_online_ingestion("driver_trips", group_id=f"bench-{uuid.uuid4().hex}")
    gc.freeze()
    first_at = first_count = None
    first_cpu = 0.0
    while job.records_consumed < records:
        if job.is_done:
            job.wait()
        if first_at is None and job.records_consumed:
            first_at, first_count, first_cpu = time.monotonic(), job.records_consumed, cpu_seconds()
        time.sleep(0.002)
    ended, cpu = time.monotonic(), cpu_seconds() - first_cpu
    freshness = job.freshness_seconds((0.5, 0.99))
    job.stop()
    client.close()
    if first_at is None or first_count is None or first_count >= job.records_consumed:
        raise SystemExit(
            f"the job read all {records:,} records before a second look at its counters: nothing to time; "
            "use a larger --stream-records (the default is 300,000)"
        )
    return {
        "rate": (job.records_consumed - first_count) / (ended - first_at),
        "records_per_cpu_second": (job.records_consumed - first_count) / cpu,
        "seconds": ended - first_at,
        "too_late": job.records_too_late,
        "freshness": list(freshness) if freshness else None,
    }


# -- report --------------------------------------------------------------------------------------


def load() -> dict[str, Any]:
    path = RESULTS / "aggregations.json"
    return json.loads(path.read_text()) if path.exists() else {"historical": {}, "stream": {}}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Windowed aggregations benchmark",
        "",
        "Generated by `benchmarks/aggregations.py` from `aggregations.json`; do not edit by hand. Run on a",
        "shared 2-core machine under load from other work (load averages below): wall times are noisy;",
        "medians of the runs, each in a fresh process, timing only the retrieval. 7-day and 30-day",
        "sum/count/mean of one column (6 features). `x Provender` is a contender's median over Provender's.",
        "",
    ]
    for key in sorted(report["historical"], key=lambda k: report["historical"][k]["events"]):
        h = report["historical"][key]
        lines += [
            f"## {h['events']:,} events ({h['riders']:,} riders, 60 days), {h['entity_rows']:,} entity rows",
            "",
            f"{h['runs']} run(s) per contender; load average {h['load_before']:.1f} before, "
            f"{h['load_after']:.1f} after; run {h.get('at', '?')}.",
            "",
            "| contender | median s | min s | max s | CPU s | rows | x Provender |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, c in h["contenders"].items():
            if "median_s" not in c:
                lines.append(f"| {name} | failed: {str(c.get('error'))[:80]} | | | | | |")
                continue
            lines.append(
                f"| {name} | {c['median_s']:.2f} | {c['min_s']:.2f} | {c['max_s']:.2f} | {c['cpu_s']:.1f} | "
                f"{c['rows']:,} | {c.get('x_provender', 0):.2f} |"
            )
        feast = h["contenders"].get("feast-precomputed", {})
        if "precompute_s" in feast:
            lines += [
                "",
                f"- feast-precomputed: precompute (DuckDB) {feast['precompute_s']:.2f} s + Feast "
                f"{feast['info']['feast']} retrieval {feast['retrieval_s']:.2f} s; its values are as of the end "
                "of the previous day (daily granularity), not exact at T.",
            ]
        if h.get("x_range_join"):
            verdict = "met" if h["x_range_join"] <= TARGET_RATIO else "NOT met"
            lines += [
                f"- Provender / plain DuckDB range join: {h['x_range_join']:.2f}x "
                f"(target <= {TARGET_RATIO}x: {verdict})."
            ]
        lines.append("")
    if report.get("memory"):
        lines += [
            "## Out-of-core: Provender's retrieval under a memory cap (`--memory`)",
            "",
            "The same retrieval (Provender's, 6 features) uncapped, then with the engine's memory capped",
            "(DuckDB: `offline.memory_limit`, spilling to `offline.temp_directory`; Spark in `local[2]`",
            "mode: `spark.driver.memory`, the heap of the one JVM running driver and executors, spilling",
            "to `spark.local.dir`). Peak RSS: the benchmark process tree (Python and, for Spark, the JVM)",
            "sampled every 0.2 s; CPU: the tree's user + system seconds, start-up included; spill: the",
            "peak size of the temporary folder (for Spark it also holds the shuffle files, written",
            "with or without a cap). `equal`: the result compared row for row with the first uncapped run's",
            "(the uncapped row: its later runs): counts equal, sums and means within 1e-9 relative (floating-",
            "point sums in another order differ in the last bits, capped or not: the count of such values).",
            "",
            "| engine | events | entity rows | memory | runs | median s | CPU s | peak RSS MB | spill MB | equal "
            "| load |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in report["memory"].values():
            load = f"{m['load_before']:.1f} / {m['load_after']:.1f}"
            for label, r in m["results"].items():
                shown = label if label != "uncapped" else f"uncapped ({m['uncapped']})"
                if "median_s" not in r:
                    lines.append(
                        f"| {m['engine']} | {m['events']:,} | {m['entity_rows']:,} | {shown} | 0 | "
                        f"failed: {error_line(str(r.get('error')))[:100]} | | | | | {load} |"
                    )
                    continue
                equal = {True: "yes", False: "NO"}.get(r.get("equal_to_uncapped"), "-")
                if r.get("max_rel_diff"):
                    equal += f" ({r['float_values_unequal']:,} floats differ, max rel {r['max_rel_diff']:.0e})"
                lines.append(
                    f"| {m['engine']} | {m['events']:,} | {m['entity_rows']:,} | {shown} | {r['runs']} | "
                    f"{r['median_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:,.0f} | {r['peak_spill_mb']:,.0f} | "
                    f"{equal} | {load} |"
                )
        lines += [f"\nRuns at: {', '.join(m['at'] for m in report['memory'].values())}.", ""]
        for m in report["memory"].values():
            for label, c in (m.get("control") or {}).items():
                outcome = (
                    f"completed in {c['seconds']:.1f} s (CPU {c['tree_cpu_s']:.1f} s), "
                    f"peak RSS {c['peak_rss_mb']:,.0f} MB, "
                    f"spill {c['peak_spill_mb']:,.0f} MB"
                    if "seconds" in c
                    else f"failed: {c['error'][:120]}"
                )
                lines.append(
                    f"- Control, the plain DuckDB range join (no Provender), {m['events']:,} events, "
                    f"`memory_limit` {label}: {outcome} (load {c['load']:.1f})."
                )
        lines.append("")
    for s in (report.get("stream") or {}).values():
        verdict = "met" if s["rate_median"] and s["rate_median"] >= TARGET_STREAM_RATE else "NOT met"
        lines += [
            f"## Stream aggregation into Redis (tiles), {s['drivers']:,} drivers",
            "",
            f"{s['records']:,} Avro records ({s['drivers']:,} drivers, so about "
            f"{max(1.0, 10_000 / s['drivers']):,.0f} record(s) per key per 10,000-record micro-batch) from",
            "noida-db into Redis, one process, a table with 7-day and 30-day sum/count/mean (tiles); rate from",
            "the first record to the last.",
            "",
            f"- rate: median {s['rate_median']:,.0f} records/s over {s['runs']} runs "
            f"({', '.join(f'{r:,.0f}' for r in s['rates'])}); target >= {TARGET_STREAM_RATE:,}/s: {verdict}.",
            f"- records per CPU second of the consumer process: {s['records_per_cpu_second']:,.0f}; Redis server "
            f"CPU per record: {s['redis_cpu_us_per_record']:.1f} us."
            if s.get("redis_cpu_us_per_record") is not None
            else f"- records per CPU second: {s['records_per_cpu_second']:,.0f}.",
            f"- load average {s['load_before']:.1f} before, {s['load_after']:.1f} after; run {s['at']}."
            if "load_before" in s
            else "- load average: not recorded.",
            f"- freshness p50 at the end of the backlog: {s['freshness_p50_s']:.2f} s (includes the time records "
            "waited in the topic; steady-state freshness: `benchmarks/results/stream.md`).",
            "",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peers", choices=["feast"], default=None)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--stream-records", type=int, default=300_000)
    parser.add_argument("--drivers", type=int, nargs="+", default=[100_000, 1_000])
    parser.add_argument("--stream-only", action="store_true")
    parser.add_argument("--no-stream", action="store_true")
    parser.add_argument("--memory", action="store_true", help="only Provender's retrieval, uncapped then capped")
    parser.add_argument(
        "--memory-control", action="store_true", help="the plain DuckDB range join under each --memory-limit"
    )
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb", help="--memory: the engine")
    parser.add_argument(
        "--memory-limit", nargs="+", default=["1GB"], help="--memory: DuckDB memory_limit / spark.driver.memory"
    )
    parser.add_argument("--role", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role, *rest = args.role
        if role == "provender":
            figures = role_provender(*rest)
        elif role == "duckdb-range-join":
            figures = role_range_join(*rest[:2], *rest[3:])
        else:
            figures = role_stream_consume(rest[0], rest[1], rest[2], rest[3], int(rest[4]))
        print("@@RESULT " + json.dumps(figures), flush=True)
        return
    sys.path.insert(0, str(HERE))
    report = load()
    report["machine"] = f"{os.cpu_count()} cores, {platform.platform()}"
    if args.memory_control:
        key = f"duckdb_e{args.events}_r{args.rows}"
        print(f"memory control: plain DuckDB range join, caps {args.memory_limit}")
        entry = report.setdefault("memory", {})[key]
        entry["control"] = {**entry.get("control", {}), **memory_control(args)}
    elif args.memory:
        print(f"memory: {args.engine}, {args.events:,} events, {args.rows:,} entity rows, caps {args.memory_limit}")
        report.setdefault("memory", {})[f"{args.engine}_e{args.events}_r{args.rows}"] = memory(args)
    elif not args.stream_only:
        print(f"historical: {args.events:,} events, {args.rows:,} entity rows, {args.runs} run(s)", flush=True)
        result = historical(args)
        result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
        report["historical"][f"e{args.events}_r{args.rows}"] = result
    if not args.no_stream and not args.memory and not args.memory_control:
        report["stream"] = report.get("stream") or {}
        for drivers in args.drivers:
            print(f"stream: {args.stream_records:,} records over {drivers:,} drivers, {args.runs} run(s)", flush=True)
            measured = stream(args, drivers)
            if not measured["runs"]:  # keep the recorded figures rather than a run with none
                raise SystemExit(f"stream with {drivers:,} drivers: every run failed: {measured['errors']}")
            report["stream"][str(drivers)] = measured
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "aggregations.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "aggregations.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
