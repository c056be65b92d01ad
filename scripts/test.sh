#!/usr/bin/env bash
# The whole test suite: installs what the tests need where it is missing, then runs every test
# (unit, black-box through real sockets, interop, doc tests) of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --workspace "$@"
