#!/usr/bin/env bash
# Regenerates ../tdx-reference.json from mosaik's TDX measurement code (an independent Rust
# implementation on crates.io). Needs cargo/rustc ≥ 1.73 and the boot inputs of
# scripts/fetch-boot-inputs.sh. The mosaik source is fetched from crates.io into vendor/ (git-ignored
# by being deleted afterwards): it is run, not copied into the kit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
fw=${1:-/usr/share/ovmf/OVMF.fd}
[ -f "$repo/.bk/boot/vmlinuz" ] || "$repo/scripts/fetch-boot-inputs.sh" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$here/vendor" "$here/target" "$here/Cargo.lock"' EXIT
curl -fsSL -o "$tmp/mosaik.crate" https://static.crates.io/crates/mosaik/mosaik-0.3.13.crate
tar -xzf "$tmp/mosaik.crate" -C "$tmp" mosaik-0.3.13/src/tee/tdx/builder/mrtd.rs
mkdir -p "$here/vendor"
# Only visibility changes: the functions are pub(super) inside mosaik.
sed 's/pub(super) fn/pub fn/' "$tmp/mosaik-0.3.13/src/tee/tdx/builder/mrtd.rs" >"$here/vendor/mrtd.rs"
(cd "$here" && cargo build -q --release)
{
  echo "{\"generator\":\"mosaik 0.3.13 src/tee/tdx/builder/mrtd.rs (crates.io) via test/images/tdx-reference\","
  echo "\"firmwareSha256\":\"$(sha256sum "$fw" | cut -d' ' -f1)\","
  echo "\"kernelSha256\":\"$(sha256sum "$repo/.bk/boot/vmlinuz" | cut -d' ' -f1)\","
  echo "\"initrdSha256\":\"$(sha256sum "$repo/.bk/boot/initrd.img" | cut -d' ' -f1)\","
  echo "\"cases\":["
  "$here/target/release/tdx-reference" "$fw" "$repo/.bk/boot/vmlinuz" "$repo/.bk/boot/initrd.img" 2>/dev/null | paste -sd, -
  echo "]}"
} >"$here/../tdx-reference.json"
echo "wrote test/images/tdx-reference.json"
