"""Prepare a small feature repository for the Kubeflow example, and apply it.

    python examples/kubeflow/prepare.py REPO [--online-url redis://localhost:6379/0]

Writes REPO/provender.yaml (SQLite registry; the online store: Redis at --online-url, else
SQLite), REPO/data/driver_stats.parquet (20 drivers, one row a day at noon, 19 days before T, 2 after),
REPO/definitions.py, and REPO/entities.parquet (every driver on 7 days, each with a label, plus
every driver at T = 2026-11-20T00:00:00, the time the pipeline ingests up to and checks), then
applies the definitions.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

import provender as pv

T = datetime(2026, 11, 20, tzinfo=UTC)
DRIVERS = list(range(1001, 1021))

DEFINITIONS = '''"""The Kubeflow example's definitions."""
import provender as pv

driver = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64, description="Driver id")
driver_stats = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[
        pv.Feature("conv_rate", pv.ValueType.DOUBLE),
        pv.Feature("acc_rate", pv.ValueType.DOUBLE),
        pv.Feature("avg_daily_trips", pv.ValueType.INT64),
    ],
    batch_source=pv.FileSource(path="data/driver_stats.parquet", event_timestamp_column="datetime"),
)
'''


def prepare(repo: Path, online_url: str | None) -> None:
    """Write the repository's files and apply its definitions."""
    rng = np.random.default_rng(7)
    (repo / "data").mkdir(parents=True, exist_ok=True)
    days = [T + timedelta(days=day, hours=12) for day in range(-19, 2)]  # two rows after T: not ingested
    stats = pd.DataFrame(
        [(driver, day) for driver in DRIVERS for day in days], columns=["driver_id", "datetime"]
    ).assign(
        conv_rate=lambda f: rng.uniform(0, 1, len(f)).round(4),
        acc_rate=lambda f: rng.uniform(0.5, 1, len(f)).round(4),
        avg_daily_trips=lambda f: rng.integers(1, 40, len(f)),
    )
    stats.to_parquet(repo / "data" / "driver_stats.parquet", index=False)
    times = [T - timedelta(days=day) for day in range(1, 8)] + [T]
    entities = pd.DataFrame(
        [(driver, at) for at in times for driver in DRIVERS], columns=["driver_id", "event_timestamp"]
    )
    entities["label"] = (rng.uniform(0, 1, len(entities)) > 0.5).astype("int64")
    entities.to_parquet(repo / "entities.parquet", index=False)
    online = f"{{store: redis, url: '{online_url}'}}" if online_url else "{store: sqlite, path: online.db}"
    (repo / "provender.yaml").write_text(f"project: kubeflow\nregistry: sqlite:///registry.db\nonline: {online}\n")
    (repo / "definitions.py").write_text(DEFINITIONS)
    namespace: dict[str, object] = {}
    exec(compile(DEFINITIONS, "definitions.py", "exec"), namespace)
    with pv.Client(config=repo / "provender.yaml") as client:
        client.apply([namespace["driver"], namespace["driver_stats"]])


def main(argv: list[str]) -> int:
    """Parse the arguments and prepare the repository."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path)
    parser.add_argument("--online-url", default=None, help="Redis URL of the online store (default: SQLite)")
    args = parser.parse_args(argv)
    prepare(args.repo, args.online_url)
    print(f"prepared {args.repo}: {len(DRIVERS)} drivers, T = {T.isoformat()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
