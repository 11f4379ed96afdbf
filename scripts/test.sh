#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then format, lints, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --doc --locked
# The Python SDK (sdk/python) against the server binary built above.
bash sdk/python/tests/run.sh
