"""Benchmark: the added latency of on-demand features on a 1-row in-process online read (issue 16).

An embedded project (SQLite registry and online store, in a temp folder) has a feature table
``stats`` (2 features, 1,000 drivers ingested) and two on-demand features computing the same
three values from both features and one request field: ``odf_python`` (``mode="python"``) and
``odf_pandas`` (``mode="pandas"``). It times single calls of
``Client.get_online_features(refs, [{"driver_id": d, "amount": a}]).to_dict()`` for:

- ``baseline``: ``["stats:trips", "stats:conv_rate"]`` (the inputs only);
- ``python``: the same plus ``odf_python`` (3 computed features);
- ``pandas``: the same plus ``odf_pandas``.

The overhead of a mode is its p50 minus the baseline's p50 in the same run (target: <= 0.2 ms
p50 in-process for a 1-row read). Two more contenders measure the floor of pandas itself, no read
and no Provender code:

- ``pandas-function``: the pandas-mode function alone, on a copy of a 1-row DataFrame built once
  (a copy: a frame used before caches its columns, which a request's new frame never has);
- ``pandas-floor``: a 1-row DataFrame built from the same plain values with
  ``pd.DataFrame({column: [value]})`` plus the function: what any caller of that function pays.

Provender's own share of the pandas-mode overhead is that overhead minus ``pandas-floor``.
``pandas-via-arrow`` is the pandas read with the Arrow conversions the online path used before
(``pa.table(...).to_pandas()`` in, ``pa.array(..., from_pandas=True)`` out), forced by switching
off the NumPy shortcuts of ``provender.on_demand`` for its calls: the same run's "before".
Each call is timed in wall time and in the calling thread's CPU time (``time.thread_time``: on a
shared machine the CPU time is the steadier figure). Each run times the contenders in turns of
100 calls (so load changes hit all alike), ``--calls`` calls each after 200 warm-up calls;
figures are medians over ``--runs`` runs (default 3). The store is SQLite:
the overhead does not depend on the store (the function runs after the read). The functions live
in ``_on_demand_functions.py`` beside this script (importable as the script's folder is on the path).

Usage::

    .venv/bin/python benchmarks/on_demand.py            # 3 runs x 2000 calls

Writes ``benchmarks/results/on_demand.json`` and ``benchmarks/results/on_demand.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from _on_demand_functions import pandas_mode

import provender as pv
import provender.on_demand as on_demand

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS = 200
BLOCK_CALLS = 100
DRIVERS = 1000
TARGET_OVERHEAD_MS = 0.2
Timing: TypeAlias = tuple[float, float]
DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
FEATURES = [
    pv.Feature("per_trip", pv.ValueType.DOUBLE),
    pv.Feature("big", pv.ValueType.BOOL),
    pv.Feature("scaled", pv.ValueType.FLOAT),
]
BASELINE = ["stats:trips", "stats:conv_rate"]
CONTENDERS = {"baseline": BASELINE, "python": [*BASELINE, "odf_python"], "pandas": [*BASELINE, "odf_pandas"]}
FLOORS = ("pandas-function", "pandas-floor")
BEFORE = "pandas-via-arrow"


def build(root: Path) -> pv.Client:
    """The project: the table's rows written and ingested, the on-demand features applied."""
    (root / "provender.yaml").write_text(
        yaml.safe_dump({"registry": "sqlite:///registry.db", "online": {"store": "sqlite", "path": "online.db"}})
    )
    now = datetime.now(UTC)
    rng = random.Random(16)
    rows = pa.table(
        {
            "driver_id": pa.array(range(DRIVERS), pa.int64()),
            "trips": pa.array([rng.randint(0, 40) for _ in range(DRIVERS)], pa.int64()),
            "conv_rate": pa.array([rng.random() for _ in range(DRIVERS)], pa.float32()),
            "event_timestamp": pa.array([now - timedelta(hours=1)] * DRIVERS, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(rows, root / "stats.parquet")
    stats = pv.FeatureTable(
        name="stats",
        entities=["driver_id"],
        features=[pv.Feature("trips", pv.ValueType.INT64), pv.Feature("conv_rate", pv.ValueType.FLOAT)],
        batch_source=pv.FileSource(path=str(root / "stats.parquet"), event_timestamp_column="event_timestamp"),
    )
    definitions = [
        pv.OnDemandFeatures(
            name=f"odf_{mode}",
            inputs=["stats:trips", "stats:conv_rate"],
            request_schema={"amount": pv.ValueType.DOUBLE},
            features=FEATURES,
            function=f"_on_demand_functions:{mode}_mode",
            mode=mode,
        )
        for mode in ("python", "pandas")
    ]
    client = pv.Client(root / "provender.yaml")
    client.apply([DRIVER, stats, *definitions])
    client.start_offline_to_online_ingestion("stats", start=now - timedelta(days=1), end=now).wait()
    return client


def requests(rng: random.Random) -> list[list[dict[str, object]]]:
    """64 one-row requests: a random driver and amount."""
    return [[{"driver_id": rng.randrange(DRIVERS), "amount": rng.random() * 20}] for _ in range(64)]


def time_calls(
    calls: dict[str, Callable[[list[dict[str, object]]], object]], count: int, rng: random.Random
) -> dict[str, list[Timing]]:
    """Time ``count`` calls of every contender (wall ms, thread CPU ms), after the warm-up.

    The contenders take turns by blocks of ``BLOCK_CALLS`` calls: a change of the machine's load
    in the middle of a run hits them all alike, and within a block a contender's code and data
    stay in the CPU caches as in a process that serves one kind of read (call-by-call turns made
    the baseline read 5x slower, its caches emptied by pandas).
    """
    rows = requests(rng)
    for n in range(WARMUP_CALLS):
        for call in calls.values():
            call(rows[n % 64])
    times: dict[str, list[Timing]] = {name: [] for name in calls}
    gc.disable()
    try:
        for block in range(0, count, BLOCK_CALLS):
            for name, call in calls.items():
                for n in range(block, min(count, block + BLOCK_CALLS)):
                    request = rows[n % 64]
                    cpu, start = time.thread_time(), time.perf_counter()
                    call(request)
                    times[name].append(((time.perf_counter() - start) * 1000, (time.thread_time() - cpu) * 1000))
    finally:
        gc.enable()
    return times


def contender_calls(client: pv.Client) -> dict[str, Callable[[list[dict[str, object]]], object]]:
    """Every contender as a one-row call: the three reads, then the two floors of pandas."""

    def read(refs: list[str]) -> Callable[[list[dict[str, object]]], object]:
        return lambda rows: client.get_online_features(refs, rows).to_dict()

    calls = {name: read(refs) for name, refs in CONTENDERS.items()}
    pandas_refs = CONTENDERS["pandas"]

    def via_arrow(rows: list[dict[str, object]]) -> object:
        saved = on_demand._numpy_column, on_demand._from_numpy
        on_demand._numpy_column = on_demand._from_numpy = lambda *_: None  # type: ignore[assignment]
        try:
            return client.get_online_features(pandas_refs, rows).to_dict()
        finally:
            on_demand._numpy_column, on_demand._from_numpy = saved

    calls[BEFORE] = via_arrow
    stored = client.get_online_features(BASELINE, [{"driver_id": 1}]).to_dict()
    trips, rate = stored["stats__trips"][0], stored["stats__conv_rate"][0]
    built = pd.DataFrame({"stats__trips": [trips], "stats__conv_rate": [rate], "amount": [3.0]})
    calls["pandas-function"] = lambda _rows: pandas_mode(built.copy())
    calls["pandas-floor"] = lambda rows: pandas_mode(
        pd.DataFrame({"stats__trips": [trips], "stats__conv_rate": [rate], "amount": [rows[0]["amount"]]})
    )
    return calls


def median(values: object) -> float:
    """The median (``statistics`` is this folder's statistics benchmark when run as a script)."""
    ordered = sorted(values)  # type: ignore[call-overload]
    middle = len(ordered) // 2
    return float(ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(runs: list[list[Timing]], baseline: list[list[Timing]]) -> dict[str, float]:
    """Medians over runs of each run's p50/p99 (wall and CPU) and of its p50s minus the baseline's."""
    per_run = [
        {
            "p50_ms": percentile([wall for wall, _ in times], 0.5),
            "p99_ms": percentile([wall for wall, _ in times], 0.99),
            "cpu_p50_ms": percentile([cpu for _, cpu in times], 0.5),
            "cpu_p99_ms": percentile([cpu for _, cpu in times], 0.99),
        }
        for times in runs
    ]
    bases = [summary_of_run(times) for times in baseline]
    result = {key: median(run[key] for run in per_run) for key in per_run[0]}
    result["overhead_p50_ms"] = median(run["p50_ms"] - base[0] for run, base in zip(per_run, bases, strict=True))
    result["overhead_cpu_p50_ms"] = median(
        run["cpu_p50_ms"] - base[1] for run, base in zip(per_run, bases, strict=True)
    )
    return result


def summary_of_run(times: list[Timing]) -> tuple[float, float]:
    """One run's wall and CPU p50."""
    return percentile([wall for wall, _ in times], 0.5), percentile([cpu for _, cpu in times], 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    load = list(os.getloadavg())
    rng = random.Random(16)
    names = [*CONTENDERS, BEFORE, *FLOORS]
    per_run: dict[str, list[list[Timing]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as folder:
        client = build(Path(folder))
        calls = contender_calls(client)
        for call in calls.values():  # every contender runs before timing
            call([{"driver_id": 1, "amount": 3.0}])
        for _ in range(args.runs):
            for name, times in time_calls(calls, args.calls, rng).items():
                per_run[name].append(times)
        client.close()
    load_end = list(os.getloadavg())
    figures = {name: summary(per_run[name], per_run["baseline"]) for name in names}
    for name in FLOORS:  # a floor is not a read: its overhead is its own time
        figures[name]["overhead_p50_ms"] = figures[name]["p50_ms"]
        figures[name]["overhead_cpu_p50_ms"] = figures[name]["cpu_p50_ms"]
    floor = figures["pandas-floor"]
    own = {
        "wall_p50_ms": figures["pandas"]["overhead_p50_ms"] - floor["p50_ms"],
        "cpu_p50_ms": figures["pandas"]["overhead_cpu_p50_ms"] - floor["cpu_p50_ms"],
    }
    result = {
        "benchmark": "on_demand",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, pandas {pd.__version__}",
        "load_average_at_start": load,
        "load_average_at_end": load_end,
        "runs": args.runs,
        "calls": args.calls,
        "target_overhead_p50_ms": TARGET_OVERHEAD_MS,
        "figures": figures,
        "pandas_overhead_above_floor": own,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "on_demand.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.runs, args.calls)


def write_markdown(result: dict[str, object], runs: int, calls: int) -> None:
    """Write ``on_demand.md`` from the result, and print it."""
    figures: dict[str, dict[str, float]] = result["figures"]  # type: ignore[assignment]
    own: dict[str, float] = result["pandas_overhead_above_floor"]  # type: ignore[assignment]
    lines = [
        "# On-demand features: added latency of a 1-row in-process online read",
        "",
        f"Run {result['when']} on {result['machine']}, SQLite online store, 1 entity row; medians of "
        f"{runs} runs x {calls} calls (ms; wall time, and the calling thread's CPU time). "
        "Command: `.venv/bin/python benchmarks/on_demand.py`. "
        f"Load average at start {fmt_load(result['load_average_at_start'])}, at end "
        f"{fmt_load(result['load_average_at_end'])} (2 cores shared by several parallel sessions: wall times "
        "are inflated; CPU times are the steadier figure).",
        "",
        "| contender | what is timed | p50 | p99 | CPU p50 | overhead p50 vs baseline (wall / CPU) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    what = {
        **{name: f"read `{', '.join(refs)}`" for name, refs in CONTENDERS.items()},
        BEFORE: "the pandas read, with the Arrow conversions of the previous version",
        "pandas-function": "the pandas-mode function on a prebuilt 1-row DataFrame (no read)",
        "pandas-floor": "`pd.DataFrame({column: [value]})` + the function (no read)",
    }
    for name, f in figures.items():
        if name == "baseline":
            overhead = "-"
        elif name in FLOORS:
            overhead = "(not a read)"
        else:
            overhead = f"{f['overhead_p50_ms']:.3f} / {f['overhead_cpu_p50_ms']:.3f}"
        lines.append(
            f"| {name} | {what[name]} | {f['p50_ms']:.3f} | {f['p99_ms']:.3f} | {f['cpu_p50_ms']:.3f} | {overhead} |"
        )
    floor = figures["pandas-floor"]
    lines += [
        "",
        f"Target: on-demand overhead <= {TARGET_OVERHEAD_MS} ms p50 (1-row in-process read).",
        "",
    ]
    for name in ("python", "pandas", BEFORE):
        overhead_ms = figures[name]["overhead_p50_ms"]
        verdict = "met" if overhead_ms <= TARGET_OVERHEAD_MS else "NOT met"
        lines.append(f"- {name}: {overhead_ms:.3f} ms (CPU {figures[name]['overhead_cpu_p50_ms']:.3f} ms): {verdict}")
    lines += [
        f"- the floor of pandas itself (1-row DataFrame + the function, no Provender): {floor['p50_ms']:.3f} ms "
        f"(CPU {floor['cpu_p50_ms']:.3f} ms); the function alone {figures['pandas-function']['p50_ms']:.3f} ms "
        f"(CPU {figures['pandas-function']['cpu_p50_ms']:.3f} ms)"
        + (": above the target by itself" if floor["cpu_p50_ms"] > TARGET_OVERHEAD_MS else ""),
        f"- Provender's own share of the pandas-mode overhead (overhead minus the floor): {own['wall_p50_ms']:.3f} ms "
        f"wall, {own['cpu_p50_ms']:.3f} ms CPU",
    ]
    (RESULTS / "on_demand.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def fmt_load(load: object) -> str:
    """A load average triple as text."""
    return "/".join(f"{value:.1f}" for value in load)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
