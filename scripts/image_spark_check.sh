#!/usr/bin/env bash
# Check the Spark image (`make image-spark`): `provender --version`, then a point-in-time retrieval on
# Spark local[1] inside the container, compared with the expected rows.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/src/provender/__init__.py")
[ -n "$VERSION" ] || { echo "no __version__ in src/provender/__init__.py"; exit 1; }
TAG=localhost/provender:$VERSION-spark
WORK=$(mktemp -d /tmp/provender-spark-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 777 "$WORK"

printf '%-50s' "image-spark: provender --version"
T0=$SECONDS
version=$(podman run --rm "$TAG" --version 2>&1 || true)
[ "$(echo "$version" | head -n1)" = "provender $VERSION" ] || { echo "FAILED: $version"; exit 1; }
echo "$version" | grep -q '^  spark [0-9]' || { echo "FAILED: no Spark in: $version"; exit 1; }
java=$(podman run --rm --entrypoint java "$TAG" -version 2>&1 | head -n1 || true)
case "$java" in *'"17.'*) ;; *) echo "FAILED: java -version said: $java"; exit 1 ;; esac
echo "ok ($(( SECONDS - T0 )) s; $java)"

cat >"$WORK/check.py" <<'PY'
"""A point-in-time retrieval on Spark local[1], inside the image."""
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import provender as pv

work = Path("/work")
t0 = datetime(2026, 11, 1, tzinfo=UTC)
pd.DataFrame({
    "driver_id": [1, 1, 2],
    "datetime": [t0, t0 + timedelta(hours=2), t0],
    "conv_rate": [0.1, 0.2, 0.7],
}).to_parquet(work / "stats.parquet")
(work / "provender.yaml").write_text(
    "registry: sqlite:///registry.db\n"
    "offline: {engine: spark, master: 'local[1]', conf: {spark.driver.memory: 512m}}\n"
    "online: {store: sqlite, path: online.db}\n"
)
client = pv.Client(config=work / "provender.yaml")
client.apply([
    pv.Entity(name="driver_id", value_type=pv.ValueType.INT64),
    pv.FeatureTable(
        name="stats", entities=["driver_id"], features=[pv.Feature("conv_rate", pv.ValueType.DOUBLE)],
        batch_source=pv.FileSource(path=str(work / "stats.parquet"), file_format=pv.ParquetFormat(),
                                   event_timestamp_column="datetime"),
    ),
])
entities = pd.DataFrame({"driver_id": [1, 1, 2], "event_timestamp": [t0 + timedelta(hours=1), t0 + timedelta(hours=3), t0]})
result = client.get_historical_features(feature_refs=["stats:conv_rate"], entity_source=entities).to_pandas()
got = [round(float(v), 6) for v in result["stats__conv_rate"]]
assert got == [0.1, 0.2, 0.7], got
print(f"spark local[1] retrieval: {len(result)} rows, conv_rate {got}")
PY
printf '%-50s' "image-spark: local[1] retrieval"
T0=$SECONDS
if out=$(podman run --rm -v "$WORK:/work" --entrypoint python "$TAG" /work/check.py 2>&1); then
  echo "ok ($(( SECONDS - T0 )) s; $(echo "$out" | tail -n1))"
else
  echo FAILED; echo "$out" | tail -n 40; exit 1
fi
