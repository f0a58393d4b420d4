#!/usr/bin/env bash
# Times the same cold transformations through kura and through libvips on the same photos and
# prints the kura/libvips time ratio per operation, in-process and over HTTP on 127.0.0.1.
#
# Installs pyvips and pyvips-binary (PyPI wheels that bundle libvips) into the virtual environment
# target/bench-venv, builds the kura release binary and the transform-bench example, and fetches
# the photos with benches/fetch-photos.sh when they are missing.
# Usage: benches/compare.sh [--runs N] [--only TEXT]
#   --runs N     timed runs per figure (default 10); the table shows the fastest and the median
#   --only TEXT  only the operations whose name contains TEXT, for example "12 MP"
# Set VIPS_CONCURRENCY=1 to hold libvips to one thread. kura runs each transformation on one
# thread, except that AVIF encoding also uses a thread pool.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

photos=${KURA_BENCH_PHOTOS:-target/bench-photos}
venv=target/bench-venv

benches/fetch-photos.sh

if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c "import pyvips" 2>/dev/null; then
  echo "installing pyvips and pyvips-binary from PyPI into $venv"
  python3 -m venv "$venv" || {
    echo "error: python3 -m venv failed. On Debian, install the python3-venv package." >&2
    exit 1
  }
  "$venv/bin/pip" install --quiet pyvips-binary pyvips
fi

echo "building kura and the transform-bench example (release profile)"
cargo build --quiet --release --locked --bin kura --example transform-bench

"$venv/bin/python" benches/compare.py --photos "$photos" --kura target/release/kura \
  --example target/release/examples/transform-bench "$@"
