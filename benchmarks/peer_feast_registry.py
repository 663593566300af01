"""Feast 0.67's SQL registry: run by registry.py with the peer's python, never imported by Provender.

Every feature view's FileSource points at one small Parquet file (Feast's apply reads its schema).
Argument: a JSON spec (work dir, SQLAlchemy registry URL, table count for the apply, total tables,
list and get call counts, seed). Times, on an empty registry: ``FeatureStore.apply`` of one
entity and N feature views; then (after applying the rest, untimed) ``list_feature_views()`` in a
new FeatureStore (cold, then warm calls) and ``get_feature_view(name)`` for random names. Feast's
defaults read the registry database on every call (``allow_cache=False``), as Provender does.
Prints ``@@RESULT {...}`` (milliseconds).
"""

import json
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

spec = json.loads(Path(sys.argv[1]).read_text())
repo = Path(spec["work"])
repo.mkdir(parents=True, exist_ok=True)
(repo / "feature_store.yaml").write_text(
    "project: bench\nprovider: local\n"
    f"registry:\n  registry_type: sql\n  path: {spec['registry']}\n  cache_ttl_seconds: 60\n"
    f"online_store:\n  type: sqlite\n  path: {repo}/online.db\n"
    "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
)
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from feast import Entity, FeatureStore, FeatureView, Field, FileSource  # noqa: E402
from feast.types import Float32, Int64  # noqa: E402

# Feast's apply reads each FileSource's schema: every view points at one small file with the columns.
source_file = repo / "data" / "source.parquet"
source_file.parent.mkdir(exist_ok=True)
now = pa.array([0], pa.timestamp("us", tz="UTC"))
columns = {"driver_id": pa.array([1], pa.int64()), "event_timestamp": now, "created": now}
columns |= {f"f{i}": pa.array([0.5], pa.float32()) for i in range(4)} | {"trips": pa.array([1], pa.int64())}
pq.write_table(pa.table(columns), source_file)

driver = Entity(name="driver_id", join_keys=["driver_id"])


def view(n: int) -> FeatureView:
    return FeatureView(
        name=f"table_{n:04d}",
        entities=[driver],
        ttl=timedelta(days=1),
        online=True,
        source=FileSource(
            name=f"source_{n:04d}",
            path=str(source_file),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        ),
        schema=[Field(name=f"f{i}", dtype=Float32) for i in range(4)] + [Field(name="trips", dtype=Int64)],
    )


result: dict[str, float] = {}
store = FeatureStore(repo_path=str(repo))
views = [view(n) for n in range(spec["total"])]
began = time.perf_counter()
store.apply([driver, *views[: spec["apply"]]])
result["apply_ms"] = (time.perf_counter() - began) * 1000
store.apply(views[spec["apply"] :])

reader = FeatureStore(repo_path=str(repo))
began = time.perf_counter()
listed = reader.list_feature_views()
result["list_cold_ms"] = (time.perf_counter() - began) * 1000
assert len(listed) == spec["total"], len(listed)
timings = []
for _ in range(spec["list_calls"]):
    began = time.perf_counter()
    reader.list_feature_views()
    timings.append((time.perf_counter() - began) * 1000)
result["list_ms"] = sorted(timings)[len(timings) // 2]

rng = random.Random(spec["seed"])
names = [f"table_{rng.randrange(spec['total']):04d}" for _ in range(spec["get_calls"])]
for name in names[:50]:  # warm-up
    reader.get_feature_view(name)
timings = []
for name in names:
    began = time.perf_counter()
    reader.get_feature_view(name)
    timings.append((time.perf_counter() - began) * 1000)
timings.sort()
result["get_p50_ms"] = timings[len(timings) // 2]
result["get_p99_ms"] = timings[min(len(timings) - 1, int(0.99 * len(timings)))]
print("@@RESULT " + json.dumps(result), flush=True)
