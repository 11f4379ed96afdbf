#!/usr/bin/env bash
# Installs what the test suite needs that a fresh machine lacks. Idempotent: anything already
# present is left alone, so running it twice costs a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use (browser tests, HTTP load, reverse proxy).
APT_PACKAGES=(chromium nginx)
# The README's API session runs as written, with curl (tests/it/readme.rs).
APT_PACKAGES+=(curl)
# The third-party OpenFeature clients run on Node and Python (tests/js, tests/py).
command -v node >/dev/null && command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)
command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || APT_PACKAGES+=(python3 python3-venv)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages of the real third-party clients, pinned by each package-lock.json.
for dir in tests/js; do
    if [ -f "$dir/package.json" ]; then
        if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
            (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
        fi
    fi
done

# @flagstaff/node (sdk/node): the dev dependencies of its tests and benchmark (the OpenFeature
# SDK, an OFREP provider), pinned by its package-lock.json. --ignore-scripts: its install script
# builds the addon, which scripts/test.sh does once the server is built.
if [ ! -d sdk/node/node_modules ] || [ sdk/node/package-lock.json -nt sdk/node/node_modules/.package-lock.json ]; then
    (cd sdk/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# PyPI packages of the Python OFREP client, in a venv of their own (.venv-tests), pinned by
# tests/py/requirements.txt; rebuilt when that file changes.
if ! cmp -s tests/py/requirements.txt .venv-tests/requirements.txt; then
    rm -rf .venv-tests
    python3 -m venv .venv-tests
    .venv-tests/bin/pip install --quiet --disable-pip-version-check -r tests/py/requirements.txt
    cp tests/py/requirements.txt .venv-tests/requirements.txt
fi

# ── schemathesis (tests/schemathesis/run.py, issue 12's adversarial suites) ──
# In a venv of its own (.venv-schemathesis), every package pinned by
# tests/schemathesis/requirements.txt; rebuilt when that file changes.
if ! cmp -s tests/schemathesis/requirements.txt .venv-schemathesis/requirements.txt; then
    rm -rf .venv-schemathesis
    python3 -m venv .venv-schemathesis
    .venv-schemathesis/bin/pip install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
    cp tests/schemathesis/requirements.txt .venv-schemathesis/requirements.txt
fi
# ── end schemathesis ──

command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

# The Python SDK (sdk/python): a venv of its own (.venv-sdk-python) with pytest, maturin, gunicorn and the
# OpenFeature packages pinned by sdk/python/tests/requirements.txt, and the SDK built from source
# into it (maturin, dev profile, the workspace's target dir) — only when its sources changed.
bash sdk/python/tests/install.sh
