#!/usr/bin/env bash
# Installs the Python SDK's test venv (.venv-sdk-python at the repository root) and the SDK into
# it, built from source. Idempotent: the venv is rebuilt when requirements.txt changes, the SDK
# reinstalled when a source of it (Rust or Python, or the engine) changes.
set -euo pipefail
cd "$(dirname "$0")/../../.."
VENV=.venv-sdk-python
REQ=sdk/python/tests/requirements.txt

if ! cmp -s "$REQ" "$VENV/requirements.txt"; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
    cp "$REQ" "$VENV/requirements.txt"
fi

stamp=$(find sdk/python/Cargo.toml sdk/python/pyproject.toml sdk/python/README.md sdk/python/src \
    sdk/python/python eval/Cargo.toml eval/src Cargo.lock -type f -not -name '*.pyc' -print0 \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
if [ "$stamp" != "$(cat "$VENV/sdk-stamp" 2>/dev/null)" ]; then
    echo "building the Python SDK (sdk/python) into $VENV"
    # maturin from the venv, no isolated build env (no download); the dev profile shares the
    # workspace's debug build of the engine. `pip install ./sdk/python` alone builds a release.
    PATH="$PWD/$VENV/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev" \
        "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation \
        --force-reinstall --no-deps ./sdk/python
    echo "$stamp" > "$VENV/sdk-stamp"
fi
