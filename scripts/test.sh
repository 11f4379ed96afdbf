#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then format, lints, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
# ── tools: every test runs here. A test whose tool (Chromium, Node, nginx, curl, Python) is missing
# fails instead of being skipped as on a developer's machine; nextest's `ci` profile keeps
# passing tests quiet (.config/nextest.toml).
export FLAGSTAFF_REQUIRE_ALL_TOOLS=1
export NEXTEST_PROFILE=ci
# ── end tools ──
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --doc --locked

# @flagstaff/node (sdk/node) against the real server binary built above: its native addon in the
# debug profile (sharing the workspace's build), then node's own test runner (a test that fails
# with a client still open must not keep its process alive: --test-force-exit).
FLAGSTAFF_NODE_PROFILE=debug FLAGSTAFF_NODE_WORKSPACE_BUILD=1 node sdk/node/scripts/build-native.js
node --test --test-force-exit --test-timeout=300000 sdk/node/test/*.test.mjs

# The Python SDK (sdk/python) against the server binary built above.
bash sdk/python/tests/run.sh

# ── schemathesis (tests/schemathesis/run.py): the management API and OFREP fuzzed against a real
# server, a few minutes. `--tests` builds the binary exactly as nextest did, so this builds nothing.
cargo build --locked --bin flagstaff --tests
.venv-schemathesis/bin/python tests/schemathesis/run.py target/debug/flagstaff
# ── end schemathesis ──
