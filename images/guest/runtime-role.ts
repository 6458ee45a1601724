// The image's "runtime" role: the vHSM runtime's own confidential VM. Same locked Debian tree, kernel and
// initramfs as the workload image; instead of the enclaivelet the verity root carries
//   - the runtime artifact (runtime/guest/artifact.ts kind "runtime") at /opt/buckypaper/bk-runtime,
//   - its config (/etc/buckypaper/runtime.hcl: attested TLS + the derived-key seal over the PSP channel —
//     the local stack's virtio-serial PSP, or /dev/sev-guest on SNP hardware — SQLite on the data disk)
//     and the unit that starts it,
//   - a script that formats/mounts the data disk at /var/lib/buckypaper (the only persistent writable
//     state; everything the runtime writes there goes through its barrier),
// and nothing that lets the host run code in it: cloud-init (the NoCloud seed is the host's to write and
// nothing in this guest measures it) and sshd are masked, and no login is configured. So every byte that
// can run in the guest is under the dm-verity root hash on the measured command line.
import { mkdir, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";

/** Where the runtime guest keeps its storage: the third virtio disk (boot vda, seed vdb, data vdc). */
export const RUNTIME_GUEST_DATA_DEVICE = "/dev/vdc";
/** The port the in-guest runtime listens on (the launcher forwards a host loopback port to it). */
export const RUNTIME_GUEST_PORT = 8200;
export const RUNTIME_UNIT_NAME = "bk-runtime.service";
/** Where the runtime artifact is unpacked (its launcher is bin/bk-runtime). */
export const RUNTIME_INSTALL_DIR = "/opt/buckypaper/bk-runtime";
export const RUNTIME_CONFIG_PATH = "/etc/buckypaper/runtime.hcl";

/**
 * Where the in-guest runtime talks to its security processor (the runtime image's `--runtime-psp`, recorded
 * in the manifest's runtime.psp): "virtio-psp" — the local stack's simulated PSP over virtio-serial (real QEMU
 * guests without SEV-SNP); "sev-guest" — the real SEV-SNP guest device /dev/sev-guest of a guest launched on
 * SNP hardware (QEMU/KVM hosts, Proxmox VE): SNP_GET_EXT_REPORT for evidence, SNP_GET_DERIVED_KEY for the
 * sealing key (runtime/guest/evidence/sev-guest.ts, runtime/guest/sealing.ts). The config is in the verity
 * root, so the choice is part of the measurement: one image per choice.
 */
export type RuntimePsp = "virtio-psp" | "sev-guest";
export const RUNTIME_PSPS: readonly RuntimePsp[] = ["virtio-psp", "sev-guest"];
/** The guest device the "sev-guest" variant opens (the Linux sev-guest driver's node). */
export const SEV_GUEST_DEVICE = "/dev/sev-guest";

/**
 * The in-guest runtime's config: attested TLS and the derived-key seal, both through the PSP channel `psp`
 * names; SQLite on the data disk. The data disk has no LUKS layer: everything the runtime writes goes through
 * its barrier (AES-GCM), whose unseal key exists on disk only wrapped with the PSP's derived key (and
 * as Shamir shares the operators hold), so a copied disk yields ciphertext. What is not hidden: sizes,
 * path names of the storage keys, write timing — as with Vault's own storage. The listener's certificate
 * carries no trust (clients pin the key the evidence binds), so its host names need not name the address
 * the platform gives the guest.
 */
export function runtimeGuestConfig(psp: RuntimePsp): string {
  const head = `storage "sqlite" { path = "/var/lib/buckypaper/runtime.db" }
listener "tcp" { address = "0.0.0.0:${RUNTIME_GUEST_PORT}"  tls_hosts = ["127.0.0.1"] }
`;
  if (psp === "virtio-psp")
    return `${head}attestation "virtio-psp" {}
seal "snp-derived-key" { transport = "virtio-psp" }
`;
  if (psp === "sev-guest")
    return `${head}attestation "sev-guest" { device = "${SEV_GUEST_DEVICE}" }
seal "snp-derived-key" { transport = "sev-guest"  device = "${SEV_GUEST_DEVICE}" }
`;
  throw new Error(`runtime image: psp is '${String(psp)}'; must be one of ${RUNTIME_PSPS.join(", ")}`);
}

/** The local stack's runtime config (virtio-serial simulated PSP): what the runtime images built so far carry. */
export const RUNTIME_GUEST_CONFIG = runtimeGuestConfig("virtio-psp");

export const RUNTIME_DATA_SCRIPT = `#!/bin/sh
# Formats the data disk on first boot (blank: no filesystem signature) and mounts it for the runtime.
set -eu
dev=${RUNTIME_GUEST_DATA_DEVICE}
i=0
while [ ! -b "$dev" ] && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done
if ! blkid "$dev" >/dev/null 2>&1; then mkfs.ext4 -q -L bkdata "$dev"; fi
mkdir -p /var/lib/buckypaper
mountpoint -q /var/lib/buckypaper || mount -o nodev,nosuid,noexec "$dev" /var/lib/buckypaper
chmod 0700 /var/lib/buckypaper
`;

export const RUNTIME_UNIT = `[Unit]
Description=Buckypaper vHSM runtime (attested TLS, derived-key auto-unseal)
After=systemd-networkd.service
[Service]
Type=simple
ExecStartPre=/opt/buckypaper/bk-runtime-data
ExecStart=${RUNTIME_INSTALL_DIR}/bin/bk-runtime ${RUNTIME_CONFIG_PATH}
UMask=0077
StandardOutput=journal+console
StandardError=journal+console
Restart=on-failure
RestartSec=2
[Install]
WantedBy=multi-user.target
`;

/**
 * The sev-guest variant's drop-in for the runtime's unit: the Linux sev-guest driver is a module in Debian's
 * kernel (CONFIG_SEV_GUEST=m), loaded by udev when the platform device appears; the runtime asks for its sealing
 * key at start, so it waits (up to 30 s) for /dev/sev-guest instead of racing udev. Without the device (a guest
 * not launched with SEV-SNP) the runtime still starts — and stays sealed: its derived key cannot be had.
 */
export const SEV_GUEST_DROP_IN = `[Service]
ExecStartPre=/bin/sh -c 'modprobe -q sev-guest || true; i=0; while [ ! -c ${SEV_GUEST_DEVICE} ] && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done'
`;

/** Units masked in the runtime image: what would run host-supplied input or open a login. */
export const RUNTIME_MASKED_UNITS = [
  "cloud-init-local.service",
  "cloud-init.service",
  "cloud-config.service",
  "cloud-final.service",
  "ssh.service",
  "ssh.socket",
  "serial-getty@ttyS0.service",
  "getty@tty1.service",
  "debug-shell.service",
];

/** Writes the runtime's config, unit and data-disk script into a staged tree (the artifact is already in it). */
export async function writeRuntimeFiles(
  root: string,
  artifactSha256: string,
  psp: RuntimePsp = "virtio-psp",
): Promise<void> {
  await writeFile(path.join(root, "opt/buckypaper/.runtime-artifact-sha256"), `${artifactSha256}\n`);
  await writeFile(path.join(root, "opt/buckypaper/bk-runtime-data"), RUNTIME_DATA_SCRIPT, { mode: 0o755 });
  await mkdir(path.join(root, path.dirname(RUNTIME_CONFIG_PATH)), { recursive: true });
  await writeFile(path.join(root, RUNTIME_CONFIG_PATH), runtimeGuestConfig(psp), { mode: 0o644 });
  const units = path.join(root, "etc/systemd/system");
  await mkdir(path.join(units, "multi-user.target.wants"), { recursive: true });
  await writeFile(path.join(units, RUNTIME_UNIT_NAME), RUNTIME_UNIT);
  const dropIn = path.join(units, `${RUNTIME_UNIT_NAME}.d`);
  await rm(dropIn, { recursive: true, force: true });
  if (psp === "sev-guest") {
    await mkdir(dropIn, { recursive: true });
    await writeFile(path.join(dropIn, "sev-guest.conf"), SEV_GUEST_DROP_IN);
  }
  await rm(path.join(units, "multi-user.target.wants", RUNTIME_UNIT_NAME), { force: true });
  await symlink(`../${RUNTIME_UNIT_NAME}`, path.join(units, "multi-user.target.wants", RUNTIME_UNIT_NAME));
}

/** The runtime role on a finished tree (network configured, runtime artifact unpacked): files + masks. */
export async function configureRuntimeGuest(
  root: string,
  artifactSha256: string,
  psp: RuntimePsp = "virtio-psp",
): Promise<{ unit: string; config: string; masked: string[]; psp: RuntimePsp }> {
  await writeRuntimeFiles(root, artifactSha256, psp);
  const units = path.join(root, "etc/systemd/system");
  for (const u of RUNTIME_MASKED_UNITS) {
    await rm(path.join(units, u), { recursive: true, force: true });
    await symlink("/dev/null", path.join(units, u));
  }
  // The enable links Debian's packages made for what is masked above are left: a mask wins over them.
  return { unit: RUNTIME_UNIT_NAME, config: RUNTIME_CONFIG_PATH, masked: [...RUNTIME_MASKED_UNITS], psp };
}
