"""Sources where the data lives: local Parquet vs S3 Parquet vs an S3 Delta table, in one run.

The ``driver_hourly_stats`` table of ``_data.py`` (S: 1M rows over 90 days), laid out as hive
date partitions (one per day), is read from:

- ``local``: the partitions on the local disk;
- ``s3-parquet``: the same files in an S3-compatible server (moto, started here, on loopback),
  read by DuckDB's own Parquet reader through ``provender.offline.object_reads`` (the ``s3``
  extra: deltalake's object_store client);
- ``s3-parquet-pyarrow``: the same, read as without that extra: a pyarrow dataset over pyarrow's
  S3FileSystem (the AWS C++ SDK), scanned by DuckDB;
- ``s3-delta``: a Delta table in the same server, one file per day (partitioned by date).

Measured, with the DuckDB engine, medians of ``--runs`` (3):

- historical retrieval of the 100k entity rows (3 features, max_age 7 days) -> Arrow;
- offline-to-online ingestion (SQLite online store) of the last 7 days;
- incremental Delta ingestion of one new day (a commit appended after a first ingestion) against
  a full rescan of the same table version, both over the whole 90 days.

Bytes read from the object store are counted by a small TCP proxy (its own process) between
Provender and the S3 server: every byte the server answered during the operation, HTTP headers
included; and, for ingestions, the sizes of the files the job's lineage records. The proxy and
moto are Python processes on the same 2 cores, so the S3 times are upper bounds for a real store;
their CPU time during each operation is recorded beside this process's.

Usage: ``python benchmarks/sources.py [--size S] [--runs 3]``. Writes ``results/sources.json``
and ``results/sources.md``.
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
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR))

import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from _data import DRIVER_STATS, SCENARIO_START, SIZES, ensure_scenario  # noqa: E402
from _s3 import (  # noqa: E402
    BUCKET,
    END,
    INGEST_START,
    counting_proxy,
    driver_source,
    moto,
    prepare,
    s3_client,
    storage_options,
    with_dates,
)

if TYPE_CHECKING:
    import provender as pv
    from provender.ingestion.batch import IngestionJob

REFS = DRIVER_STATS.refs()


def process_cpu(pid: int) -> float:
    """The CPU seconds (user + system) process ``pid`` has used (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def reader(kind: str) -> Iterator[None]:
    """For ``s3-parquet-pyarrow``: S3 Parquet read as without the s3 extra (a pyarrow dataset)."""
    from provender.offline import object_reads

    if kind != "s3-parquet-pyarrow":
        yield
        return
    available = object_reads.available
    object_reads.available = lambda: False
    try:
        yield
    finally:
        object_reads.available = available


def client(project: Path, url: str, source: str, kind: str) -> pv.Client:
    import provender as pv

    c = s3_client(project, url)
    types = {"float32": pv.ValueType.FLOAT, "float64": pv.ValueType.DOUBLE, "int64": pv.ValueType.INT64}
    table = pv.FeatureTable(
        name=DRIVER_STATS.name,
        entities=[DRIVER_STATS.key],
        features=[pv.Feature(f.name, types[f.dtype]) for f in DRIVER_STATS.features],
        batch_source=driver_source(source, kind),
        max_age=DRIVER_STATS.max_age,
    )
    c.apply([pv.Entity(name=DRIVER_STATS.key, value_type=pv.ValueType.INT64), table])
    return c


CPU_SECONDS: list[float] = []  # this process's CPU time of each measure(), read by the caller
SERVER_CPU_SECONDS: list[float] = []  # moto's and the proxy's, the same way
SERVER_PIDS: list[int] = []  # moto and the proxy


def measure(counter: Any, work: Callable[[], Any]) -> tuple[float, int, Any]:
    servers = sum(process_cpu(pid) for pid in SERVER_PIDS)
    before, started, cpu = counter.value, time.perf_counter(), time.process_time()
    result = work()
    CPU_SECONDS.append(time.process_time() - cpu)
    SERVER_CPU_SECONDS.append(sum(process_cpu(pid) for pid in SERVER_PIDS) - servers)
    return time.perf_counter() - started, counter.value - before, result


def lineage_bytes(c: Any, job_id: str) -> tuple[int, int]:
    (read,) = c.get_job(job_id).lineage()
    return len(read.files), sum(f.size or 0 for f in read.files)


def incremental(files: Any, work: Path, url: str, proxy: tuple[str, Any], run: int) -> dict[str, Any]:
    """A first ingestion, one day appended, then the incremental and the full ingestion of it."""
    import deltalake

    rows = with_dates(files.driver_stats)
    last = (END - timedelta(days=1)).strftime("%Y-%m-%d")
    path = f"s3://{BUCKET}/delta_incremental_{run}"
    options = storage_options(url)
    deltalake.write_deltalake(
        path, rows.filter(pc.not_equal(rows["date"], last)), partition_by=["date"], storage_options=options
    )
    c = client(work / f"incremental-{run}", proxy[0], path, "s3-delta")
    with c:
        c.start_offline_to_online_ingestion(DRIVER_STATS.name, start=SCENARIO_START, end=END, incremental=True).wait()
        deltalake.write_deltalake(
            path,
            rows.filter(pc.equal(rows["date"], last)),
            partition_by=["date"],
            storage_options=options,
            mode="append",
        )
        out: dict[str, Any] = {}
        for name, flag in (("incremental", True), ("full", False)):

            def ingest(flag: bool = flag) -> IngestionJob:
                return c.start_offline_to_online_ingestion(
                    DRIVER_STATS.name, start=SCENARIO_START, end=END, incremental=flag
                ).wait()

            seconds, served, job = measure(proxy[1], ingest)
            count, size = lineage_bytes(c, job.id)
            out[name] = {
                "seconds": seconds,
                "cpu_seconds": CPU_SECONDS[-1],
                "server_cpu_seconds": SERVER_CPU_SECONDS[-1],
                "served_bytes": served,
                "files": count,
                "file_bytes": size,
                "rows": job.rows_written,
            }
    return out


def run_once(
    files: Any, work: Path, url: str, proxy: tuple[str, Any], sources: dict[str, str], run: int
) -> dict[str, Any]:
    entity_rows = pq.read_table(files.entity_rows)
    found: dict[str, Any] = {}
    for kind, source in sources.items():
        with client(work / f"{kind}-{run}", proxy[0], source, kind.removesuffix("-pyarrow")) as c, reader(kind):
            seconds, served, table = measure(proxy[1], lambda: c.get_historical_features(REFS, entity_rows).to_arrow())
            checksum = float(pc.sum(pc.fill_null(table["driver_hourly_stats__conv_rate"], 0)).as_py())
            found[f"retrieval/{kind}"] = {
                "seconds": seconds, "cpu_seconds": CPU_SECONDS[-1], "server_cpu_seconds": SERVER_CPU_SECONDS[-1],
                "served_bytes": served, "rows": table.num_rows, "checksum": checksum,
            }  # fmt: skip
            seconds, served, job = measure(proxy[1], lambda: c.start_offline_to_online_ingestion(
                DRIVER_STATS.name, start=INGEST_START, end=END).wait())  # fmt: skip
            count, size = lineage_bytes(c, job.id)
            found[f"ingestion/{kind}"] = {"seconds": seconds, "cpu_seconds": CPU_SECONDS[-1],
                                          "server_cpu_seconds": SERVER_CPU_SECONDS[-1], "served_bytes": served,
                                          "rows": job.rows_written, "files": count, "file_bytes": size}  # fmt: skip
    for name, figures in incremental(files, work, url, proxy, run).items():
        found[f"delta-ingestion/{name}"] = figures
    return found


def median(runs: list[dict[str, Any]], key: str, field: str) -> float:
    value: float = statistics.median(r[key][field] for r in runs)
    return value


def report(size: str, runs: list[dict[str, Any]], load: dict[str, list[float]]) -> dict[str, Any]:
    keys = list(runs[0])
    summary = {k: {f: median(runs, k, f) for f in runs[0][k] if f != "checksum"} for k in keys}
    checks = {k: len({r[k].get("checksum") for r in runs}) == 1 for k in keys if "checksum" in runs[0][k]}
    kinds = ("s3-parquet", "s3-parquet-pyarrow", "s3-delta")
    same = len({runs[0][f"retrieval/{k}"]["checksum"] for k in ("local", *kinds)}) == 1
    ratios = {
        f"{phase}/{kind} vs local": summary[f"{phase}/{kind}"]["seconds"] / summary[f"{phase}/local"]["seconds"]
        for phase in ("retrieval", "ingestion")
        for kind in kinds
    }
    ratios |= {
        f"{phase}/{kind} vs local: CPU": summary[f"{phase}/{kind}"]["cpu_seconds"]
        / summary[f"{phase}/local"]["cpu_seconds"]
        for phase in ("retrieval",)
        for kind in kinds
    }
    inc, full = summary["delta-ingestion/incremental"], summary["delta-ingestion/full"]
    ratios["incremental vs full: served bytes"] = inc["served_bytes"] / full["served_bytes"]
    ratios["incremental vs full: file bytes"] = inc["file_bytes"] / full["file_bytes"]
    ratios["incremental vs full: time"] = inc["seconds"] / full["seconds"]
    return {
        "size": size,
        "runs": len(runs),
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}), shared 2-core, under load",
        "medians": summary,
        "ratios": ratios,
        "same_answers": same and all(checks.values()),
        "load_average": load,
        "all_runs": runs,
    }


def markdown(result: dict[str, Any]) -> str:
    m, r = result["medians"], result["ratios"]
    lines = [
        "# Sources benchmark",
        "",
        f"`python benchmarks/sources.py --size {result['size']} --runs {result['runs']}`: driver_hourly_stats "
        "(S: 1M rows, 90 daily partitions), DuckDB engine, S3 = moto's server on loopback; medians. "
        "`s3-parquet` is read by DuckDB's Parquet reader through deltalake's object_store client (the `s3` extra), "
        "`s3-parquet-pyarrow` as without that extra (a pyarrow dataset over pyarrow's S3FileSystem). Measured "
        f"{time.strftime('%Y-%m-%d')} on the shared 2-core development machine while other work ran: times are "
        "noisy, ratios within one run are the figures to read. Retrieval and ingestion answers were the same "
        f"from every source: {result['same_answers']}.",
        "",
        "Load average (1, 5, 15 min) at the start: {}; at the end: {}. CPU is this process's; server CPU is "
        "moto's and the byte-counting proxy's (processes of their own) during the same operation.".format(
            *(", ".join(f"{x:.1f}" for x in result["load_average"][k]) for k in ("start", "end"))
        ),
        "",
        "| operation | source | time | CPU | server CPU | bytes served by S3 | files read (bytes) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, fig in m.items():
        phase, kind = key.split("/")
        files = f"{fig['files']:.0f} ({fig['file_bytes'] / 1e6:.1f} MB)" if "files" in fig else "-"
        served = "-" if kind == "local" else f"{fig['served_bytes'] / 1e6:.1f} MB"
        server = "-" if kind == "local" else f"{fig['server_cpu_seconds']:.2f} s"
        times = f"{fig['seconds']:.2f} s | {fig['cpu_seconds']:.2f} s | {server}"
        lines.append(f"| {phase} | {kind} | {times} | {served} | {files} |")
    lines += ["", "| ratio | value | target |", "|---|---|---|"]
    targets = {"s3-parquet vs local": "<= 2x", "s3-delta vs local": "<= 2x", "bytes": "<= 0.2"}
    for name, value in r.items():
        target = next((t for k, t in targets.items() if name.endswith(k)), "-")
        lines.append(f"| {name} | {value:.3f} | {target} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", default="S", choices=sorted(SIZES))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    files = ensure_scenario(SIZES[args.size])
    load = {"start": list(os.getloadavg())}
    work = Path(tempfile.mkdtemp(prefix="provender-bench-sources-"))
    try:
        with moto(work) as (url, moto_pid), counting_proxy(url) as (proxy_url, counter, proxy_pid):
            proxy = (proxy_url, counter)
            SERVER_PIDS[:] = [moto_pid, proxy_pid]
            sources = prepare(files, work, url)
            runs = []
            for run in range(args.runs):
                runs.append(run_once(files, work, url, proxy, sources, run))
                print(f"run {run + 1}/{args.runs} done", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load["end"] = list(os.getloadavg())
    result = report(args.size, runs, load)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "sources.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    text = markdown(result)
    (RESULTS_DIR / "sources.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
