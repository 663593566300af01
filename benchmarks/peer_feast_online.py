"""Feast 0.67's in-process get_online_features on Redis: run by online_read.py with the peer's python.

Never imported by Provender. Argument: a JSON spec (work dir, redis host:port, tables, refs, the
request sets, calls, runs). Materializes the same Parquet data into Redis (db 1), then times
``get_online_features`` on the same requests; prints ``@@RESULT {case_p50: [...], ...}`` (ms per run).
"""

import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

spec = json.loads(Path(sys.argv[1]).read_text())
repo = Path(spec["work"])
repo.mkdir(parents=True, exist_ok=True)
(repo / "feature_store.yaml").write_text(
    f"project: bench\nregistry: {repo}/registry.db\nprovider: local\n"
    f'online_store:\n  type: redis\n  connection_string: "{spec["redis"]},db=1"\n'
    "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
)
from feast import Entity, FeatureStore, FeatureView, Field, FileSource  # noqa: E402
from feast.types import Float32, Float64, Int64  # noqa: E402

types = {"float32": Float32, "float64": Float64, "int64": Int64}
objects = []
for t in spec["tables"]:
    entity = Entity(name=t["key"], join_keys=[t["key"]])
    source = FileSource(path=t["path"], timestamp_field="event_timestamp", created_timestamp_column="created")
    view = FeatureView(
        name=t["name"],
        entities=[entity],
        ttl=timedelta(days=3650),
        online=True,
        source=source,
        schema=[Field(name=f, dtype=types[d]) for f, d in t["features"]],
    )
    objects += [entity, view]
store = FeatureStore(repo_path=str(repo))
store.apply(objects)
store.materialize(start_date=datetime.fromisoformat(spec["start"]), end_date=datetime.fromisoformat(spec["end"]))

result: dict[str, list[float]] = {}
for _run in range(spec["runs"]):
    for case, requests in spec["requests"].items():
        for rows in requests[:8]:  # warm-up
            store.get_online_features(features=spec["refs"], entity_rows=rows).to_dict()
        timings = []
        for n in range(spec["calls"]):
            rows = requests[n % len(requests)]
            began = time.perf_counter()
            store.get_online_features(features=spec["refs"], entity_rows=rows).to_dict()
            timings.append((time.perf_counter() - began) * 1000)
        timings.sort()
        for q, name in ((0.50, "p50"), (0.99, "p99")):
            result.setdefault(f"{case}_{name}", []).append(timings[min(len(timings) - 1, int(q * len(timings)))])
print("@@RESULT " + json.dumps(result), flush=True)
