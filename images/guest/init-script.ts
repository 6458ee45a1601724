// The initramfs /init (busybox sh). It opens the dm-verity root named on the kernel command line —
// measured in the SNP launch digest through the kernel-hashes table — and boots it read-only with all
// writable state in RAM (a tmpfs overlay; guest memory is encrypted under SNP). Anything unexpected
// powers the guest off: it never boots a root it could not verify, and a corrupted block read later
// panics the kernel (--panic-on-corruption) instead of returning data.
//   bk.root=DEV          the block device that holds the squashfs + appended hash tree (e.g. /dev/vda)
//   bk.roothash=HEX      the dm-verity root hash (veritysetup format's output)
//   bk.hashoffset=BYTES  where the hash tree starts in DEV (the squashfs size, 4 KiB aligned)
export const INIT_SCRIPT = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
  echo "buckypaper-init: $* - powering off" >/dev/console
  sleep 1
  poweroff -f
}
root= roothash= hashoffset=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    bk.root=*) root="\${arg#bk.root=}" ;;
    bk.roothash=*) roothash="\${arg#bk.roothash=}" ;;
    bk.hashoffset=*) hashoffset="\${arg#bk.hashoffset=}" ;;
  esac
done
[ -n "$root" ] && [ -n "$roothash" ] && [ -n "$hashoffset" ] || fail "bk.root, bk.roothash and bk.hashoffset are required"
case "$roothash" in *[!0-9a-f]*) fail "bk.roothash is not lower-case hex" ;; esac
case "$hashoffset" in *[!0-9]*) fail "bk.hashoffset is not a number" ;; esac
while read -r m; do
  insmod "/lib/modules/$m" 2>/tmp/insmod.err || grep -q "File exists" /tmp/insmod.err || fail "insmod $m: $(cat /tmp/insmod.err)"
done </lib/modules/load-order
i=0
while [ ! -b "$root" ]; do
  i=$((i + 1))
  [ "$i" -gt 300 ] && fail "$root did not appear"
  sleep 0.1
done
mkdir -p /run/cryptsetup
DM_DISABLE_UDEV=1 veritysetup open "$root" bkroot "$root" "$roothash" --hash-offset="$hashoffset" --panic-on-corruption \\
  || fail "dm-verity rejected $root for root hash $roothash"
mkdir -p /lower /rw /newroot
mount -t squashfs -o ro /dev/mapper/bkroot /lower || fail "cannot mount the verified root"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "cannot mount the tmpfs for writable state"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "cannot mount the overlay"
umount /proc /sys
mount --move /dev /newroot/dev
echo "buckypaper-init: root $root verified (dm-verity $roothash), switching" >/dev/console
exec switch_root /newroot /sbin/init
fail "switch_root failed"
`;
