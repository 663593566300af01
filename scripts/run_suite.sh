#!/usr/bin/env bash
# The whole suite, as `make test` runs it: independent pytest groups and the deployment test in
# parallel (each group starts its own Redis / PostgreSQL / Kafka broker / Spark on free loopback
# ports, so they never share state), then one closing line summing every group's counts.
#
# Usage: scripts/run_suite.sh PYTHON [--no-deploy]
#   --no-deploy  skip `make deploy-test` (images and pods)
# Besides the pytest groups, two make targets run beside them: `make deploy-test` (the chart's pods
# under podman) and `make test-oldest` (the unit tests on the oldest pyarrow/pandas/duckdb allowed).
set -uo pipefail

PY=${1:?usage: run_suite.sh PYTHON [--no-deploy]}
DEPLOY=1; [ "${2:-}" = "--no-deploy" ] && DEPLOY=0
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
LOGS=$(mktemp -d /tmp/provender-suite.XXXXXX)

# Groups of about equal length; together they are exactly `pytest tests` (the last takes the rest).
SUITE_GROUPS=(
  "unit:tests/unit tests/docs tests/test_public_api.py tests/test_doctests.py tests/support/test_services.py"
  "contract:tests/contract"
  "integration:tests/integration"
  "e2e:tests/e2e tests/deploy tests/release tests/abuse"
)
# The tests whose projects have a registry, again with it on PostgreSQL and through a core service
# (PROVENDER_TEST_REGISTRY; tests/support/registries.py). Spark cases (marked slow) are left out, as
# are tests that never open a registry; docs/registry.md lists what runs ("The suite on each backend").
REGISTRY_BACKENDS=(postgresql core)
REGISTRY_TESTS="tests/unit/registry/test_sqlite.py tests/unit/registry/test_client_history.py
  tests/unit/online/test_client_online.py tests/unit/online/test_online_cli.py tests/unit/serving
  tests/unit/ingestion/test_batch.py tests/unit/ingestion/test_stream_formats.py
  tests/unit/ingestion/test_stream_job.py tests/unit/ingestion/test_stream_loop.py
  tests/unit/offline/test_bad_input.py tests/unit/offline/test_delta.py tests/unit/offline/test_drift.py
  tests/unit/offline/test_retrieval.py tests/unit/offline/test_spoofing.py tests/unit/offline/test_sql_source.py
  tests/integration/test_ingestion_redis.py tests/integration/test_ingestion_validation.py
  tests/integration/test_ingestion_windows.py tests/integration/test_job_statistics.py
  tests/integration/test_redis_online.py tests/integration/test_s3_sources.py
  tests/integration/test_stream_kafka.py tests/integration/test_stream_dead_letters.py
  tests/e2e/test_cli.py tests/e2e/test_cli_apply.py tests/e2e/test_cli_history.py tests/e2e/test_cli_frictions.py
  tests/e2e/test_serving.py tests/e2e/test_serving_errors.py tests/e2e/test_ref_parity.py"
# Every entry of tests/ must belong to a group: a folder nobody runs is a suite that cannot fail.
covered=" ${SUITE_GROUPS[*]} "
for entry in tests/*; do
  case "$entry" in tests/__init__.py|tests/conftest.py|tests/support|tests/fixtures|tests/__pycache__) continue ;; esac
  [[ "$covered" == *" $entry "* || "$covered" == *":$entry "* ]] || {
    echo "run_suite.sh: $entry is in no pytest group (add it to SUITE_GROUPS)" >&2; exit 2; }
done
start=$(date +%s)
pids=(); names=()
for group in "${SUITE_GROUPS[@]}"; do
  name=${group%%:*}; paths=${group#*:}
  # shellcheck disable=SC2086
  "$PY" -m pytest -q -p no:cacheprovider $paths >"$LOGS/$name.log" 2>&1 &
  pids+=($!); names+=("$name")
done
for backend in "${REGISTRY_BACKENDS[@]}"; do
  # shellcheck disable=SC2086
  PROVENDER_TEST_REGISTRY=$backend "$PY" -m pytest -q -p no:cacheprovider -m "not slow" $REGISTRY_TESTS \
    >"$LOGS/registry-$backend.log" 2>&1 &
  pids+=($!); names+=("registry-$backend")
done
if [ "$DEPLOY" = 1 ]; then
  make --no-print-directory deploy-test >"$LOGS/deploy.log" 2>&1 &
  pids+=($!); names+=("deploy")
fi
make --no-print-directory test-oldest >"$LOGS/oldest.log" 2>&1 &
pids+=($!); names+=("oldest")

failed=0; passed_total=0; failed_total=0; skipped_total=0
for i in "${!pids[@]}"; do
  name=${names[$i]}
  if wait "${pids[$i]}"; then status=ok; else status=FAILED; failed=1; fi
  echo "=== $name: $status ($(( $(date +%s) - start )) s since start) ==="
  if [ "$status" = FAILED ]; then tail -n 150 "$LOGS/$name.log"; else tail -n 25 "$LOGS/$name.log"; fi
  if [ "$name" != deploy ]; then
    line=$(grep -E '^[=]* ?[0-9]+ (passed|failed)|[0-9]+ (passed|failed|error)' "$LOGS/$name.log" | tail -n 1)
    p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    e=$(grep -oE '[0-9]+ errors?' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    [ -n "$line" ] || { f=$((f + 1)); failed=1; }
    passed_total=$((passed_total + ${p:-0})); failed_total=$((failed_total + ${f:-0} + ${e:-0}))
    skipped_total=$((skipped_total + ${s:-0}))
  fi
done
echo "full logs: $LOGS ($(( $(date +%s) - start )) s)"
echo "$passed_total passed, $failed_total failed, $skipped_total skipped"
exit $failed
