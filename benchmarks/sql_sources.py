"""A SQL source over object-store inputs: reading what the query needs against reading its inputs whole.

The ``driver_hourly_stats`` table of ``_data.py`` (S: 1M rows over 90 days, hive date partitions)
in an S3-compatible server (moto, on loopback, behind the byte-counting proxy of ``_s3.py``),
as Parquet (``s3-parquet``) and as a Delta table with one file per day (``s3-delta``), is the
input ``stats`` of a SQL source joining a local ``drivers`` table (10k rows)::

    SELECT s.*, d.city FROM stats AS s JOIN drivers AS d ON s.driver_id = d.driver_id WHERE d.active

and the feature table over it declares ``conv_rate`` and ``city`` (so ``acc_rate`` and
``avg_daily_trips`` are not needed). Contenders, in the same process and run:

- ``planned``: the inputs read as now (``provender.offline.sql_source.open_inputs``): the
  columns the query needs, and the stats' partitions, Delta files and rows of the read's window
  (the result's event time is the input's ``event_timestamp`` unchanged);
- ``whole``: the planning switched off (every input read whole, the query as declared): what a
  SQL source cost before.

Measured on the DuckDB and the Spark (``local[2]``) engines, medians of ``--runs`` (3): historical
retrieval of the 100k entity rows (max_age 7 days) -> Arrow, the same for the entity rows of
the last 7 days (``retrieval-last-7d``: the window then covers 14 of the 90 days), and
offline-to-online ingestion (Redis) of the last 7 days. On Spark the first is left out: its
window spans the 90 days (nothing to prune) and it takes over a minute a run on this machine.
Time is wall time; CPU is this process's and its children's (the Spark JVM, moto, the proxy,
Redis), from ``/proc``; bytes are those the S3 server answered; Spark's staged rows are counted as they are
copied. Answers are compared between ``planned`` and ``whole``.

Usage: ``python benchmarks/sql_sources.py [--size S] [--runs 3] [--engines duckdb,spark]``. Writes
``results/sql_sources.json`` and ``results/sql_sources.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from _data import DRIVER_STATS, SIZES, ensure_scenario  # noqa: E402
from _s3 import END, INGEST_START, counting_proxy, driver_source, moto, prepare, s3_client  # noqa: E402
from _services import redis_server  # noqa: E402

if TYPE_CHECKING:
    import provender as pv

SPARK: dict[str, object] = {"engine": "spark", "master": "local[2]", "conf": {"spark.driver.memory": "4g"}}
ENGINES: dict[str, dict[str, object]] = {"duckdb": {"engine": "duckdb"}, "spark": SPARK}
KINDS = ("s3-parquet", "s3-delta")
SPARK_KINDS = list(KINDS)  # --spark-kinds
QUERY = "SELECT s.*, d.city FROM stats AS s JOIN drivers AS d ON s.driver_id = d.driver_id WHERE d.active"
REFS = [f"{DRIVER_STATS.name}:conv_rate", f"{DRIVER_STATS.name}:city"]
REDIS: list[str] = []  # the online store's URL (Spark's executors cannot write SQLite)
STAGED_ROWS: list[int] = [0]  # rows copied by Spark staging during the current measure()


def tree_cpu() -> float:
    """CPU seconds (user + system) of this process and every descendant alive (Linux ``/proc``)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    mine, total = {os.getpid()}, 0.0
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                changed = True
    for pid in mine:
        total += times.get(pid, 0.0)
    return total


def _read_whole(*_: object, **__: object) -> None:
    return None  # no plan: every input read whole, the query as declared


@contextlib.contextmanager
def mode(name: str) -> Iterator[None]:
    """``whole``: switch the planning off (every input read whole), as before it existed."""
    from provender.offline import sql_source

    namespace = vars(sql_source)  # plan_reads as sql_source looks it up (imported from provender.definitions.sql)
    planner = namespace["plan_reads"]
    if name == "whole":
        namespace["plan_reads"] = _read_whole
    try:
        yield
    finally:
        namespace["plan_reads"] = planner


def count_staging() -> None:
    """Count the rows Spark's staging copies (SQL source inputs and staged batch sources)."""
    with contextlib.suppress(ImportError):
        from provender.offline.spark import sources as spark_sources

        copy = spark_sources._copy_to_staging

        def counted(data: Any, name: str, context: Any) -> list[str]:
            files = copy(data, name, context)
            STAGED_ROWS[0] += sum(
                pq.read_metadata(path, filesystem=context.staging.fs).num_rows for path in _arrow_files(context, name)
            )
            return files

        spark_sources._copy_to_staging = counted


def _arrow_files(context: Any, name: str) -> list[str]:
    import pyarrow.fs as pafs

    base = context.staging.arrow_path(name)
    infos = context.staging.fs.get_file_info(pafs.FileSelector(base, recursive=True))
    return [i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")]


def drivers_table(work: Path, stats: Path) -> Path:
    ids = pc.unique(pq.read_table(stats, columns=["driver_id"])["driver_id"]).sort()
    n = len(ids)
    table = pa.table(
        {
            "driver_id": ids,
            "city": pa.array([f"city-{i % 97}" for i in range(n)]),
            "active": pa.array([i % 10 != 0 for i in range(n)]),
        }
    )
    path = work / "drivers.parquet"
    pq.write_table(table, path)
    return path


def client(project: Path, url: str, source: str, kind: str, drivers: Path, offline: dict[str, object]) -> pv.Client:
    import provender as pv

    c = s3_client(project, url, {"offline": offline, "online": {"store": "redis", "url": REDIS[0]}})
    table = pv.FeatureTable(
        name=DRIVER_STATS.name,
        entities=[DRIVER_STATS.key],
        features=[pv.Feature("conv_rate", pv.ValueType.FLOAT), pv.Feature("city", pv.ValueType.STRING)],
        batch_source=pv.SqlSource(
            query=QUERY,
            sources={
                "stats": driver_source(source, kind),
                "drivers": pv.FileSource(path=str(drivers), event_timestamp_column="since"),
            },
            event_timestamp_column="event_timestamp",
            created_timestamp_column="created",
        ),
        max_age=DRIVER_STATS.max_age,
    )
    c.apply([pv.Entity(name=DRIVER_STATS.key, value_type=pv.ValueType.INT64), table])
    return c


def measure(counter: Any, work: Callable[[], Any]) -> dict[str, Any]:
    STAGED_ROWS[:] = [0]
    served, started, cpu = counter.value, time.perf_counter(), tree_cpu()
    result = work()
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": tree_cpu() - cpu,
        "served_bytes": counter.value - served,
        "staged_rows": STAGED_ROWS[0],
        "result": result,
    }


def checksum(table: pa.Table) -> str:
    rows = table.select(
        ["driver_id", "event_timestamp", f"{DRIVER_STATS.name}__conv_rate", f"{DRIVER_STATS.name}__city"]
    )
    rows = rows.sort_by([("driver_id", "ascending"), ("event_timestamp", "ascending")])
    return str(hash(tuple(tuple(c.to_pylist()) for c in rows.columns)))


def recent(entity: pa.Table) -> pa.Table:
    """The entity rows of the last 7 days (a training set of recent rows)."""
    return entity.filter(
        pc.greater_equal(entity["event_timestamp"], pa.scalar(INGEST_START, entity["event_timestamp"].type))
    )


def run_once(
    work: Path,
    proxy: tuple[str, Any],
    sources: dict[str, str],
    drivers: Path,
    entity: pa.Table,
    engines: list[str],
    run: int,
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for engine in engines:
        for kind in KINDS if engine != "spark" else SPARK_KINDS:
            for name in ("planned", "whole") if run % 2 == 0 else ("whole", "planned"):
                project = work / f"{engine}-{kind}-{name}-{run}"
                with client(project, proxy[0], sources[kind], kind, drivers, ENGINES[engine]) as c, mode(name):
                    retrievals = [("retrieval", entity), ("retrieval-last-7d", recent(entity))]
                    for operation, rows in retrievals[1:] if engine == "spark" else retrievals:

                        def retrieve(rows: pa.Table = rows) -> pa.Table:
                            return c.get_historical_features(REFS, rows).to_arrow()

                        got = measure(proxy[1], retrieve)
                        table = got.pop("result")
                        found[f"{operation}/{engine}/{kind}/{name}"] = got | {
                            "rows": table.num_rows,
                            "checksum": checksum(table),
                        }
                    got = measure(proxy[1], lambda: c.start_offline_to_online_ingestion(
                        DRIVER_STATS.name, start=INGEST_START, end=END).wait())  # fmt: skip
                    job = got.pop("result")
                    online = c.get_online_features(REFS, [{"driver_id": k} for k in range(1_001, 1_101)]).to_dict()
                    found[f"ingestion/{engine}/{kind}/{name}"] = got | {
                        "rows": job.rows_written, "checksum": str(hash(json.dumps(online, sort_keys=True, default=str)))
                    }  # fmt: skip
    return found


def warm_up(
    work: Path, proxy: tuple[str, Any], sources: dict[str, str], drivers: Path, entity: pa.Table, engines: list[str]
) -> None:
    """Start each engine (Spark's JVM) and run one small untimed retrieval."""
    for engine in engines:
        with client(
            work / f"warm-{engine}", proxy[0], sources["s3-parquet"], "s3-parquet", drivers, ENGINES[engine]
        ) as c:
            c.get_historical_features(REFS, entity.slice(0, 1000)).to_arrow()


def report(size: str, engines: list[str], runs: list[dict[str, Any]], load: dict[str, list[float]]) -> dict[str, Any]:
    keys = list(runs[0])
    fields = ("seconds", "cpu_seconds", "served_bytes", "staged_rows", "rows")
    summary = {k: {f: statistics.median(r[k][f] for r in runs) for f in fields} for k in keys}
    same = all(
        len({r[k]["checksum"] for r in runs for k in (key, key.replace("/planned", "/whole"))}) == 1
        for key in keys
        if key.endswith("/planned")
    )
    ratios = {}
    for key in keys:
        if key.endswith("/planned"):
            whole = summary[key.replace("/planned", "/whole")]
            base = key.removesuffix("/planned")
            ratios[base] = {
                f: (summary[key][f] / whole[f]) if whole[f] else None
                for f in ("seconds", "cpu_seconds", "served_bytes", "staged_rows")
            }
    return {
        "size": size,
        "runs": len(runs),
        "engines": engines,
        "spark_kinds": SPARK_KINDS,
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}), shared 2-core",
        "medians": summary,
        "planned_over_whole": ratios,
        "same_answers": same,
        "load_average": load,
        "all_runs": runs,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# SQL sources benchmark: reading what the query needs",
        "",
        f"`python benchmarks/sql_sources.py --size {result['size']} --runs {result['runs']} "
        f"--engines {','.join(result['engines'])} --spark-kinds {','.join(result['spark_kinds'])}`: "
        "a SQL source joining driver_hourly_stats (S: 1M rows, 90 daily "
        "partitions, in moto's S3 on loopback) with a local 10k-row drivers table; the table uses 2 of the "
        "stats' 3 feature columns. `planned` reads the columns and event times the read needs; `whole` reads "
        "every input whole (the planning switched off: the cost before it). Medians; contenders alternate "
        f"order between runs. Measured {time.strftime('%Y-%m-%d')} on the shared 2-core machine. Answers "
        f"identical between planned and whole in every run: {result['same_answers']}.",
        "",
        "Load average (1, 5, 15 min) at the start: {}; at the end: {}. CPU is this process's and its "
        "children's: Spark's JVM, and the servers this script started (moto, the byte-counting proxy, "
        "Redis), so the S3 serving and the online writes are in it; bytes are those the S3 server "
        "answered.".format(*(", ".join(f"{x:.1f}" for x in result["load_average"][k]) for k in ("start", "end"))),
        "",
        "| operation | engine | input | read | time | CPU | bytes from S3 | rows staged (Spark) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, fig in result["medians"].items():
        operation, engine, kind, name = key.split("/")
        staged = f"{fig['staged_rows']:,.0f}" if engine == "spark" else "-"
        lines.append(
            f"| {operation} | {engine} | {kind} | {name} | {fig['seconds']:.2f} s | {fig['cpu_seconds']:.2f} s | "
            f"{fig['served_bytes'] / 1e6:.1f} MB | {staged} |"
        )
    lines += ["", "| planned / whole | time | CPU | bytes from S3 | rows staged |", "|---|---|---|---|---|"]
    for key, ratio in result["planned_over_whole"].items():
        cells = ["-" if v is None else f"{v:.3f}" for v in ratio.values()]
        lines.append(f"| {key} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", default="S", choices=sorted(SIZES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--spark-kinds", default=",".join(KINDS), help="the inputs measured on Spark")
    args = parser.parse_args()
    SPARK_KINDS[:] = args.spark_kinds.split(",")
    engines = args.engines.split(",")
    files = ensure_scenario(SIZES[args.size])
    entity = pq.read_table(files.entity_rows)
    load = {"start": list(os.getloadavg())}
    count_staging()
    work = Path(tempfile.mkdtemp(prefix="provender-bench-sql-sources-"))
    try:
        with (
            moto(work) as (url, _),
            counting_proxy(url) as (proxy_url, counter, _),
            redis_server(work) as redis_url,
        ):
            REDIS[:] = [redis_url]
            proxy = (proxy_url, counter)
            sources = prepare(files, work, url)
            drivers = drivers_table(work, files.driver_stats)
            warm_up(work, proxy, sources, drivers, entity, engines)
            runs = []
            for run in range(args.runs):
                runs.append(run_once(work, proxy, sources, drivers, entity, engines, run))
                print(f"run {run + 1}/{args.runs} done", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load["end"] = list(os.getloadavg())
    result = report(args.size, engines, runs, load)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "sql_sources.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    text = markdown(result)
    (RESULTS_DIR / "sql_sources.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
