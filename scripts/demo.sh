#!/usr/bin/env bash
# The end-to-end demo on the embedded default (SQLite registry, DuckDB engine, SQLite online store).
# Run it with `make demo`, which creates .venv and installs Provender first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO=${DEMO_DIR:-$ROOT/demo-project}
rm -rf "$DEMO"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "provender init: an example project in $DEMO"
provender init "$DEMO"
cd "$DEMO"

step "generate a week of hourly driver statistics (Parquet, partitioned by date)"
python generate_data.py

step "provender apply --dry-run: what would change"
provender apply . --dry-run

step "provender apply: register the definitions"
provender apply .

step "provender entities list / tables list / tables describe / projects list"
provender entities list
provender tables list
provender tables describe driver_statistics
provender projects list

step "get_historical_features: a point-in-time correct training set"
python - <<'PY'
from datetime import UTC, datetime, timedelta

import pandas as pd

import provender as pv

client = pv.Client()
now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
entity_rows = pd.DataFrame({
    "driver_id": [1001, 1002, 1003, 1001, 4242],
    "event_timestamp": [now - timedelta(hours=h) for h in (1, 5, 30, 200, 2)],
    "trip_completed": [1, 0, 1, 1, 0],
})
training = client.get_historical_features(
    feature_refs=["driver_statistics:conv_rate", "driver_statistics:acc_rate", "driver_statistics:avg_daily_trips"],
    entity_source=entity_rows,
).to_pandas()
pd.set_option("display.width", 200)
pd.set_option("display.max_columns", None)
print(training.head())
print("(row 3: before the sample week -> nulls; row 4: driver 4242 has no data -> nulls)")
entity_rows.to_parquet("entity_rows.parquet")
PY

step "provender retrieve: the same from the shell, streamed to Parquet"
provender retrieve -f driver_statistics --entities entity_rows.parquet --out training.parquet

step "provender ingest: the latest values of the week into the online store (SQLite)"
provender ingest --table driver_statistics --start "$(date -u -d '8 days ago' +%Y-%m-%dT%H:%M)" --end now

step "provender online get: a low-latency online lookup (same values as training at the same time)"
provender online get --features driver_statistics --entity driver_id=1001 --entity driver_id=1002 --entity driver_id=4242

step "provender serve: the same lookup over HTTP (gRPC listens too), then a graceful stop"
free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port); GRPC_PORT=$(free_port)
provender serve --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" > serve.log 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$HTTP_PORT/v1/ready" > /dev/null 2>&1 && break
    kill -0 "$SERVE_PID" 2> /dev/null || { cat serve.log; exit 1; }
    sleep 0.1
done
curl -fsS -X POST "http://127.0.0.1:$HTTP_PORT/v1/online-features" -H 'Content-Type: application/json' \
    -d '{"features": ["driver_statistics:conv_rate", "driver_statistics:acc_rate", "driver_statistics:avg_daily_trips"],
         "entities": {"driver_id": [1001, 1002, 4242]}, "include_statuses": true}'
echo
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
echo "(server stopped on SIGTERM; its JSON log is in $DEMO/serve.log)"

step "demo finished"
