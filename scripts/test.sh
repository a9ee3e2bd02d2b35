#!/usr/bin/env bash
# The README's second command: install what the tests need, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --locked "$@"
