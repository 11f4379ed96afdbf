#!/usr/bin/env bash
# The Python SDK's figures in BENCHMARKS.md ("Python SDK"): reads, memory, toggle-to-SDK latency.
#
#   bash bench/python-sdk.sh            # SAMPLES=200 toggles, READS=200000 reads by default
#
# Builds the release server (unless FLAGSTAFF_BIN names one) and the SDK as `pip install ./sdk/python` does (maturin, release
# profile) into a venv of its own (target/bench-venv-python), with the PyPI OFREP provider for
# comparison, then runs bench/python_sdk.py. Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/bench-venv-python

# FLAGSTAFF_BIN: another server binary (e.g. target/debug/flagstaff, to spare a release build).
if [ -z "${FLAGSTAFF_BIN:-}" ]; then
    cargo build --release --bin flagstaff --locked
    FLAGSTAFF_BIN="$PWD/target/release/flagstaff"
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r sdk/python/tests/requirements.txt
fi
# A release build of the extension, reinstalled each run (cargo keeps it incremental).
PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    --no-build-isolation --force-reinstall --no-deps ./sdk/python
FLAGSTAFF_BIN="$FLAGSTAFF_BIN" "$VENV/bin/python" bench/python_sdk.py
