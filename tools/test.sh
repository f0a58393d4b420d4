#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need, starts it, runs the suite.
# Usage: tools/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The unit-file test runs `systemd-analyze verify`, which Debian ships in the systemd package.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
    else
        echo "tools/test.sh: systemd-analyze is missing; install the systemd package (as root: apt-get install systemd)" >&2
    fi
fi

# The IPFS tests need a real node. start-ipfs.sh installs js-ipfs from npm on first use (needs
# Node.js 18 or later), starts it on free loopback ports with a throwaway repository and prints
# its RPC URL, which the tests read from KURA_TEST_IPFS_API. The node stops when this script exits.
IPFS_PATH="$(mktemp -d -t kura-test-ipfs.XXXXXX)"
export IPFS_PATH
stop_ipfs() {
  tools/start-ipfs.sh stop >/dev/null 2>&1 || true
  rm -rf "$IPFS_PATH"
}
trap stop_ipfs EXIT
KURA_TEST_IPFS_API="$(tools/start-ipfs.sh 0 0)"
export KURA_TEST_IPFS_API

cargo test --locked --all-targets "$@"
