"""A driver project for ingestion tests: hourly stats with ties, written as Parquet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import provender as pv


def driver_table(source_dir: Path, *, max_age: timedelta | None = timedelta(days=2)) -> pv.FeatureTable:
    """The ``driver_stats`` table reading Parquet under ``source_dir``."""
    return pv.FeatureTable(
        name="driver_stats",
        entities=["driver_id"],
        features=[
            pv.Feature("trips", pv.ValueType.INT64),
            pv.Feature("rate", pv.ValueType.DOUBLE),
            pv.Feature("tag", pv.ValueType.STRING),
        ],
        batch_source=pv.FileSource(
            path=str(source_dir), event_timestamp_column="ts", created_timestamp_column="created"
        ),
        max_age=max_age,
    )


def write_driver_rows(source_dir: Path, *, drivers: int, hours: int, end: datetime, seed: int = 7) -> pa.Table:
    """Write hourly rows for ``drivers`` drivers over ``hours`` hours before ``end``.

    Every (driver, hour) has two rows with the same event time and different created times,
    so ingestion must break the tie; the later-created row has ``tag = "winner"``.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(1, drivers + 1, dtype=np.int64)
    stamps = np.array([(end - timedelta(hours=h)).replace(tzinfo=None) for h in range(1, hours + 1)], "datetime64[us]")
    driver_col = np.tile(ids, len(stamps))
    ts_col = np.repeat(stamps, len(ids))
    n = len(driver_col)
    created_late = ts_col + np.timedelta64(10, "m")
    created_early = ts_col + np.timedelta64(5, "m")
    table = pa.table(
        {
            "driver_id": np.concatenate([driver_col, driver_col]),
            "trips": np.concatenate([rng.integers(0, 100, n), rng.integers(100, 200, n)]),
            "rate": np.concatenate([rng.random(n), rng.random(n)]),
            "tag": pa.array(["winner"] * n + ["loser"] * n),
            "ts": pa.array(np.concatenate([ts_col, ts_col]), pa.timestamp("us", tz="UTC")),
            "created": pa.array(np.concatenate([created_late, created_early]), pa.timestamp("us", tz="UTC")),
        }
    )
    source_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, source_dir / "part-0.parquet", row_group_size=50_000)
    return table


def hour(at: datetime) -> datetime:
    """``at`` rounded down to the hour, UTC."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
