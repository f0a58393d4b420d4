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

cargo test --locked --all-targets "$@"
