"""Feature statistics: Provender (DuckDB SQL) vs pandas on the same data, in the same run.

The ``driver_hourly_stats`` table of ``_data.py`` (S: 1M rows, L: 10M rows; 3 features) over its
whole 90-day window. Each contender runs in its own subprocess, so each peak RSS is its own:

- ``provender``: ``client.get_statistics`` (count, nulls, mean, std, min, max, 7 exact quantiles,
  zeros, a 20-bin histogram per feature), DuckDB using its default threads (one per core);
- ``pandas``: ``read_parquet`` of the three columns, ``describe`` with the same percentiles,
  ``value_counts`` and ``numpy.histogram`` (20 bins) per column, and the zero counts;
- ``collector``: the statistics an ingestion job records of what it wrote: the latest row per
  key, collected batch by batch (``StatisticsCollector``), timed against the ingestion job itself
  (into SQLite), which also collects them: the share of the job they cost. ``first_seconds`` is
  the process's first collector, timed before the job; ``seconds`` is one after it. Both work in
  the DuckDB engine's database, as the job's own collector does.

Wall time and CPU time (all threads of the process) are both measured: on a shared machine the
wall time depends on the load, the CPU time much less; pandas runs on one thread, DuckDB on all.

Usage: ``python benchmarks/feature_statistics.py --size S|L [--runs 3]``. Prints medians and peak RSS;
writes ``benchmarks/results/statistics_<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR))

import numpy as np  # noqa: E402
from _data import DRIVER_STATS, SCENARIO_DAYS, SCENARIO_START, SIZES, ensure_scenario  # noqa: E402

QUANTILES = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
END = SCENARIO_START + timedelta(days=SCENARIO_DAYS + 1)


def _client(files: Any, project: Path) -> Any:
    import provender as pv
    from provender.config import load_settings

    project.mkdir(parents=True, exist_ok=True)
    (project / "provender.yaml").write_text("registry: sqlite:///registry.db\n", encoding="utf-8")
    client = pv.Client(settings=load_settings(project / "provender.yaml", environ={}))
    driver = pv.Entity(name=DRIVER_STATS.key, value_type=pv.ValueType.INT64)
    types = {"float32": pv.ValueType.FLOAT, "float64": pv.ValueType.DOUBLE, "int64": pv.ValueType.INT64}
    table = pv.FeatureTable(
        name=DRIVER_STATS.name,
        entities=[DRIVER_STATS.key],
        features=[pv.Feature(f.name, types[f.dtype]) for f in DRIVER_STATS.features],
        batch_source=pv.FileSource(path=str(files.driver_stats), event_timestamp_column="event_timestamp"),
    )
    client.apply([driver, table])
    return client


def run_provender(size: str) -> dict[str, float]:
    files = ensure_scenario(SIZES[size], log=lambda _: None)
    with tempfile.TemporaryDirectory() as tmp:
        client = _client(files, Path(tmp))
        began, cpu = time.perf_counter(), time.process_time()
        stats = client.get_statistics(DRIVER_STATS.name, start=SCENARIO_START, end=END)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        assert stats.rows == SIZES[size].driver_rows
    return {"seconds": seconds, "cpu_seconds": cpu}


def run_pandas(size: str) -> dict[str, float]:
    import numpy as np
    import pandas as pd

    files = ensure_scenario(SIZES[size], log=lambda _: None)
    began, cpu = time.perf_counter(), time.process_time()
    frame = pd.read_parquet(files.driver_stats, columns=list(DRIVER_STATS.feature_names))
    frame.describe(percentiles=QUANTILES)
    for name in DRIVER_STATS.feature_names:
        column = frame[name].dropna()
        column.value_counts()
        np.histogram(column.to_numpy(), bins=20)
        int((column == 0).sum())
    return {"seconds": time.perf_counter() - began, "cpu_seconds": time.process_time() - cpu}


def run_collector(size: str) -> dict[str, float]:
    from provender.offline.duckdb import StatisticsCollector
    from provender.offline.plan import LatestPlan, table_join
    from provender.offline.statistics import StatisticsPlan

    files = ensure_scenario(SIZES[size], log=lambda _: None)
    with tempfile.TemporaryDirectory() as tmp:
        client = _client(files, Path(tmp))
        table = client.get_feature_table(DRIVER_STATS.name)
        join = table_join(table, table.features, {e.name: e for e in client.list_entities()})
        engine = client._offline_engine()
        rows = engine.read_latest(LatestPlan(join=join, start=SCENARIO_START, end=END), batch_rows=100_000).read_all()

        def collect() -> float:
            began = time.perf_counter()
            collector = StatisticsCollector(StatisticsPlan(join=join, start=SCENARIO_START, end=END), engine=engine)
            for batch in rows.to_batches(100_000):
                collector.add(batch)
            collector.finish()
            collector.close()
            return time.perf_counter() - began

        first = collect()  # the process's first collector, in the DuckDB engine's database as the job's
        began = time.perf_counter()
        job = client.start_offline_to_online_ingestion(DRIVER_STATS.name, start=SCENARIO_START, end=END).wait()
        job_seconds = time.perf_counter() - began
        collect_seconds = collect()
        assert job.statistics is not None and job.statistics.rows == rows.num_rows
    return {
        "seconds": collect_seconds,
        "first_seconds": first,
        "job_seconds": job_seconds,
        "share": collect_seconds / job_seconds,
        "first_share": first / job_seconds,
    }


CONTENDERS = {"provender": run_provender, "pandas": run_pandas, "collector": run_collector}


def _child(name: str, size: str) -> None:
    result = CONTENDERS[name](size)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="S")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.size)
        return
    ensure_scenario(SIZES[args.size])
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONTENDERS}
    for _ in range(args.runs):
        for name in CONTENDERS:
            out = subprocess.run(
                [sys.executable, __file__, "--size", args.size, "--child", name],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1]))
    summary = {
        name: {key: float(np.median([r[key] for r in runs])) for key in runs[0]} for name, runs in results.items()
    }
    speedup = summary["pandas"]["seconds"] / summary["provender"]["seconds"]
    cpu_speedup = summary["pandas"]["cpu_seconds"] / summary["provender"]["cpu_seconds"]
    rss = summary["provender"]["peak_rss_mb"] / summary["pandas"]["peak_rss_mb"]
    rows = SIZES[args.size].driver_rows
    print(f"statistics of {DRIVER_STATS.name}, size {args.size} ({rows:,} rows), {args.runs} runs (median)")
    for name, values in summary.items():
        print(f"  {name:10s} " + "  ".join(f"{k}={v:.3f}" for k, v in values.items()))
    print(f"  provender is {speedup:.1f}x pandas' speed ({cpu_speedup:.1f}x by CPU time) at {rss:.2f}x its peak RSS")
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"statistics_{args.size}.json").write_text(
        json.dumps(
            {
                "size": args.size,
                "rows": SIZES[args.size].driver_rows,
                "runs": args.runs,
                "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
                "median": summary,
                "speedup_vs_pandas": speedup,
                "cpu_speedup_vs_pandas": cpu_speedup,
                "load_average_1min_at_end": __import__("os").getloadavg()[0],
                "rss_ratio_vs_pandas": rss,
                "raw": results,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
