#!/usr/bin/env bash
# Builds OVMF's AmdSev variant (OvmfPkg/AmdSev/AmdSevX64.dsc) from Debian's edk2 source package: the
# firmware whose SEV metadata carries an SNP_KERNEL_HASHES page, so an SNP launch digest covers the
# kernel, initrd and command line given by direct boot (Debian's OVMF.fd has no such table).
# The source is Debian trixie's edk2 (2025.02): bookworm's edk2 2022.11 predates the SNP_KERNEL_HASHES
# metadata section (its AmdSev build has the hashes table but SNP cannot measure it). It builds on bookworm.
#
# Inputs (all pinned below; the cache key is their hash and the RECIPE number):
#   the edk2 source package's orig and debian tarballs (SHA-256 pinned; apt fetches them through the
#   signed Sources index; Debian's patch series is applied in order), and Debian's grub-efi-amd64-bin (the
#   AmdSev flash image embeds a grub.efi; the kit boots the kernel directly, grub is only the fallback)
# Output: ~/.cache/buckypaper/firmware/<key>/OVMF.amdsev.fd (+ SHA256SUMS, build.log, inputs.txt)
#   and prints the path on the last line of stdout. A second run with the same inputs only prints it.
#
# Usage: scripts/build-firmware.sh [--print-key] [--print-path] [--needs]
#   --print-key   print the cache key and exit
#   --print-path  print the path of the cached firmware (exit 1 when it has not been built yet)
#   --needs       print what a build would miss on this machine, one item a line (exit 2 if anything)
# Environment: BUCKYPAPER_CACHE (default ~/.cache/buckypaper), FIRMWARE_NICE (default 10).
set -euo pipefail

# --- pins (bookworm keeps older source versions in the archive only until a new upload) ---
EDK2_SUITE=trixie
EDK2_VERSION=2025.02-8+deb13u1
EDK2_ORIG_SHA256=b63b6053d6d89c74d9291f9e96fde1584be99e6fb9c169ba9511505129d6b049
EDK2_DEBIAN_SHA256=e2a7f6fc58640818416a028d6d5e9dfc255697a7cdc60c14566c236df6bd9b08
GRUB_PKG_VERSION=2.06-13+deb12u2
SOURCE_DATE_EPOCH=1700000000
# Bump when a change to the steps below changes the output (comments and messages do not).
RECIPE=1
# ---
export SOURCE_DATE_EPOCH

cache=${BUCKYPAPER_CACHE:-$HOME/.cache/buckypaper}
key=$(
  {
    echo "edk2=$EDK2_SUITE/$EDK2_VERSION orig=$EDK2_ORIG_SHA256 debian=$EDK2_DEBIAN_SHA256 grub=$GRUB_PKG_VERSION epoch=$SOURCE_DATE_EPOCH recipe=$RECIPE"
  } | sha256sum | cut -c1-16
)
dest="$cache/firmware/$key"
[ "${1:-}" = "--print-key" ] && { echo "$key"; exit 0; }
if [ "${1:-}" = "--print-path" ]; then
  [ -f "$dest/OVMF.amdsev.fd" ] || exit 1
  echo "$dest/OVMF.amdsev.fd"
  exit 0
fi
# What a build needs from the machine: one line per missing piece (the local stack names them all).
missing_needs() {
  local t installed_grub
  for t in nasm iasl gcc make python3 grub-mkimage mkfs.msdos mcopy patch apt-get flock; do
    command -v "$t" >/dev/null || echo "$t (apt-get install nasm acpica-tools uuid-dev build-essential grub-efi-amd64-bin dosfstools mtools)"
  done
  [ -f /usr/include/uuid/uuid.h ] || echo "uuid-dev (apt-get install uuid-dev)"
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || echo "debian-archive-keyring (apt-get install debian-archive-keyring)"
  installed_grub=$(dpkg-query -W -f '${Version}' grub-efi-amd64-bin 2>/dev/null || true)
  [ "$installed_grub" = "$GRUB_PKG_VERSION" ] ||
    echo "grub-efi-amd64-bin $GRUB_PKG_VERSION (installed: '${installed_grub:-none}'; apt-get install grub-efi-amd64-bin=$GRUB_PKG_VERSION, or update the pin)"
}
if [ "${1:-}" = "--needs" ]; then
  out=$(missing_needs)
  [ -z "$out" ] && exit 0
  echo "$out"
  exit 2
fi
if [ -f "$dest/OVMF.amdsev.fd" ]; then
  echo "build-firmware: cached $dest/OVMF.amdsev.fd" >&2
  echo "$dest/OVMF.amdsev.fd"
  exit 0
fi

log() { echo "build-firmware: $*" >&2; }
# One build per key at a time (ci-deps, tests and developers share the cache): wait for a running one.
mkdir -p "$cache/firmware"
exec 9>"$cache/firmware/.lock-$key"
if ! flock -n 9; then
  log "another build of $key is running; waiting for it"
  flock 9
fi
if [ -f "$dest/OVMF.amdsev.fd" ]; then
  echo "$dest/OVMF.amdsev.fd"
  exit 0
fi
missing=$(missing_needs)
if [ -n "$missing" ]; then
  log "needs:"
  echo "$missing" | sed 's/^/  /' >&2
  exit 2
fi

# A private apt configuration with the suite's deb-src lines: the machine's own sources stay untouched.
aptdir="$cache/apt-src/$EDK2_SUITE"
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/src"
key_opt="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
{
  echo "deb-src $key_opt http://deb.debian.org/debian $EDK2_SUITE main"
  echo "deb-src $key_opt http://deb.debian.org/debian $EDK2_SUITE-updates main"
  echo "deb-src $key_opt http://deb.debian.org/debian-security $EDK2_SUITE-security main"
} >"$aptdir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache" -o APT::Sandbox::User=root)
upstream=${EDK2_VERSION%%-*}
orig="$aptdir/src/edk2_${upstream}.orig.tar.xz"
debian="$aptdir/src/edk2_${EDK2_VERSION}.debian.tar.xz"
if [ ! -f "$orig" ] || [ ! -f "$debian" ]; then
  log "fetching the edk2 $EDK2_VERSION source package ($EDK2_SUITE)"
  apt-get "${apt_opts[@]}" update -qq
  # The .dsc is not always on the mirror; the tarballs are what we pin (apt checks them against Sources).
  (cd "$aptdir/src" && apt-get "${apt_opts[@]}" source --download-only -qq "edk2=$EDK2_VERSION" 2>"$aptdir/fetch.err") || true
  if [ ! -f "$orig" ] || [ ! -f "$debian" ]; then
    log "cannot download edk2=$EDK2_VERSION (left the archive? update the EDK2_* pins):"
    cat "$aptdir/fetch.err" >&2
    exit 2
  fi
fi
for pair in "$orig:$EDK2_ORIG_SHA256" "$debian:$EDK2_DEBIAN_SHA256"; do
  f=${pair%:*} want=${pair##*:}
  got=$(sha256sum "$f" | cut -d' ' -f1)
  [ "$got" = "$want" ] || { log "$f SHA-256 $got does not match the pin $want"; exit 1; }
done

work="$cache/firmware/.build-$key"
rm -rf "$work"
mkdir -p "$work/edk2"
src="$work/edk2"
log "unpacking and applying Debian's patch series"
tar -xf "$orig" -C "$src" --strip-components=1
tar -xf "$debian" -C "$src"
if [ -f "$src/debian/patches/series" ]; then
  grep -v '^[[:space:]]*#' "$src/debian/patches/series" | while read -r patch _; do
    [ -n "$patch" ] || continue
    patch -d "$src" -p1 -s --no-backup-if-mismatch <"$src/debian/patches/$patch" || { log "patch $patch failed"; exit 1; }
  done
fi

# grub.efi for the flash image, made like OvmfPkg/AmdSev/Grub/grub.sh but deterministically (fixed FAT
# serial and timestamps). Debian's grub has no sevsecret module, so this grub cannot open a LUKS disk with an
# injected secret; the kit does not use that path (direct kernel boot, verified through the hashes table).
grubdir="$src/OvmfPkg/AmdSev/Grub"
modules=(part_msdos part_gpt cryptodisk luks gcry_rijndael gcry_sha256 ext2 btrfs xfs fat configfile memdisk
  sleep normal echo test regexp linux linuxefi reboot)
avail=()
for m in "${modules[@]}"; do [ -f "/usr/lib/grub/x86_64-efi/$m.mod" ] && avail+=("$m"); done
echo 'normal (memdisk)/grub.cfg' >"$work/grub-bootstrap.cfg"
touch -d "@$SOURCE_DATE_EPOCH" "$grubdir/grub.cfg"
mkfs.msdos -C -i 0b0c0d0e --invariant "$work/disk.fat" 64 >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -m -i "$work/disk.fat" -- "$grubdir/grub.cfg" ::grub.cfg
grub-mkimage -O x86_64-efi -p '(crypto0)' -c "$work/grub-bootstrap.cfg" -m "$work/disk.fat" \
  -o "$grubdir/grub.efi" "${avail[@]}"
# grub.sh (the dsc's PREBUILD) keeps a grub.efi newer than its inputs.
touch -d "@$SOURCE_DATE_EPOCH" "$grubdir/grub.sh" "$grubdir/grub.cfg"
touch -d "@$((SOURCE_DATE_EPOCH + 1))" "$grubdir/grub.efi"

nice_level=${FIRMWARE_NICE:-10}
start=$(date +%s)
log "building BaseTools and OvmfPkg/AmdSev/AmdSevX64.dsc (RELEASE, GCC5) at nice $nice_level; about 15-40 min on 2 cores, log: $work/build.log"
(
  cd "$src"
  unset WORKSPACE EDK_TOOLS_PATH CONF_PATH
  export PYTHON3_ENABLE=TRUE
  set +u
  . ./edksetup.sh >/dev/null
  set -u
  nice -n "$nice_level" make -s -C BaseTools ARCH=X64 -j2
  nice -n "$nice_level" build -q -a X64 -t GCC5 -b RELEASE -n 2 -p OvmfPkg/AmdSev/AmdSevX64.dsc
) >"$work/build.log" 2>&1 || {
  log "build failed; last lines of $work/build.log:"
  tail -30 "$work/build.log" >&2
  exit 1
}
fd="$src/Build/AmdSev/RELEASE_GCC5/FV/OVMF.fd"
[ -f "$fd" ] || { log "the build did not produce $fd"; exit 1; }

mkdir -p "$dest.tmp"
cp "$fd" "$dest.tmp/OVMF.amdsev.fd"
cp "$work/build.log" "$dest.tmp/build.log"
{
  echo "edk2 source package: edk2 $EDK2_VERSION ($EDK2_SUITE; orig sha256 $EDK2_ORIG_SHA256, debian sha256 $EDK2_DEBIAN_SHA256)"
  echo "grub-efi-amd64-bin: $GRUB_PKG_VERSION; grub.efi sha256 $(sha256sum "$grubdir/grub.efi" | cut -d' ' -f1)"
  echo "platform: OvmfPkg/AmdSev/AmdSevX64.dsc, RELEASE, GCC5, $(gcc --version | head -1), nasm $(nasm -v | awk '{print $3}'), iasl $(iasl -v 2>/dev/null | awk '/version/ {print $NF; exit}')"
  echo "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
  echo "build seconds: $(($(date +%s) - start))"
} >"$dest.tmp/inputs.txt"
(cd "$dest.tmp" && sha256sum OVMF.amdsev.fd >SHA256SUMS)
rm -rf "$dest"
mv "$dest.tmp" "$dest"
rm -rf "$work"
log "done in $(($(date +%s) - start)) s: $dest/OVMF.amdsev.fd"
echo "$dest/OVMF.amdsev.fd"
