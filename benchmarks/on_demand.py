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
p50 in-process for a 1-row read). Each run times every contender in turn, ``--calls`` calls each
after 200 warm-up calls; figures are medians over ``--runs`` runs (default 3). The store is SQLite:
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

import provender as pv

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_CALLS = 200
DRIVERS = 1000
TARGET_OVERHEAD_MS = 0.2
DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
FEATURES = [
    pv.Feature("per_trip", pv.ValueType.DOUBLE),
    pv.Feature("big", pv.ValueType.BOOL),
    pv.Feature("scaled", pv.ValueType.FLOAT),
]
BASELINE = ["stats:trips", "stats:conv_rate"]
CONTENDERS = {"baseline": BASELINE, "python": [*BASELINE, "odf_python"], "pandas": [*BASELINE, "odf_pandas"]}


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


def time_calls(client: pv.Client, refs: list[str], calls: int, rng: random.Random) -> list[float]:
    """Time ``calls`` single-row reads (ms), after the warm-up."""
    requests = [[{"driver_id": rng.randrange(DRIVERS), "amount": rng.random() * 20}] for _ in range(64)]
    for n in range(WARMUP_CALLS):
        client.get_online_features(refs, requests[n % 64]).to_dict()
    times = []
    gc.disable()
    try:
        for n in range(calls):
            rows = requests[n % 64]
            start = time.perf_counter()
            client.get_online_features(refs, rows).to_dict()
            times.append((time.perf_counter() - start) * 1000)
    finally:
        gc.enable()
    return times


def median(values: object) -> float:
    """The median (``statistics`` is this folder's statistics benchmark when run as a script)."""
    ordered = sorted(values)  # type: ignore[call-overload]
    middle = len(ordered) // 2
    return float(ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    load = list(os.getloadavg())
    rng = random.Random(16)
    per_run: dict[str, list[tuple[float, float]]] = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory() as folder:
        client = build(Path(folder))
        for refs in CONTENDERS.values():  # same values on every contender before timing
            client.get_online_features(refs, [{"driver_id": 1, "amount": 3.0}]).to_dict()
        for _ in range(args.runs):
            for name, refs in CONTENDERS.items():
                times = time_calls(client, refs, args.calls, rng)
                per_run[name].append((percentile(times, 0.5), percentile(times, 0.99)))
        client.close()
    figures = {
        name: {
            "p50_ms": median(p50 for p50, _ in runs),
            "p99_ms": median(p99 for _, p99 in runs),
            "overhead_p50_ms": median(
                p50 - base for (p50, _), (base, _) in zip(runs, per_run["baseline"], strict=True)
            ),
        }
        for name, runs in per_run.items()
    }
    result = {
        "benchmark": "on_demand",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average_at_start": load,
        "runs": args.runs,
        "calls": args.calls,
        "target_overhead_p50_ms": TARGET_OVERHEAD_MS,
        "figures": figures,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "on_demand.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# On-demand features: added latency of a 1-row in-process online read",
        "",
        f"Run {result['when']} on {result['machine']}, SQLite online store, 1 entity row; medians of "
        f"{args.runs} runs x {args.calls} calls (ms). Command: `.venv/bin/python benchmarks/on_demand.py`. "
        f"Load average at start: {load} (the machine is shared by several parallel sessions: it ran under load).",
        "",
        "| contender | refs | p50 | p99 | overhead p50 vs baseline |",
        "|---|---|---:|---:|---:|",
    ]
    for name, refs in CONTENDERS.items():
        f = figures[name]
        overhead = "-" if name == "baseline" else f"{f['overhead_p50_ms']:.3f}"
        lines.append(f"| {name} | `{', '.join(refs)}` | {f['p50_ms']:.3f} | {f['p99_ms']:.3f} | {overhead} |")
    lines += ["", f"Target: on-demand overhead <= {TARGET_OVERHEAD_MS} ms p50 (1-row in-process read).", ""]
    for name in ("python", "pandas"):
        overhead = figures[name]["overhead_p50_ms"]
        verdict = "met" if overhead <= TARGET_OVERHEAD_MS else "NOT met"
        lines.append(f"- mode {name}: {overhead:.3f} ms: {verdict}")
    (RESULTS / "on_demand.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
