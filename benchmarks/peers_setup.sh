#!/usr/bin/env bash
# Create the peer virtualenvs the benchmarks compare Provender against.
#
# Peers live in their own virtualenvs under benchmarks/peers/ (gitignored) so that they are
# never a dependency of Provender and cannot share its interpreter: each peer runs in a
# subprocess of the benchmark with its own python.
#
#   bash benchmarks/peers_setup.sh          # all peers (today: feast)
#   bash benchmarks/peers_setup.sh feast    # one peer
#
# Re-running is cheap: a peer whose stamp file is newer than this script is skipped.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
FEAST_VERSION="0.67.0"

setup_feast() {
    local venv="$here/peers/feast" stamp="$here/peers/feast/.stamp"
    if [[ -f "$stamp" && "$stamp" -nt "${BASH_SOURCE[0]}" ]]; then
        echo "peers_setup: feast ${FEAST_VERSION} already in $venv"
        return
    fi
    echo "peers_setup: creating $venv (feast[duckdb,redis,postgres]==${FEAST_VERSION})"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
    # feast[duckdb] brings ibis-framework[duckdb], which its duckdb offline store is built on;
    # the file offline store needs only feast's core dependencies (pandas, pyarrow, dask); postgres
    # brings psycopg for its SQL registry on PostgreSQL (benchmarks/registry.py).
    "$venv/bin/pip" install -q --disable-pip-version-check "feast[duckdb,redis,postgres]==${FEAST_VERSION}"
    "$venv/bin/python" - <<'PY'
import duckdb, feast, ibis
print(f"peers_setup: feast {feast.__version__}, ibis {ibis.__version__}, duckdb {duckdb.__version__}")
PY
    touch "$stamp"
}

peers=("$@")
[[ ${#peers[@]} -eq 0 ]] && peers=(feast)
for peer in "${peers[@]}"; do
    case "$peer" in
        feast) setup_feast ;;
        *) echo "peers_setup: unknown peer '$peer' (known: feast)" >&2; exit 2 ;;
    esac
done
