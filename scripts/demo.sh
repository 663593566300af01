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

step "provender stats show: the statistics of what that job wrote, recorded with it"
provender stats show --table driver_statistics

step "an expectation caught: conv_rate must be in [0, 0.5]; policy fail writes nothing and names the rows"
python - <<'PY'
import dataclasses
from datetime import UTC, datetime, timedelta

import provender as pv

client = pv.Client()
table = client.get_feature_table("driver_statistics")
strict = [
    dataclasses.replace(f, expect=(pv.expect.not_null(), pv.expect.between(0, 0.5))) if f.name == "conv_rate" else f
    for f in table.features
]
client.apply(dataclasses.replace(table, features=strict, validation_policy="fail"))
now = datetime.now(UTC)
job = client.start_offline_to_online_ingestion("driver_statistics", start=now - timedelta(days=8), end=now)
try:
    job.wait()
except pv.DataError:
    print(job.validation)
PY
provender apply . > /dev/null  # back to the definitions as written

step "provender online get: a low-latency online lookup (same values as training at the same time)"
provender online get --features driver_statistics --entity driver_id=1001 --entity driver_id=1002 --entity driver_id=4242

step "a 7-day windowed aggregate: the same value in training and online at the same time"
python - <<'PY'
from datetime import UTC, datetime, timedelta

import pandas as pd

import provender as pv

client = pv.Client()
stats = client.get_feature_table("driver_statistics")
week = timedelta(days=7)
client.apply(pv.FeatureTable(
    name="driver_week", entities=["driver_id"], batch_source=stats.batch_source,
    features=[f for f in stats.features if f.name in ("conv_rate", "avg_daily_trips")],
    aggregations=[
        pv.Aggregation(column="conv_rate", function="mean", window=week, name="conv_rate_mean_7d"),
        pv.Aggregation(column="avg_daily_trips", function="sum", window=week, name="trips_sum_7d"),
        pv.Aggregation(column="avg_daily_trips", function="count", window=week, name="hours_7d"),
    ],
))
end = datetime.now(UTC).replace(microsecond=0)
client.start_offline_to_online_ingestion("driver_week", start=end - week, end=end).wait()
refs = ["driver_week:conv_rate_mean_7d", "driver_week:trips_sum_7d", "driver_week:hours_7d"]
rows = pd.DataFrame({"driver_id": [1001, 1002], "event_timestamp": [end, end]})
print("training at end:", client.get_historical_features(refs, rows).to_pandas().drop(columns="event_timestamp").to_dict("list"))
print("online (as of end):", client.get_online_features(refs, [{"driver_id": 1001}, {"driver_id": 1002}]).to_dict())
PY

step "on-demand features: a function of features and request data, the same in training and serving"
cat > demo_features.py <<'PY'
"""The function of the trip_score on-demand features: importable by every process that computes them."""


def trip_score(columns):
    """Python mode: the conversion rate times the acceptance rate, and whether the request's trip is long."""
    rates = zip(columns["driver_statistics__conv_rate"], columns["driver_statistics__acc_rate"])
    return {
        "quality": [None if c is None or a is None else c * a for c, a in rates],
        "long_trip": [None if d is None else d > 10 for d in columns["distance_km"]],
    }
PY
export PYTHONPATH="$DEMO${PYTHONPATH:+:$PYTHONPATH}"  # as if installed: `provender serve` imports it too
python - <<'PY'
from datetime import UTC, datetime

import pandas as pd

import provender as pv

client = pv.Client()
client.apply(pv.OnDemandFeatures(
    name="trip_score",
    inputs=["driver_statistics:conv_rate", "driver_statistics:acc_rate"],
    request_schema={"distance_km": pv.ValueType.DOUBLE},
    features=[pv.Feature("quality", pv.ValueType.DOUBLE), pv.Feature("long_trip", pv.ValueType.BOOL)],
    function="demo_features:trip_score",
    mode="python",
))
refs = ["trip_score", "driver_statistics:conv_rate"]
rows = pd.DataFrame({"driver_id": [1001, 1002], "event_timestamp": [datetime.now(UTC)] * 2, "distance_km": [3.5, 12.0]})
print("training:", client.get_historical_features(refs, rows).to_pandas().drop(columns="event_timestamp").to_dict("list"))
print("online:  ", client.get_online_features(refs, [{"driver_id": 1001, "distance_km": 3.5},
                                                     {"driver_id": 1002, "distance_km": 12.0}]).to_dict())
PY
provender tables describe trip_score

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
    -d '{"features": ["driver_statistics:conv_rate", "driver_statistics:acc_rate", "driver_statistics:avg_daily_trips",
                      "trip_score"],
         "entities": {"driver_id": [1001, 1002, 4242], "distance_km": [3.5, 12.0, 7.0]}, "include_statuses": true}'
echo
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
echo "(server stopped on SIGTERM; its JSON log is in $DEMO/serve.log)"

if python -c 'import noida_db, confluent_kafka, fastavro' 2> /dev/null; then
    step "optional: stream ingestion from Kafka (a local noida-db broker; trips_today changes online)"
    NOIDA=$(python -c 'import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))')
    KAFKA_PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    KAFKA_DIR=$(mktemp -d)
    "$NOIDA" start --only kafka --host 127.0.0.1 --kafka-port "$KAFKA_PORT" --data-dir "$KAFKA_DIR/data" \
        > "$KAFKA_DIR/kafka.log" 2>&1 &
    KAFKA_PID=$!
    INGEST_PID=""
    stop_streaming() {
        [ -n "$INGEST_PID" ] && kill -TERM "$INGEST_PID" 2> /dev/null && wait "$INGEST_PID" || true
        kill -TERM "$KAFKA_PID" 2> /dev/null && wait "$KAFKA_PID" 2> /dev/null || true
        rm -rf "$KAFKA_DIR"
    }
    trap stop_streaming EXIT
    for _ in $(seq 200); do (exec 3<> "/dev/tcp/127.0.0.1/$KAFKA_PORT") 2> /dev/null && break; sleep 0.05; done
    export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"

    # A stream-only feature table: trips so far today, published on the driver_trips topic as JSON.
    cat > driver_trips.py <<'PY'
"""Trips today per driver, from the driver_trips Kafka topic (JSON messages)."""

import os
from datetime import timedelta

import provender as pv

driver_trips = pv.FeatureTable(
    name="driver_trips",
    entities=["driver_id"],
    features=[pv.Feature("trips_today", pv.ValueType.INT64)],
    stream_source=pv.KafkaSource(
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        topic="driver_trips",
        message_format=pv.JsonFormat(),
        event_timestamp_column="datetime",
    ),
    max_age=timedelta(days=1),
)
PY
    provender apply driver_trips.py
    cat > produce_trips.py <<'PY'
"""Publish one driver_trips message per driver: python produce_trips.py 1001=3 1002=7"""

import json
import sys
from datetime import UTC, datetime

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

servers = {"bootstrap.servers": sys.argv[1]}
admin = AdminClient(servers)
if "driver_trips" not in admin.list_topics(timeout=10).topics:
    admin.create_topics([NewTopic("driver_trips", num_partitions=2, replication_factor=1)])["driver_trips"].result(10)
producer = Producer(servers)
for pair in sys.argv[2:]:
    driver, trips = pair.split("=")
    message = {"driver_id": int(driver), "trips_today": int(trips), "datetime": datetime.now(UTC).isoformat()}
    producer.produce("driver_trips", json.dumps(message).encode())
    print(f"  produced {message}")
producer.flush(10)
PY
    python produce_trips.py "$KAFKA_BOOTSTRAP_SERVERS" 1001=3 1002=7
    provender ingest-stream --table driver_trips --status-interval 2 > ingest-stream.log 2>&1 &
    INGEST_PID=$!
    wait_for_trips() {  # until driver 1001's trips_today reads $1 online
        for _ in $(seq 150); do
            provender online get --features driver_trips --entity driver_id=1001 --json 2> /dev/null \
                | python -c 'import json, sys; sys.exit(json.load(sys.stdin)["columns"]["driver_trips__trips_today"] != [int(sys.argv[1])])' "$1" \
                && return 0
            kill -0 "$INGEST_PID" 2> /dev/null || { cat ingest-stream.log; return 1; }
            sleep 0.2
        done
        cat ingest-stream.log
        return 1
    }
    wait_for_trips 3
    provender online get --features driver_trips --entity driver_id=1001 --entity driver_id=1002
    echo "(two more trips for driver 1001)"
    python produce_trips.py "$KAFKA_BOOTSTRAP_SERVERS" 1001=5
    wait_for_trips 5
    provender online get --features driver_trips --entity driver_id=1001 --entity driver_id=1002
    kill -TERM "$INGEST_PID"
    wait "$INGEST_PID"
    INGEST_PID=""
    tail -n 2 ingest-stream.log
    stop_streaming
    trap - EXIT
else
    step "optional streaming step skipped (pip install 'provender[kafka]' noida-db==0.2.3 to run it)"
fi

step "provender core: the registry as a service; apply through it, list from a second client, stop it"
CORE_PORT=$(free_port)
provender core --port "$CORE_PORT" > core.log 2>&1 &
CORE_PID=$!
for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$CORE_PORT/v1/ready" > /dev/null 2>&1 && break
    kill -0 "$CORE_PID" 2> /dev/null || { cat core.log; exit 1; }
    sleep 0.1
done
mkdir -p team
cp driver_repo.py team/
printf 'project: team\nregistry: http://127.0.0.1:%s\n' "$CORE_PORT" > team/provender.yaml
echo "(team/provender.yaml points the CLI at the core service; applying project 'team' through it)"
(cd team && provender apply .)
python - "$CORE_PORT" <<'PY'
import sys

import provender as pv

second = pv.Client(core_url=f"http://127.0.0.1:{sys.argv[1]}", project="team")  # another process, another client
print("projects:", second.list_projects())
print("tables in 'team':", [table.name for table in second.list_feature_tables()])
for change in second.registry_history(limit=3):
    print(f"  version {change.version_before}->{change.version_after} by {change.actor}: {change.description}")
second.close()
PY
curl -fsS "http://127.0.0.1:$CORE_PORT/v1/projects"
echo
echo "The discovery UI of this core service: http://127.0.0.1:$CORE_PORT/ (docs/ui.md)"
curl -fsS "http://127.0.0.1:$CORE_PORT/projects/team" | grep -o '<h1>[^<]*</h1>'
echo "(provender ui --port 8888 serves the same UI, read-only, over a project folder's own registry)"
kill -TERM "$CORE_PID"
wait "$CORE_PID"
echo "(core service stopped on SIGTERM; its JSON log is in $DEMO/core.log)"

step "demo finished"
