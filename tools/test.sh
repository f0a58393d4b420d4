#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need, starts it, runs the suite.
# Usage: tools/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo test --locked --all-targets "$@"
