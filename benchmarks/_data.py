"""Seeded data for the benchmarks: the driver scenario, as Parquet files, cached by size.

The scenario is Feast's classic ride-hailing example, scaled up. Two feature tables and a set
of entity rows (the "training events" to build features for):

- ``driver_hourly_stats``: ``driver_id`` INT64, ``conv_rate`` FLOAT, ``acc_rate`` FLOAT,
  ``avg_daily_trips`` INT64, ``event_timestamp``, ``created``; ``max_age`` 7 days.
- ``customer_profile``: ``customer_id`` INT64, ``current_balance`` DOUBLE,
  ``avg_passenger_count`` FLOAT, ``lifetime_trip_count`` INT64, ``event_timestamp``,
  ``created``; ``max_age`` 30 days.
- entity rows: ``driver_id``, ``customer_id``, ``event_timestamp``.

Event times are uniform over the 90 days from :data:`SCENARIO_START` (microsecond precision,
UTC-aware), ``created = event + U(0, 1 h)``. A fraction :data:`TIE_FRACTION` of feature rows
repeats the key and event time of another row of the same table with its own created time and
values, so the created-timestamp tie-break matters: a join that ignores it is wrong on those
rows. Keys are uniform over ``[base, base + n_keys)``. Rows are written in generation order
(not sorted by time or key), in row groups of :data:`ROW_GROUP_ROWS`.

Generation uses one ``numpy`` generator seeded with :data:`SEED`, in fixed-size chunks, so the
files are identical from run to run (and machine to machine, for a given numpy). Files are
cached under ``benchmarks/data/<size>/`` (gitignored) with a manifest; they are regenerated
only when the manifest differs from what this module would write.

Usage (from another benchmark)::

    from _data import SIZES, ensure_scenario, DRIVER_STATS
    files = ensure_scenario(SIZES["S"])        # generates once, then returns cached paths
    files.driver_stats, files.customer_profile, files.entity_rows   # Parquet paths
    DRIVER_STATS.key, DRIVER_STATS.features, DRIVER_STATS.max_age    # to build definitions

Run alone to generate: ``python benchmarks/_data.py --size L``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

GENERATOR_VERSION = 1
"""Bumped whenever the generated data changes; cached files of another version are rebuilt."""
SEED = 20_200_817
SCENARIO_START = datetime(2025, 1, 1, tzinfo=UTC)
SCENARIO_DAYS = 90
CREATED_LAG_MAX = timedelta(hours=1)
TIE_FRACTION = 0.01
CHUNK_ROWS = 5_000_000
ROW_GROUP_ROWS = 1_000_000
DATA_DIR = Path(__file__).resolve().parent / "data"

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created"
_US = 1_000_000
_TS_TYPE = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, slots=True)
class Size:
    """A named scale of the scenario: row and key counts."""

    name: str
    driver_rows: int
    drivers: int
    customer_rows: int
    customers: int
    entity_rows: int


SIZES: dict[str, Size] = {
    "S": Size("S", driver_rows=1_000_000, drivers=10_000, customer_rows=100_000, customers=10_000, entity_rows=100_000),
    "L": Size(
        "L", driver_rows=10_000_000, drivers=100_000, customer_rows=1_000_000, customers=100_000, entity_rows=1_000_000
    ),
    # The spill scenario: a 100M-row feature table and 10M entity rows.
    "XL": Size(
        "XL",
        driver_rows=100_000_000,
        drivers=1_000_000,
        customer_rows=10_000_000,
        customers=1_000_000,
        entity_rows=10_000_000,
    ),
}


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature column: its name and Arrow type name (``float32``, ``float64``, ``int64``)."""

    name: str
    dtype: str


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A feature table of the scenario, enough to declare it in Provender or a peer."""

    name: str
    key: str
    key_base: int
    features: tuple[FeatureSpec, ...]
    max_age: timedelta

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature column names, in order."""
        return tuple(f.name for f in self.features)

    def refs(self) -> list[str]:
        """The ``"<table>:<feature>"`` refs of all features."""
        return [f"{self.name}:{f.name}" for f in self.features]


DRIVER_STATS = TableSpec(
    name="driver_hourly_stats",
    key="driver_id",
    key_base=1_001,
    features=(
        FeatureSpec("conv_rate", "float32"),
        FeatureSpec("acc_rate", "float32"),
        FeatureSpec("avg_daily_trips", "int64"),
    ),
    max_age=timedelta(days=7),
)
CUSTOMER_PROFILE = TableSpec(
    name="customer_profile",
    key="customer_id",
    key_base=10_000_001,
    features=(
        FeatureSpec("current_balance", "float64"),
        FeatureSpec("avg_passenger_count", "float32"),
        FeatureSpec("lifetime_trip_count", "int64"),
    ),
    max_age=timedelta(days=30),
)
TABLES = (DRIVER_STATS, CUSTOMER_PROFILE)
"""The feature tables, in the order benchmarks request them."""


def all_refs() -> list[str]:
    """All seven feature refs of the scenario, driver's first."""
    return [ref for table in TABLES for ref in table.refs()]


@dataclass(frozen=True, slots=True)
class ScenarioFiles:
    """The Parquet files of one size of the scenario."""

    size: Size
    root: Path
    driver_stats: Path
    customer_profile: Path
    entity_rows: Path

    def source(self, table: TableSpec) -> Path:
        """The Parquet file of ``table``."""
        return {DRIVER_STATS.name: self.driver_stats, CUSTOMER_PROFILE.name: self.customer_profile}[table.name]


def scenario_files(size: Size, data_dir: Path = DATA_DIR) -> ScenarioFiles:
    """Return where ``size``'s files are (or will be); generates nothing."""
    root = data_dir / size.name
    return ScenarioFiles(
        size=size,
        root=root,
        driver_stats=root / f"{DRIVER_STATS.name}.parquet",
        customer_profile=root / f"{CUSTOMER_PROFILE.name}.parquet",
        entity_rows=root / "entity_rows.parquet",
    )


def _manifest(size: Size) -> dict[str, object]:
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": SEED,
        "size": asdict(size),
        "start": SCENARIO_START.isoformat(),
        "days": SCENARIO_DAYS,
        "tie_fraction": TIE_FRACTION,
        "chunk_rows": CHUNK_ROWS,
        "numpy": np.__version__,
    }


def ensure_scenario(size: Size, data_dir: Path = DATA_DIR, *, log: Callable[[str], None] = print) -> ScenarioFiles:
    """Generate ``size``'s files unless an identical cached copy exists; return their paths.

    Safe to interrupt: files are written under a temporary directory and renamed into place.
    """
    files = scenario_files(size, data_dir)
    manifest = _manifest(size)
    manifest_path = files.root / "manifest.json"
    if manifest_path.is_file():
        cached = json.loads(manifest_path.read_text())
        cached.pop("seconds", None)
        if cached == manifest and all(
            p.is_file() for p in (files.driver_stats, files.customer_profile, files.entity_rows)
        ):
            return files
    started = time.perf_counter()
    staging = data_dir / f".tmp-{size.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staged = scenario_files(size, staging)
    staged.root.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    log(f"generating size {size.name} under {files.root} ...")
    _write_table(staged.driver_stats, DRIVER_STATS, rows=size.driver_rows, keys=size.drivers, rng=rng)
    _write_table(staged.customer_profile, CUSTOMER_PROFILE, rows=size.customer_rows, keys=size.customers, rng=rng)
    _write_entity_rows(staged.entity_rows, size, rng=rng)
    seconds = time.perf_counter() - started
    (staged.root / "manifest.json").write_text(json.dumps({**manifest, "seconds": round(seconds, 1)}, indent=2))
    shutil.rmtree(files.root, ignore_errors=True)
    staged.root.rename(files.root)
    shutil.rmtree(staging, ignore_errors=True)
    log(f"generated size {size.name} in {seconds:.1f} s")
    return files


def _chunks(total: int) -> Iterator[int]:
    done = 0
    while done < total:
        n = min(CHUNK_ROWS, total - done)
        yield n
        done += n


def _event_times(rng: np.random.Generator, n: int) -> np.ndarray:
    start_us = int(SCENARIO_START.timestamp()) * _US
    return start_us + rng.integers(0, SCENARIO_DAYS * 86_400 * _US, size=n, dtype=np.int64)


def _timestamps(micros: np.ndarray) -> pa.Array:
    return pa.array(micros.view("datetime64[us]")).cast(_TS_TYPE)


def _feature_values(rng: np.random.Generator, spec: FeatureSpec, n: int) -> pa.Array:
    if spec.dtype == "int64":
        return pa.array(rng.integers(0, 10_000, size=n, dtype=np.int64))
    if spec.dtype == "float32":
        return pa.array(rng.random(n, dtype=np.float32))
    if spec.dtype == "float64":
        return pa.array(rng.random(n, dtype=np.float64) * 10_000.0)
    raise ValueError(f"unknown dtype {spec.dtype!r}")


def _write_table(path: Path, table: TableSpec, *, rows: int, keys: int, rng: np.random.Generator) -> None:
    schema = pa.schema(
        [
            (table.key, pa.int64()),
            *((f.name, pa.from_numpy_dtype(np.dtype(f.dtype))) for f in table.features),
            (EVENT_TIMESTAMP, _TS_TYPE),
            (CREATED_TIMESTAMP, _TS_TYPE),
        ]
    )
    lag_us = int(CREATED_LAG_MAX / timedelta(microseconds=1))
    with pq.ParquetWriter(path, schema) as writer:
        for n in _chunks(rows):
            key = table.key_base + rng.integers(0, keys, size=n, dtype=np.int64)
            event = _event_times(rng, n)
            # Ties: some rows take the key and event time of another row of the chunk.
            tied = np.flatnonzero(rng.random(n) < TIE_FRACTION)
            origin = rng.integers(0, n, size=tied.size)
            key[tied] = key[origin]
            event[tied] = event[origin]
            created = event + rng.integers(0, lag_us, size=n, dtype=np.int64)
            columns = [
                pa.array(key),
                *(_feature_values(rng, f, n) for f in table.features),
                _timestamps(event),
                _timestamps(created),
            ]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=ROW_GROUP_ROWS)


def _write_entity_rows(path: Path, size: Size, *, rng: np.random.Generator) -> None:
    schema = pa.schema(
        [(DRIVER_STATS.key, pa.int64()), (CUSTOMER_PROFILE.key, pa.int64()), (EVENT_TIMESTAMP, _TS_TYPE)]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for n in _chunks(size.entity_rows):
            driver = DRIVER_STATS.key_base + rng.integers(0, size.drivers, size=n, dtype=np.int64)
            customer = CUSTOMER_PROFILE.key_base + rng.integers(0, size.customers, size=n, dtype=np.int64)
            event = _event_times(rng, n)
            columns = [pa.array(driver), pa.array(customer), _timestamps(event)]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=ROW_GROUP_ROWS)


def main() -> None:
    """Generate (or find cached) the scenario files of one size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="S")
    args = parser.parse_args()
    files = ensure_scenario(SIZES[args.size])
    for path in (files.driver_stats, files.customer_profile, files.entity_rows):
        print(f"{path}  {pq.ParquetFile(path).metadata.num_rows:,} rows  {path.stat().st_size / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
