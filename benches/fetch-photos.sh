#!/usr/bin/env bash
# Downloads the large photos that `cargo bench --bench transform` and benches/compare.sh read, and
# derives the 12 MP and 1 MP JPEGs from one of them with kura's own decoder and resizer, and a
# full-size WebP from another with kura's encoder.
#
# The photos are KDE Plasma wallpapers (5120x2880) from Debian's plasma-workspace-wallpapers
# package, fetched with `apt-get download`, which needs no root once the package lists are
# present. Output: target/bench-photos/, or $KURA_BENCH_PHOTOS.
# Usage: benches/fetch-photos.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${KURA_BENCH_PHOTOS:-target/bench-photos}
package=plasma-workspace-wallpapers
wallpapers=usr/share/wallpapers
# Local name, path inside the package, SHA-256 of the file in version 4:5.27.5-2 (Debian 12), the
# version behind benches/RESULTS.md.
photos=(
  "safelanding.jpg $wallpapers/SafeLanding/contents/images/5120x2880.jpg 7341ff2532d1a13a2ba35f2a9219a2c6cb070446f1aae4ce9a3a981c3bedd32f"
  "flow-prog.jpg $wallpapers/Flow/contents/images/5120x2880.jpg b2f1fbe9ebf772fed224de83ee4159cc3735c633a88cc42f8f45d49ccd12efc3"
  "kay-alpha.png $wallpapers/Kay/contents/images/5120x2880.png 2b2fcfe33dbf701deb524f04231a3966e40f3239baf70469318c00c3961c2458"
)
derived=(photo-12mp.jpg photo-1mp.jpg flow.webp)

missing=0
for entry in "${photos[@]}"; do
  read -r name _ _ <<<"$entry"
  [[ -f $out/$name ]] || missing=1
done
for name in "${derived[@]}"; do
  [[ -f $out/$name ]] || missing=1
done
if [[ $missing == 0 ]]; then
  echo "benchmark photos already in $out"
  exit 0
fi

for tool in apt-get dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || {
    echo "error: $tool not found; this script needs a Debian-based system" >&2
    exit 1
  }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "downloading $package (about 94 MB) with apt-get download"
if ! (cd "$work" && apt-get download "$package"); then
  if [[ $(id -u) == 0 ]]; then
    echo "apt-get download failed; refreshing the package lists with apt-get update and retrying"
    apt-get update
    (cd "$work" && apt-get download "$package")
  else
    echo "error: apt-get download $package failed; run 'sudo apt-get update' and try again" >&2
    exit 1
  fi
fi
dpkg-deb -x "$work"/"$package"_*.deb "$work/root"

mkdir -p "$out"
for entry in "${photos[@]}"; do
  read -r name path sha256 <<<"$entry"
  cp "$work/root/$path" "$out/$name"
  if ! echo "$sha256  $out/$name" | sha256sum --check --status; then
    echo "warning: $name differs from the file measured in benches/RESULTS.md (another" \
      "version of $package), so figures are not directly comparable" >&2
  fi
done

echo "deriving ${derived[*]} with kura's pipeline (cargo example transform-bench)"
cargo run --quiet --release --locked --example transform-bench -- derive "$out"
echo "benchmark photos ready in $out"
