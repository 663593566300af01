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

step "demo finished"
