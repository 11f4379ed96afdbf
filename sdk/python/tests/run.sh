#!/usr/bin/env bash
# Runs the Python SDK's tests (pytest) against the `flagstaff` binary built from this checkout.
# Expects scripts/install-test-deps.sh to have run. A run that collects no test fails.
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --bin flagstaff --locked --quiet
status=0
FLAGSTAFF_BIN="$PWD/target/debug/flagstaff" .venv-sdk-python/bin/python -m pytest sdk/python/tests \
    -p no:cacheprovider -q "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no test in sdk/python/tests: failing" >&2
fi
exit "$status"
