#!/usr/bin/env bash
# Installs what the test suite needs that a fresh machine lacks. Idempotent: anything already
# present is left alone, so running it twice costs a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use (browser tests, HTTP load, reverse proxy).
APT_PACKAGES=()
# The README's API session runs as written, with curl (tests/it/readme.rs).
APT_PACKAGES+=(curl)

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

command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
