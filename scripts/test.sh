#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then format, lints, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --doc --locked

# ── schemathesis (tests/schemathesis/run.py): the management API and OFREP fuzzed against a real
# server, a few minutes. `--tests` builds the binary exactly as nextest did, so this builds nothing.
cargo build --locked --bin flagstaff --tests
.venv-schemathesis/bin/python tests/schemathesis/run.py target/debug/flagstaff
# ── end schemathesis ──
