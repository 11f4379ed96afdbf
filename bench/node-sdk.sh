#!/usr/bin/env bash
# The Node SDK's figures in BENCHMARKS.md ("Node SDK"): the release server and the release addon,
# sdk/node's dev dependencies (the OpenFeature SDK and @openfeature/ofrep-provider to compare
# with), then bench/node-sdk.mjs against a fresh server on a loopback port.
#
#   bash bench/node-sdk.sh        (FLAGSTAFF_NODE_LATENCY_SAMPLES=500 for more toggles)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/target/release"
source bench/common.sh

# One cargo run for both, so that they share their dependencies' builds.
cargo build --release --locked -p flagstaff -p flagstaff-node --bin flagstaff --lib
FLAGSTAFF_NODE_PROFILE=release FLAGSTAFF_NODE_COPY_ONLY=1 node sdk/node/scripts/build-native.js
(cd sdk/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_flagstaff "$PORT"
print_machine
echo "node: $(node --version)"
node bench/node-sdk.mjs "http://127.0.0.1:$PORT" "$TOKEN"
