"""Benchmark: point-in-time historical retrieval (issue 3, "Performance").

Joins the driver scenario's entity rows (see ``_data.py``) with all seven features of
``driver_hourly_stats`` (max_age 7 d) and ``customer_profile`` (max_age 30 d), and measures on
the same Parquet files, each run in a fresh subprocess (so its peak RSS is its own):

- ``provender-df``: ``Client.get_historical_features(refs, entity_df).to_arrow()``, the entity
  rows read into a pandas DataFrame before the clock starts;
- ``provender-path``: the same with the entity rows passed as a Parquet path;
- ``duckdb-asof``: the floor, a plain DuckDB ``ASOF LEFT JOIN`` of the same data without the
  created-timestamp tie-break, without ``max_age`` and in no particular order;
- ``duckdb-asof-ordered``: the floor, returned in the entity rows' order (which DESIGN.md requires);
- ``feast-duckdb``, ``feast-file`` (with ``--peers feast``): Feast 0.67's ``duckdb`` and ``file``
  (dask) offline stores, run by the interpreter of ``benchmarks/peers/feast`` (see
  ``peers_setup.sh``); Provender never imports Feast.

Only the retrieval is timed (imports, registry set-up and reading the entity DataFrame are not).
Each contender runs ``--runs`` times (default 3); the table shows the median, min and max
seconds, the peak RSS over its runs (the subprocess's ``ru_maxrss``: interpreter, imports and
data included), the rows returned and the ratio of its median to ``provender-df``'s. A run that
exceeds the timeout or the RSS cap is killed and recorded as failed, and the contender's later
runs are skipped.

Then a correctness guard (``--no-check`` skips it) compares Provender's result with the plain
ASOF join's, row by row: where the ASOF match is exact (its matched row shares its key and event
time with no other row, and lies within max_age) the values must be equal; where it matched
nothing or only a row older than max_age, Provender's features must be null; where the matched
event time is tied, Provender must return the row with the greatest created time (the tie-break).
Any mismatch fails the benchmark (exit status 1).

Size XL is the spill scenario: 100M feature rows and 10M entity rows, Provender under
``offline: {engine: duckdb, memory_limit: 4GB}``, the result streamed with ``to_parquet``; one
run, no peers and no guard unless asked.

Usage::

    .venv/bin/python benchmarks/historical.py --size S
    .venv/bin/python benchmarks/historical.py --size L --runs 3 --peers feast
    .venv/bin/python benchmarks/historical.py --size XL        # minutes; spills

A complete run (default contenders, at least the default number of runs, the guard, and every
contender the recorded file already has) writes ``benchmarks/results/historical_<size>.json``
and regenerates ``benchmarks/results/historical.md`` from every ``historical_*.json`` present; a
partial run writes ``benchmarks/data/results/historical_<size>.json`` instead (``--save`` forces).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import (
    CREATED_TIMESTAMP,
    DATA_DIR,
    EVENT_TIMESTAMP,
    SIZES,
    TABLES,
    ScenarioFiles,
    TableSpec,
    all_refs,
    ensure_scenario,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PEERS_DIR = BENCH_DIR / "peers"
ADHOC_DIR = DATA_DIR / "results"
"""Where partial runs write their JSON (gitignored), so they never replace recorded figures."""
DEFAULT_RUNS = {"S": 3, "L": 3, "XL": 1}
TIMEOUT_SECONDS = {"S": 120, "L": 300, "XL": 3_600}
"""Per-run limit; a run past it is killed and recorded as failed."""
RSS_CAP_GB = 18.0
"""A run whose RSS passes this is killed (the machine is shared; Feast's file store was seen at 14 GB)."""
XL_MEMORY_LIMIT = "4GB"
# DuckDB's memory_limit per size for Provender and the floors (None: DuckDB's default, 80% of RAM).
# L runs under 1 GB so that the whole process stays under the 1.5 GiB target: DuckDB's buffers are
# bounded by the setting, the rest is the interpreter, the entity rows and the 1M-row result.
MEMORY_LIMITS: dict[str, str | None] = {"S": None, "L": "1GB", "XL": XL_MEMORY_LIMIT}
REFERENCE = "provender-df"
RESULT_MARK = "@@RESULT "
TARGETS_L = {"median_s": 3.0, "x_feast_duckdb": 3.0, "x_feast_file": 30.0, "peak_rss_mb": 1536.0}


@dataclass(frozen=True, slots=True)
class Contender:
    """One way of computing the retrieval."""

    name: str
    label: str
    kind: str  # provender | floor | feast
    options: dict[str, object] = field(default_factory=dict)
    peer: str | None = None


CONTENDERS = {
    c.name: c
    for c in (
        Contender("provender-df", "Provender, entity rows as DataFrame", "provender", {"entity_as": "dataframe"}),
        Contender("provender-path", "Provender, entity rows as Parquet path", "provender", {"entity_as": "path"}),
        Contender(
            "duckdb-asof",
            "floor: plain DuckDB ASOF JOIN (no tie-break, no max_age, unordered)",
            "floor",
            {"ordered": False},
        ),
        Contender("duckdb-asof-ordered", "floor, in entity-row order", "floor", {"ordered": True}),
        Contender("feast-duckdb", "Feast 0.67, duckdb offline store", "feast", {"store": "duckdb"}, peer="feast"),
        Contender("feast-file", "Feast 0.67, file (dask) offline store", "feast", {"store": "file"}, peer="feast"),
    )
}
DEFAULT_CONTENDERS = {
    "S": ["provender-df", "provender-path", "duckdb-asof", "duckdb-asof-ordered"],
    "L": ["provender-df", "provender-path", "duckdb-asof", "duckdb-asof-ordered"],
    "XL": ["provender-path"],
}


@dataclass(slots=True)
class RunResult:
    """One run of one contender."""

    seconds: float | None = None
    cpu_s: float | None = None
    rows: int | None = None
    peak_rss_mb: float | None = None
    rss_before_mb: float | None = None
    error: str | None = None
    info: dict[str, object] = field(default_factory=dict)


# -- the parent: orchestration -------------------------------------------------------------------


def main() -> int:
    """Parse arguments, run the benchmark (or, with ``--child``, one measured run)."""
    parser = argparse.ArgumentParser(description="Point-in-time historical retrieval benchmark.")
    parser.add_argument("--size", choices=list(SIZES), default="S")
    parser.add_argument("--runs", type=int, help="runs per contender (default: 3; XL: 1)")
    parser.add_argument(
        "--peers",
        action="append",
        default=[],
        choices=["feast"],
        help="also measure a peer (needs `bash benchmarks/peers_setup.sh`)",
    )
    parser.add_argument("--contenders", help=f"comma-separated subset of: {', '.join(CONTENDERS)}")
    parser.add_argument("--timeout", type=float, help="seconds per run before it is killed")
    parser.add_argument("--rss-cap-gb", type=float, default=RSS_CAP_GB, help="kill a run above this RSS")
    parser.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the correctness guard (default: on for S and L, off for XL)",
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help="record in benchmarks/results/ even a partial run (subset, fewer runs, no guard)",
    )
    parser.add_argument(
        "--memory-limit",
        help='DuckDB memory_limit for Provender and the floors (default: L 1GB, XL 4GB; "" for DuckDB\'s own)',
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(json.loads(args.child))
    return _bench(args)


def _bench(args: argparse.Namespace) -> int:
    size = SIZES[args.size]
    runs = args.runs or DEFAULT_RUNS[size.name]
    timeout = args.timeout or TIMEOUT_SECONDS[size.name]
    names = args.contenders.split(",") if args.contenders else list(DEFAULT_CONTENDERS[size.name])
    for peer in args.peers:
        names += [c.name for c in CONTENDERS.values() if c.peer == peer and c.name not in names]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        sys.exit(f"unknown contender(s): {', '.join(unknown)}")
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()
    gen_started = time.perf_counter()
    files = ensure_scenario(size)
    gen_seconds = time.perf_counter() - gen_started
    memory_limit = args.memory_limit if args.memory_limit is not None else MEMORY_LIMITS[size.name]
    memory_limit = memory_limit or None  # --memory-limit "" means DuckDB's default
    work = Path(tempfile.mkdtemp(prefix=f"bench-{size.name}-", dir=DATA_DIR))
    try:
        config = _provender_project(work / "project", files, memory_limit=memory_limit)
        print(
            f"size {size.name}: {size.driver_rows:,} driver rows, {size.customer_rows:,} customer rows, "
            f"{size.entity_rows:,} entity rows; {runs} run(s) per contender, timeout {timeout:.0f} s"
        )
        results: dict[str, list[RunResult]] = {}
        for name in names:
            contender = CONTENDERS[name]
            results[name] = []
            for i in range(runs):
                spec = _child_spec(
                    contender,
                    files,
                    config,
                    work,
                    memory_limit=memory_limit,
                    output="parquet" if size.name == "XL" else "arrow",
                )
                result = _run_child(contender, spec, timeout=timeout, rss_cap_mb=args.rss_cap_gb * 1024)
                results[name].append(result)
                what = (
                    f"{result.seconds:7.2f} s  {result.cpu_s or 0:6.1f} CPU s  {result.peak_rss_mb:6.0f} MB  "
                    f"{result.rows:,} rows"
                    if result.error is None
                    else f"FAILED: {_one_line(result.error)}"
                )
                print(f"  {name:<20} run {i + 1}/{runs}: {what}", flush=True)
                if result.error is not None:
                    break
        check = None
        if args.check if args.check is not None else size.name != "XL":
            print("correctness guard ...", flush=True)
            check = correctness_guard(files, config)
        report = _report(
            size.name,
            names,
            results,
            check,
            files=files,
            runs=runs,
            timeout=timeout,
            memory_limit=memory_limit,
            started_at=started_at,
            load=(load_before, os.getloadavg()),
            gen_seconds=gen_seconds,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _print_table(report)
    why_not = _why_not_recorded(args, size.name, runs, names, check)
    if why_not and not args.save:
        ADHOC_DIR.mkdir(parents=True, exist_ok=True)
        out = ADHOC_DIR / f"historical_{size.name}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out.relative_to(BENCH_DIR.parent)} only ({why_not}; --save records it in benchmarks/results/)")
    else:
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"historical_{size.name}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        _write_markdown()
        print(f"wrote {out.relative_to(BENCH_DIR.parent)} and benchmarks/results/historical.md")
    return 1 if check is not None and not check["ok"] else 0


def _why_not_recorded(
    args: argparse.Namespace, size: str, runs: int, names: list[str], check: dict[str, object] | None
) -> str | None:
    """Why this run should not replace the recorded results (None: it should).

    The recorded figures are complete runs: the default contenders, at least the default number
    of runs, the guard (S, L), and every contender the recorded file already has (peers).
    """
    if args.contenders:
        return "a subset of contenders"
    if runs < DEFAULT_RUNS[size]:
        return f"fewer than {DEFAULT_RUNS[size]} runs"
    if check is None and size != "XL":
        return "no correctness guard"
    recorded = RESULTS_DIR / f"historical_{size}.json"
    if recorded.is_file():
        before = {c["contender"] for c in json.loads(recorded.read_text())["contenders"]}
        missing = sorted(before - set(names))
        if missing:
            return f"the recorded results also have {', '.join(missing)}"
    return None


def _provender_project(root: Path, files: ScenarioFiles, *, memory_limit: str | None) -> Path:
    """Create a Provender project registering the scenario's tables; return its config path."""
    import provender as pv

    root.mkdir(parents=True)
    offline = {"engine": "duckdb", **({"memory_limit": memory_limit} if memory_limit else {})}
    config = root / "provender.yaml"
    config.write_text(f"project: bench\noffline: {json.dumps(offline)}\n")
    types = {"int64": pv.ValueType.INT64, "float32": pv.ValueType.FLOAT, "float64": pv.ValueType.DOUBLE}
    definitions: list[pv.Entity | pv.FeatureTable] = []
    for table in TABLES:
        definitions.append(pv.Entity(name=table.key, value_type=pv.ValueType.INT64))
        definitions.append(
            pv.FeatureTable(
                name=table.name,
                entities=[table.key],
                features=[pv.Feature(f.name, types[f.dtype]) for f in table.features],
                batch_source=pv.FileSource(
                    path=str(files.source(table)),
                    file_format=pv.ParquetFormat(),
                    event_timestamp_column=EVENT_TIMESTAMP,
                    created_timestamp_column=CREATED_TIMESTAMP,
                ),
                max_age=table.max_age,
            )
        )
    with pv.Client(config=config) as client:
        client.apply(definitions)
    return config


def _child_spec(
    contender: Contender, files: ScenarioFiles, config: Path, work: Path, *, memory_limit: str | None, output: str
) -> dict[str, object]:
    return {
        "contender": contender.name,
        "kind": contender.kind,
        **contender.options,
        "config": str(config),
        "entity_rows": str(files.entity_rows),
        "sources": {t.name: str(files.source(t)) for t in TABLES},
        "tables": [
            {
                "name": t.name,
                "key": t.key,
                "features": [asdict(f) for f in t.features],
                "max_age_s": t.max_age.total_seconds(),
            }
            for t in TABLES
        ],
        "refs": all_refs(),
        "memory_limit": memory_limit,
        "output": output,
        "work": str(work),
        "temp_directory": str(work / "spill"),
    }


def _run_child(contender: Contender, spec: dict[str, object], *, timeout: float, rss_cap_mb: float) -> RunResult:
    """Run one measurement in a fresh process; return its result (peak RSS from ``wait4``)."""
    work = Path(str(spec["work"]))
    if contender.kind == "feast":
        python = PEERS_DIR / "feast" / "bin" / "python"
        if not python.exists():
            return RunResult(error=f"{python} is missing: run `bash benchmarks/peers_setup.sh feast`")
        script = work / "feast_driver.py"
        script.write_text(FEAST_DRIVER)
        argv = [str(python), str(script), json.dumps(spec)]
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    out_path, err_path = work / "child.out", work / "child.err"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENDER_")}
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=work, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        killed = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if killed is None and time.monotonic() > deadline:
                killed = f"timed out after {timeout:.0f} s"
            rss = _proc_rss_mb(proc.pid)
            if killed is None and rss is not None and rss > rss_cap_mb:
                killed = f"killed at {rss:,.0f} MB RSS (cap {rss_cap_mb:,.0f} MB)"
            if killed:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                _pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 1024
    stdout = out_path.read_text(errors="replace")
    line = next((ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARK)), None)
    if killed:
        return RunResult(peak_rss_mb=peak, error=killed)
    if line is None:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-12:]
        return RunResult(peak_rss_mb=peak, error=f"exit {proc.returncode}: " + "\n".join(tail))
    data = json.loads(line.removeprefix(RESULT_MARK))
    return RunResult(
        seconds=data["seconds"],
        cpu_s=data.get("cpu_s"),
        rows=data["rows"],
        peak_rss_mb=peak,
        rss_before_mb=data.get("rss_before_mb"),
        info=data.get("info", {}),
    )


def _proc_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else text


# -- the children: one measured run each -----------------------------------------------------------


def _self_rss_mb(field_name: str = "VmRSS") -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> float:
    """CPU time (user + system, all threads) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(spec: dict[str, object]) -> int:
    result = _child_provender(spec) if spec["kind"] == "provender" else _child_floor(spec)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


def _child_provender(spec: dict[str, object]) -> dict[str, object]:
    import pandas as pd

    import provender as pv

    entity_path = str(spec["entity_rows"])
    source: object = pd.read_parquet(entity_path) if spec["entity_as"] == "dataframe" else entity_path
    client = pv.Client(config=str(spec["config"]))
    refs = list(spec["refs"])  # type: ignore[call-overload]
    rss_before, cpu = _self_rss_mb(), _cpu_seconds()
    started = time.perf_counter()
    job = client.get_historical_features(refs, source)
    if spec["output"] == "parquet":
        rows = job.to_parquet(Path(str(spec["work"])) / "result.parquet")
    else:
        rows = job.to_arrow().num_rows
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    client.close()
    return {"seconds": seconds, "cpu_s": cpu, "rows": rows, "rss_before_mb": rss_before}


def floor_sql(spec: dict[str, object], *, ordered: bool) -> str:
    """The floor: entity rows ASOF LEFT JOIN each table on key and event time, nothing more."""
    sources: dict[str, str] = spec["sources"]  # type: ignore[assignment]
    select = ["e.driver_id", "e.customer_id", "e.event_timestamp"]
    joins = []
    tables = spec["tables"]
    assert isinstance(tables, list)  # _child_spec()'s
    for n, table in enumerate(tables):
        alias = f"s{n}"
        select += [f"{alias}.{f['name']} AS {table['name']}__{f['name']}" for f in table["features"]]
        joins.append(
            f"ASOF LEFT JOIN read_parquet('{sources[table['name']]}') {alias} "
            f"ON e.{table['key']} = {alias}.{table['key']} "
            f"AND e.event_timestamp >= {alias}.{EVENT_TIMESTAMP}"
        )
    entity = f"read_parquet('{spec['entity_rows']}', file_row_number = {str(ordered).lower()})"
    order = " ORDER BY e.file_row_number" if ordered else ""
    return f"SELECT {', '.join(select)} FROM {entity} e {' '.join(joins)}{order}"


def _child_floor(spec: dict[str, object]) -> dict[str, object]:
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET preserve_insertion_order = false")  # as Provender's engine does
    con.execute(f"SET temp_directory = '{spec['temp_directory']}'")
    if spec["memory_limit"]:
        con.execute(f"SET memory_limit = '{spec['memory_limit']}'")
    sql = floor_sql(spec, ordered=bool(spec["ordered"]))
    rss_before, cpu = _self_rss_mb(), _cpu_seconds()
    started = time.perf_counter()
    if spec["output"] == "parquet":
        rows = con.execute(
            f"COPY ({sql}) TO '{Path(str(spec['work'])) / 'floor.parquet'}' (FORMAT parquet)"
        ).fetchall()[0][0]
    else:
        rows = con.sql(sql).to_arrow_table().num_rows
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu_s": _cpu_seconds() - cpu, "rows": rows, "rss_before_mb": rss_before}


FEAST_DRIVER = textwrap.dedent('''\
    """One measured Feast retrieval; run by the peer venv's python with a JSON spec as argv[1]."""
    import json, logging, resource, sys, time, warnings
    from datetime import timedelta
    from pathlib import Path

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    spec = json.loads(sys.argv[1])

    import duckdb
    import feast
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32, Float64, Int64

    repo = Path(spec["work"]) / f"feast_repo_{spec['store']}"
    repo.mkdir(exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: bench\\n"
        f"registry: {repo / 'registry.db'}\\n"
        "provider: local\\n"
        f"online_store:\\n  type: sqlite\\n  path: {repo / 'online.db'}\\n"
        f"offline_store:\\n  type: {spec['store']}\\n"
        "entity_key_serialization_version: 3\\n"
    )
    dtypes = {"int64": Int64, "float32": Float32, "float64": Float64}
    objects = []
    for table in spec["tables"]:
        entity = Entity(name=table["key"], join_keys=[table["key"]], value_type=ValueType.INT64)
        source = FileSource(path=spec["sources"][table["name"]], timestamp_field="event_timestamp",
                            created_timestamp_column="created")
        view = FeatureView(
            name=table["name"], entities=[entity], ttl=timedelta(seconds=table["max_age_s"]),
            schema=[Field(name=table["key"], dtype=Int64),
                    *(Field(name=f["name"], dtype=dtypes[f["dtype"]]) for f in table["features"])],
            source=source,
        )
        objects += [entity, view]
    store = FeatureStore(repo_path=str(repo))
    store.apply(objects)
    entity_df = pd.read_parquet(spec["entity_rows"])

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    def cpu_s():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    rss_before, cpu = rss_mb(), cpu_s()
    started = time.perf_counter()
    job = store.get_historical_features(entity_df=entity_df, features=spec["refs"])
    table = job.to_arrow()
    seconds = time.perf_counter() - started
    cpu = cpu_s() - cpu
    info = {"feast": feast.__version__, "duckdb": duckdb.__version__}
    print("@@RESULT " + json.dumps({"seconds": seconds, "cpu_s": cpu, "rows": table.num_rows,
                                    "rss_before_mb": rss_before, "info": info}), flush=True)
''')


# -- the correctness guard -------------------------------------------------------------------------


def correctness_guard(files: ScenarioFiles, config: Path) -> dict[str, object]:
    """Compare Provender's result with the plain ASOF join's; see the module docstring."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    import provender as pv

    with pv.Client(config=config) as client:
        result = client.get_historical_features(all_refs(), str(files.entity_rows)).to_arrow()
    result = result.append_column("__rid", pa.array(np.arange(result.num_rows, dtype=np.int64)))
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.register("p", result)
    entity = f"read_parquet('{files.entity_rows}', file_row_number = true)"
    counts = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE p.__rid IS NULL OR p.driver_id IS DISTINCT FROM e.driver_id "
        f"OR p.customer_id IS DISTINCT FROM e.customer_id OR p.event_timestamp IS DISTINCT FROM e.event_timestamp) "
        f"FROM {entity} e LEFT JOIN p ON p.__rid = e.file_row_number"
    ).fetchone()
    assert counts is not None  # an aggregate has one row
    entity_rows, order_mismatches = counts
    check: dict[str, object] = {
        "entity_rows": entity_rows,
        "rows_returned": result.num_rows,
        "order_mismatches": order_mismatches,
        "tables": {},
    }
    ok = entity_rows == result.num_rows and order_mismatches == 0
    for table in TABLES:
        kinds = _guard_table(con, table, entity, str(files.source(table)))
        check["tables"][table.name] = kinds  # type: ignore[index]
        ok = ok and all(k["mismatches"] == 0 for k in kinds.values())
    check["ok"] = ok
    exact = sum(t["exact"]["compared"] for t in check["tables"].values())  # type: ignore[attr-defined]
    bad = sum(k["mismatches"] for t in check["tables"].values() for k in t.values())  # type: ignore[attr-defined]
    tied = sum(t.get("tied", {}).get("compared", 0) for t in check["tables"].values())  # type: ignore[attr-defined]
    print(
        f"  compared {entity_rows:,} rows x {len(TABLES)} tables: {exact:,} exact matches, {tied:,} tied "
        f"(tie-break), the rest null by rule; order mismatches {order_mismatches}, value mismatches {bad}"
        f" -> {'OK' if ok else 'FAILED'}"
    )
    return check


def _guard_table(con: object, table: TableSpec, entity: str, source: str) -> dict[str, dict[str, int]]:
    """Classify each entity row by the plain ASOF match of ``table`` and count Provender's mismatches.

    exact: a unique (key, event time) match within max_age: values must equal the match's.
    tied: the match's (key, event time) has other rows: values must be the greatest created's.
    ambiguous: even created times tie (not compared). no_candidate / outside_max_age: null.
    """
    f = table.feature_names
    out = [f"p.{table.name}__{name}" for name in f]

    def differs(ref: str, prefix: str = "") -> str:
        return " OR ".join(f"{o} IS DISTINCT FROM {ref}.{prefix}{n}" for o, n in zip(out, f, strict=True))

    nonnull = " OR ".join(f"{o} IS NOT NULL" for o in out)
    winners = ", ".join(f"arg_max({n}, {CREATED_TIMESTAMP}) AS {n}" for n in f)
    sql = f"""
    WITH e AS (SELECT file_row_number AS rid, {table.key} AS k, {EVENT_TIMESTAMP} AS ts FROM {entity}),
    src AS (SELECT {table.key} AS k, {EVENT_TIMESTAMP} AS ev, {CREATED_TIMESTAMP}, {", ".join(f)}
            FROM read_parquet('{source}')),
    ties AS (SELECT k, ev, {winners}, count(*) - count(DISTINCT {CREATED_TIMESTAMP}) AS dup_created
             FROM src GROUP BY k, ev HAVING count(*) > 1),
    matched AS (SELECT e.rid, e.ts, s.* FROM e ASOF LEFT JOIN src s ON e.k = s.k AND e.ts >= s.ev),
    cls AS (SELECT a.*, CASE WHEN a.ev IS NULL THEN 'no_candidate'
                             WHEN a.ev < a.ts - INTERVAL {table.max_age.days} DAY THEN 'outside_max_age'
                             WHEN t.dup_created > 0 THEN 'ambiguous'
                             WHEN t.k IS NOT NULL THEN 'tied' ELSE 'exact' END AS kind,
                   {", ".join(f"t.{n} AS w_{n}" for n in f)}
            FROM matched a LEFT JOIN ties t ON a.k = t.k AND a.ev = t.ev)
    SELECT kind, count(*),
           count(*) FILTER (WHERE CASE kind WHEN 'exact' THEN ({differs("c")})
                                            WHEN 'tied' THEN ({differs("c", "w_")})
                                            WHEN 'ambiguous' THEN false
                                            ELSE ({nonnull}) END),
           count(*) FILTER (WHERE kind = 'tied' AND ({" OR ".join(f"c.{n} IS DISTINCT FROM c.w_{n}" for n in f)}))
    FROM cls c JOIN p ON p.__rid = c.rid GROUP BY kind ORDER BY kind
    """
    rows = con.execute(sql).fetchall()  # type: ignore[attr-defined]
    kinds = {kind: {"compared": n, "mismatches": bad} for kind, n, bad, _ in rows}
    for kind, _n, _bad, floor_wrong in rows:
        if kind == "tied":
            kinds[kind]["floor_wrong"] = floor_wrong
    kinds.setdefault("exact", {"compared": 0, "mismatches": 0})
    return kinds


# -- reporting ---------------------------------------------------------------------------------------


def _machine() -> dict[str, object]:
    import duckdb
    import numpy
    import pandas
    import pyarrow

    import provender

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:")
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "pandas": pandas.__version__,
        "numpy": numpy.__version__,
        "provender": provender.__version__,
        "platform": platform.platform(),
        "git": _git_revision(),
    }


def _git_revision() -> str | None:
    """The checkout's commit, ``-dirty`` when src/ has uncommitted changes (the engine measured)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=BENCH_DIR.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def _report(
    size: str,
    names: list[str],
    results: dict[str, list[RunResult]],
    check: dict[str, object] | None,
    *,
    files: ScenarioFiles,
    started_at: datetime,
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
    gen_seconds: float,
    **settings: object,
) -> dict[str, object]:
    rows: list[dict[str, Any]] = []
    for name in names:
        runs = results[name]
        ok = [r for r in runs if r.error is None]
        times = [r.seconds for r in ok if r.seconds is not None]
        rows.append(
            {
                "contender": name,
                "label": CONTENDERS[name].label,
                "runs": [asdict(r) for r in runs],
                "median_s": statistics.median(times) if times else None,
                "min_s": min(times) if times else None,
                "max_s": max(times) if times else None,
                "cpu_s": statistics.median(r.cpu_s for r in ok if r.cpu_s is not None) if ok else None,
                "peak_rss_mb": max((r.peak_rss_mb for r in runs if r.peak_rss_mb is not None), default=None),
                "rows": sorted({r.rows for r in ok}) if ok else [],
                "error": next((r.error for r in runs if r.error is not None), None),
                "info": next((r.info for r in ok if r.info), {}),
            }
        )
    # The ratio's base: provender-df, else (XL) the first Provender contender measured.
    bases = sorted(
        (r for r in rows if CONTENDERS[r["contender"]].kind == "provender" and r["median_s"]),
        key=lambda r: r["contender"] != REFERENCE,
    )
    ref = bases[0]["median_s"] if bases else None
    for row in rows:
        row["x_provender"] = row["median_s"] / ref if ref and row["median_s"] else None
    load_before, load_after = load
    report: dict[str, object] = {
        "benchmark": "historical",
        "size": size,
        "date": started_at.isoformat(timespec="seconds"),
        "machine": {**_machine(), "loadavg_before": load_before, "loadavg_after": load_after},
        "scenario": {
            **asdict(files.size),
            "tables": [{"name": t.name, "max_age_days": t.max_age.days} for t in TABLES],
            "generate_s": round(gen_seconds, 1),
        },
        "settings": settings,
        "contenders": rows,
        "check": check,
    }
    if size == "L":
        report["targets"] = _targets(rows, check)
    return report


def _targets(rows: list[dict[str, Any]], check: dict[str, object] | None) -> dict[str, object]:
    by = {r["contender"]: r for r in rows}
    me = by.get(REFERENCE, {})
    median, rss = me.get("median_s"), me.get("peak_rss_mb")

    def ratio(peer: str) -> float | None:
        row = by.get(peer)
        return row["median_s"] / median if row and row.get("median_s") and median else None

    def verdict(value: float | None, limit: float, *, at_most: bool) -> str:
        if value is None:
            return "not measured"
        return "met" if (value <= limit if at_most else value >= limit) else "missed"

    tied = sum(t.get("tied", {}).get("compared", 0) for t in (check or {}).get("tables", {}).values())  # type: ignore[attr-defined]
    return {
        "median_s": {
            "target": f"<= {TARGETS_L['median_s']} s",
            "value": median,
            "verdict": verdict(median, TARGETS_L["median_s"], at_most=True),
        },
        "x_feast_duckdb": {
            "target": f">= {TARGETS_L['x_feast_duckdb']}x",
            "value": ratio("feast-duckdb"),
            "verdict": verdict(ratio("feast-duckdb"), TARGETS_L["x_feast_duckdb"], at_most=False),
        },
        "x_feast_file": {
            "target": f">= {TARGETS_L['x_feast_file']}x",
            "value": ratio("feast-file"),
            "verdict": verdict(ratio("feast-file"), TARGETS_L["x_feast_file"], at_most=False),
        },
        "peak_rss_mb": {
            "target": f"<= {TARGETS_L['peak_rss_mb']:.0f} MB",
            "value": rss,
            "verdict": verdict(rss, TARGETS_L["peak_rss_mb"], at_most=True),
        },
        "tie_break": {
            "target": "honoured (0 mismatches on tied rows)",
            "value": tied,
            "verdict": "not checked" if check is None else ("met" if check["ok"] else "missed"),
        },
    }


def _fmt(value: object, spec: str = ".2f") -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else format(value, spec)


def _table_lines(report: dict[str, object], *, markdown: bool) -> list[str]:
    head = ["contender", "size", "median s", "min s", "max s", "CPU s", "peak RSS MB", "rows returned", "x Provender"]
    lines = []
    for row in report["contenders"]:  # type: ignore[attr-defined]
        rows = ", ".join(f"{n:,}" for n in row["rows"]) or "-"
        cells = [
            row["contender"],
            report["size"],
            _fmt(row["median_s"]),
            _fmt(row["min_s"]),
            _fmt(row["max_s"]),
            _fmt(row.get("cpu_s"), ".1f"),
            _fmt(row["peak_rss_mb"], ",.0f"),
            rows,
            _fmt(row["x_provender"], ".2f"),
        ]
        if row["error"]:
            cells[2] = "FAILED" if row["median_s"] is None else cells[2]
        lines.append(cells)
    if markdown:
        return [
            "| " + " | ".join(head) + " |",
            "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(c) + " |" for c in lines),
        ]
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]

    def fmt(cells: list[str]) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    return [fmt(head), fmt(["-" * w for w in widths]), *(fmt(c) for c in lines)]


def _print_table(report: dict[str, object]) -> None:
    print()
    for line in _table_lines(report, markdown=False):
        print(line)
    for row in report["contenders"]:  # type: ignore[attr-defined]
        if row["error"]:
            print(f"  {row['contender']} failed: {_one_line(row['error'])}")
    for name, target in (report.get("targets") or {}).items():  # type: ignore[attr-defined]
        print(f"  target {name}: {target['target']}, got {_fmt(target['value'], '.2f')} -> {target['verdict']}")


def _write_markdown() -> None:
    reports = []
    for size in SIZES:
        path = RESULTS_DIR / f"historical_{size}.json"
        if path.is_file():
            reports.append(json.loads(path.read_text()))
    lines = [
        "# Historical retrieval benchmark",
        "",
        "Generated by `benchmarks/historical.py` from `historical_<size>.json`; do not edit by hand. "
        "Seconds are the median (min, max) of the runs of each contender, each run in a fresh process, "
        "timing only the retrieval; CPU s is the median CPU time (user + system, all threads) of the retrieval, "
        "steadier than wall time on a shared machine; "
        "peak RSS is the whole process's (`ru_maxrss`), the highest over its runs; "
        "`x Provender` is the contender's median over `provender-df`'s (XL: `provender-path`'s).",
        "",
    ]
    for report in reports:
        m = report["machine"]
        sc = report["scenario"]
        lines += [
            f"## Size {report['size']}",
            "",
            f"{sc['driver_rows']:,} driver rows over {sc['drivers']:,} drivers, {sc['customer_rows']:,} customer "
            f"rows over {sc['customers']:,} customers, {sc['entity_rows']:,} entity rows; "
            f"{report['settings']['runs']} run(s) per contender"
            + (f"; `memory_limit: {report['settings']['memory_limit']}`" if report["settings"]["memory_limit"] else "")
            + ".",
            "",
            f"Run {report['date']} on {m['nproc']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, shared with "
            f"other work (load average {m['loadavg_before'][0]:.1f} before, {m['loadavg_after'][0]:.1f} after); "
            f"Provender at {m.get('git') or 'an unrecorded revision'}; "
            f"Python {m['python']}, DuckDB {m['duckdb']}, pyarrow {m['pyarrow']}, pandas {m['pandas']}"
            + _peer_versions(report)
            + ".",
            "",
        ]
        lines += _table_lines(report, markdown=True)
        lines.append("")
        for row in report["contenders"]:
            if row["error"]:
                lines.append(f"- `{row['contender']}` failed: {_one_line(row['error'])}")
        if report["size"] == "XL":
            lines.append(
                "- the spill scenario: the result is streamed with `to_parquet`, and DuckDB spills what exceeds "
                "`memory_limit` to the project's `.provender/duckdb_tmp`; peak RSS covers the whole process."
            )
        check = report.get("check")
        if check:
            lines.append(_check_line(check))
        for name, target in (report.get("targets") or {}).items():
            value = _fmt(target["value"], ".2f")
            lines.append(f"- target `{name}` {target['target']}: {value} -> **{target['verdict']}**")
        lines.append("")
    (RESULTS_DIR / "historical.md").write_text("\n".join(lines))


def _peer_versions(report: dict[str, object]) -> str:
    info = next((r["info"] for r in report["contenders"] if r["info"].get("feast")), None)  # type: ignore[attr-defined]
    return f"; peer Feast {info['feast']} with DuckDB {info['duckdb']}" if info else ""


def _check_line(check: dict[str, object]) -> str:
    parts = []
    for name, kinds in check["tables"].items():  # type: ignore[attr-defined]
        detail = ", ".join(
            f"{kind} {v['compared']:,} ({v['mismatches']} wrong"
            + (f"; plain ASOF wrong on {v['floor_wrong']:,}" if "floor_wrong" in v else "")
            + ")"
            for kind, v in kinds.items()
        )
        parts.append(f"`{name}`: {detail}")
    verdict = "OK" if check["ok"] else "FAILED"
    return (
        f"- correctness guard ({verdict}): {check['rows_returned']:,} of {check['entity_rows']:,} rows returned, "
        f"{check['order_mismatches']} out of order; " + "; ".join(parts) + "."
    )


if __name__ == "__main__":
    sys.exit(main())
