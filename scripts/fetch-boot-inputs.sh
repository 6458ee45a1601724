#!/usr/bin/env bash
# Fetches the direct-boot inputs of the local/QEMU stack from the Debian archive only (apt-get download,
# whose packages apt verifies against the signed Release files) and checks them against pinned SHA-256s:
#   .bk/boot/vmlinuz     the kernel of Debian bookworm's cloud kernel package
#   .bk/boot/initrd.img  a minimal initramfs (busybox-static + /init), built byte-reproducibly here
#                        (newc cpio, fixed owners/mtimes, uncompressed) because Debian ships no prebuilt
#                        initrd for its kernels (initramfs-tools generates one per machine, not reproducibly)
#   .bk/boot/SHA256SUMS  the digests of both, for `buckypaper measure tdx|snp --kernel … --initrd …`
# The firmware is the Debian `ovmf` package's /usr/share/ovmf/OVMF.fd (scripts/ci-deps.sh installs it).
#
# Usage: scripts/fetch-boot-inputs.sh [--update-pins]
#   --update-pins  take the archive's current package versions and print new pins instead of failing
#                  when a pinned version has left the archive (Debian keeps only the newest build).
set -euo pipefail
cd "$(dirname "$0")/.."

# --- pins (update with --update-pins; commit the change) ---
KERNEL_PKG=linux-image-6.1.0-56-cloud-amd64
KERNEL_VERSION=6.1.192-2
KERNEL_SHA256=51349501a3d1ff83836437d2b365fd2d57f2feb8642d315e5181dec23d4c3275
BUSYBOX_PKG=busybox-static
BUSYBOX_VERSION=1:1.35.0-4+deb12u1+b1
INITRD_SHA256=80c0fe0e7a87331441399095f17bf7f9a492522c994c66eef31658ea540848e8
# ---

update=false
[ "${1:-}" = "--update-pins" ] && update=true
out=.bk/boot
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "fetch-boot-inputs: needs apt-get and dpkg-deb (a Debian/Ubuntu machine with Debian sources)" >&2
  exit 2
fi

download() { # package version -> path of the .deb
  local pkg=$1 ver=$2
  if $update; then ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}'); fi
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    echo "fetch-boot-inputs: $pkg is not known to apt (run 'apt-get update'; bookworm sources needed)" >&2
    exit 2
  fi
  if ! (cd "$work" && apt-get download -qq "$pkg=$ver" >/dev/null 2>"$work/apt.err"); then
    echo "fetch-boot-inputs: cannot download $pkg=$ver from the Debian archive:" >&2
    sed 's/^/  /' "$work/apt.err" >&2
    echo "  (a pinned version disappears when Debian publishes a newer build: run with --update-pins after 'apt-get update')" >&2
    exit 2
  fi
  ls "$work"/"${pkg}"_*.deb
}

# The kernel: pick the metapackage's current dependency when updating pins.
if $update; then
  KERNEL_PKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
fi
kdeb=$(download "$KERNEL_PKG" "$KERNEL_VERSION")
dpkg-deb -x "$kdeb" "$work/kernel"
vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-*)

bdeb=$(download "$BUSYBOX_PKG" "$BUSYBOX_VERSION")
dpkg-deb -x "$bdeb" "$work/busybox"

# Minimal initramfs tree: /init mounts the pseudo file systems and gives a shell on the console.
root="$work/initrd"
mkdir -p "$root"/{bin,dev,proc,sys,run,tmp}
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cat >"$root/init" <<'INIT'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "buckypaper minimal initramfs: $(uname -r)"
exec /bin/sh
INIT
chmod 0755 "$root/init" "$root/bin/busybox"

# newc cpio with uid/gid 0, mtime 0, sorted names and fixed inode numbers: the same bytes on every machine.
python3 - "$root" "$work/initrd.img" <<'PY'
import os, stat, sys
root, dest = sys.argv[1], sys.argv[2]
paths = []
for d, dirs, files in os.walk(root):
    dirs.sort()
    for n in sorted(dirs + files):
        paths.append(os.path.relpath(os.path.join(d, n), root))
paths.sort()
def entry(name, mode, data, ino):
    nb = name.encode() + b"\0"
    hdr = b"070701" + b"".join(b"%08X" % v for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
    out = hdr + nb
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out
blob = bytearray()
for i, p in enumerate(paths, start=1):
    full = os.path.join(root, p)
    st = os.lstat(full)
    if stat.S_ISLNK(st.st_mode):
        blob += entry(p, stat.S_IFLNK | 0o777, os.readlink(full).encode(), i)
    elif stat.S_ISDIR(st.st_mode):
        blob += entry(p, stat.S_IFDIR | 0o755, b"", i)
    else:
        blob += entry(p, stat.S_IFREG | (st.st_mode & 0o777), open(full, "rb").read(), i)
blob += entry("TRAILER!!!", 0, b"", 0)
blob += b"\0" * (-len(blob) % 512)
open(dest, "wb").write(blob)
PY

ksum=$(sha256sum "$vmlinuz" | cut -d' ' -f1)
isum=$(sha256sum "$work/initrd.img" | cut -d' ' -f1)

if $update; then
  kver=$(dpkg-deb -f "$kdeb" Version)
  bver=$(dpkg-deb -f "$bdeb" Version)
  cat <<PINS
New pins (paste into scripts/fetch-boot-inputs.sh):
KERNEL_PKG=$KERNEL_PKG
KERNEL_VERSION=$kver
KERNEL_SHA256=$ksum
BUSYBOX_PKG=$BUSYBOX_PKG
BUSYBOX_VERSION=$bver
INITRD_SHA256=$isum
PINS
else
  [ "$ksum" = "$KERNEL_SHA256" ] || { echo "fetch-boot-inputs: vmlinuz SHA-256 $ksum does not match the pin $KERNEL_SHA256" >&2; exit 1; }
  [ "$isum" = "$INITRD_SHA256" ] || { echo "fetch-boot-inputs: initrd SHA-256 $isum does not match the pin $INITRD_SHA256" >&2; exit 1; }
fi

mkdir -p "$out"
cp "$vmlinuz" "$out/vmlinuz"
cp "$work/initrd.img" "$out/initrd.img"
(cd "$out" && sha256sum vmlinuz initrd.img >SHA256SUMS)
echo "fetch-boot-inputs: $out/vmlinuz ($KERNEL_PKG) and $out/initrd.img ready"
cat "$out/SHA256SUMS"
