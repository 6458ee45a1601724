// The /init of the cloud disk's initramfs (busybox sh): the kit initramfs's /init (init-script.ts) for a disk
// booted by UEFI firmware from a GPT — the device names differ per cloud (EC2 Nitro: /dev/nvme0n1p2; GCE:
// /dev/sda2 on virtio-scsi or nvme; QEMU: /dev/vda2), so the root and its hash tree are found by GPT partition
// label (the kernel's PARTNAME), never by a device name. Both are named on the UKI's command line, which the
// firmware measures with the UKI (PCR 4) and systemd-stub measures into PCR 11:
//   bk.root=PARTLABEL=NAME    the partition holding the squashfs root (data blocks only)
//   bk.verity=PARTLABEL=NAME  the partition holding the dm-verity hash tree (superblock at offset 0)
//   bk.roothash=HEX           the dm-verity root hash
// A label found on more than one partition (another disk attached with the same labels) powers the guest off:
// the root hash decides what is accepted, but an ambiguous root is not guessed at. Everything after the
// verified mount is the same as the direct-boot init: tmpfs overlay, switch_root to systemd. If the
// initramfs carries an executable /bk-hook (only test disks do: the UKI that contains it has another
// Authenticode digest and PCR 11), it runs after the root is verified and before switch_root.
export const DISK_INIT_SCRIPT = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
  echo "buckypaper-init: $* - powering off" >/dev/console
  sleep 1
  poweroff -f
}
root= verity= roothash=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    bk.root=PARTLABEL=*) root="\${arg#bk.root=PARTLABEL=}" ;;
    bk.verity=PARTLABEL=*) verity="\${arg#bk.verity=PARTLABEL=}" ;;
    bk.roothash=*) roothash="\${arg#bk.roothash=}" ;;
  esac
done
[ -n "$root" ] && [ -n "$verity" ] && [ -n "$roothash" ] || fail "bk.root=PARTLABEL=, bk.verity=PARTLABEL= and bk.roothash are required"
case "$roothash" in *[!0-9a-f]*) fail "bk.roothash is not lower-case hex" ;; esac
while read -r m; do
  insmod "/lib/modules/$m" 2>/tmp/insmod.err || grep -q "File exists" /tmp/insmod.err || fail "insmod $m: $(cat /tmp/insmod.err)"
done </lib/modules/load-order
# by_label NAME: the /dev node of the one partition whose GPT name is NAME ("" while none; two → fail).
by_label() {
  found=
  for u in /sys/class/block/*/uevent; do
    name= dev=
    while IFS== read -r k v; do
      case "$k" in PARTNAME) name="$v" ;; DEVNAME) dev="$v" ;; esac
    done <"$u"
    if [ -n "$dev" ] && [ "$name" = "$1" ]; then
      [ -z "$found" ] || fail "more than one partition is labelled $1 ($found, /dev/$dev)"
      found="/dev/$dev"
    fi
  done
}
i=0
while :; do
  by_label "$root"; rootdev="$found"
  by_label "$verity"; veritydev="$found"
  [ -b "$rootdev" ] && [ -b "$veritydev" ] && break
  i=$((i + 1))
  [ "$i" -gt 600 ] && fail "no partitions labelled $root and $verity appeared"
  sleep 0.1
done
mkdir -p /run/cryptsetup
DM_DISABLE_UDEV=1 veritysetup open "$rootdev" bkroot "$veritydev" "$roothash" --panic-on-corruption \\
  || fail "dm-verity rejected $rootdev ($veritydev) for root hash $roothash"
mkdir -p /lower /rw /newroot
mount -t squashfs -o ro /dev/mapper/bkroot /lower || fail "cannot mount the verified root"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "cannot mount the tmpfs for writable state"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "cannot mount the overlay"
echo "buckypaper-init: root $rootdev verified (dm-verity $roothash, hash tree $veritydev), switching" >/dev/console
[ -x /bk-hook ] && /bk-hook
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
fail "switch_root failed"
`;
