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
import json
import os
import platform
import resource
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


def role_provender(source: str, entity: str, work: str) -> dict[str, Any]:
    import yaml

    import provender as pv

    project = Path(work) / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "provender.yaml").write_text(
        yaml.safe_dump({"project": "bench", "registry": "sqlite:///registry.db", "online": {"store": "memory"}})
    )
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


def role_range_join(source: str, entity: str) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
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
                figures = json.loads(line[9:]) if line else {"error": done.stderr[-2000:]}
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
    assert first_at is not None and first_count is not None
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
    parser.add_argument("--role", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role, *rest = args.role
        if role == "provender":
            figures = role_provender(*rest)
        elif role == "duckdb-range-join":
            figures = role_range_join(*rest[:2])
        else:
            figures = role_stream_consume(rest[0], rest[1], rest[2], rest[3], int(rest[4]))
        print("@@RESULT " + json.dumps(figures), flush=True)
        return
    sys.path.insert(0, str(HERE))
    report = load()
    report["machine"] = f"{os.cpu_count()} cores, {platform.platform()}"
    if not args.stream_only:
        print(f"historical: {args.events:,} events, {args.rows:,} entity rows, {args.runs} run(s)", flush=True)
        result = historical(args)
        result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
        report["historical"][f"e{args.events}_r{args.rows}"] = result
    if not args.no_stream:
        report["stream"] = report.get("stream") or {}
        for drivers in args.drivers:
            print(f"stream: {args.stream_records:,} records over {drivers:,} drivers, {args.runs} run(s)", flush=True)
            report["stream"][str(drivers)] = stream(args, drivers)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "aggregations.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "aggregations.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
