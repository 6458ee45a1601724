// The image's "runtime" role: the vHSM runtime's own confidential VM. Same locked Debian tree, kernel and
// initramfs as the workload image; instead of the enclaivelet the verity root carries
//   - the runtime artifact (runtime/guest/artifact.ts kind "runtime") at /opt/buckypaper/bk-runtime,
//   - its config (/etc/buckypaper/runtime.hcl: attested TLS over the PSP channel — the local stack's
//     virtio-serial PSP, or /dev/sev-guest on SNP hardware — SQLite on the data disk; the derived-key seal where
//     the launch digest covers the OS, the vTPM half of attested TLS on the clouds where it does not)
//     and the unit that starts it,
//   - a script that formats/mounts the data disk at /var/lib/buckypaper (the only persistent writable
//     state; everything the runtime writes there goes through its barrier),
// and nothing that lets the host run code in it: cloud-init (the NoCloud seed is the host's to write and
// nothing in this guest measures it) and sshd are masked, and no login is configured. So every byte that
// can run in the guest is under the dm-verity root hash on the measured command line.
//
// Two variants (runtimeVariant): "local/hardware" (cloud nocloud, direct boot: the AmdSev firmware measures
// kernel, initrd and command line into the SNP launch digest, so a key the PSP derives from MEASUREMENT is a key
// of this runtime build — derived-key auto-unseal) and "cloud" (--cloud ec2|gce, the cloud disk: the clouds'
// firmware measures only itself into MEASUREMENT, the same for every VM of that size, so the OS is bound through
// the vTPM quote + event log and the runtime unseals only by the operators' Shamir shares). On Azure (--cloud azure)
// the guest has no /dev/sev-guest at all: the runtime's evidence is the paravisor's HCL report and the HCL AK's quote
// through the vTPM (psp "azure-hcl", `attestation "azure"`), and it unseals by shares too.
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
export type RuntimePsp = "virtio-psp" | "sev-guest" | "azure-hcl";
export const RUNTIME_PSPS: readonly RuntimePsp[] = ["virtio-psp", "sev-guest", "azure-hcl"];
/** The guest device the "sev-guest" variant opens (the Linux sev-guest driver's node). */
export const SEV_GUEST_DEVICE = "/dev/sev-guest";

/** The clouds a runtime cloud disk is built for (`--cloud`); "nocloud" is the QEMU/Proxmox direct-boot image. */
export type RuntimeCloud = "ec2" | "gce" | "azure";
export const RUNTIME_CLOUDS: readonly RuntimeCloud[] = ["ec2", "gce", "azure"];

/**
 * How the runtime opens its barrier after a restart (`--runtime-unseal`, recorded as the manifest's runtime.unseal):
 * "derived-key" — by itself, with a key the PSP derives from the launch digest (seal "snp-derived-key"), the Shamir
 * shares from init as the recovery path; "shares" — only by the operators' Shamir shares (sys/unseal) or, in a
 * replica set, by attested peers (peer_unseal): no seal stanza at all.
 */
export type RuntimeUnseal = "derived-key" | "shares";
export const RUNTIME_UNSEALS: readonly RuntimeUnseal[] = ["derived-key", "shares"];

/** A runtime image's build choices, checked together (runtimeVariant). */
export interface RuntimeVariant {
  psp: RuntimePsp;
  /** Absent: the QEMU/Proxmox image (NoCloud, direct boot). */
  cloud?: RuntimeCloud;
  unseal: RuntimeUnseal;
}

/** A runtime image's build options that do not go together; `option` names the CLI flag / build option. */
export class RuntimeImageError extends Error {
  override name = "RuntimeImageError";
  constructor(
    readonly option: string,
    reason: string,
  ) {
    super(`image build --role runtime: ${option}: ${reason}`);
  }
}

/**
 * The runtime image's variant from the build options, or a RuntimeImageError naming the option. Defaults: nocloud →
 * virtio-psp + derived-key (the local stack); ec2/gce → sev-guest + shares, built as the cloud disk.
 *
 * The security rule this enforces: derived-key auto-unseal only where the SNP launch digest covers the runtime's
 * OS. The PSP's derived key mixes MEASUREMENT (and POLICY, the VCEK/chip): on EC2 and GCE MEASUREMENT covers only
 * the cloud's firmware and the vCPU layout — the same for every VM of that size — so the key would be the same for
 * any OS booted on that firmware on that chip, the cloud operator's own included: it could boot its own image with
 * the same firmware, derive the key and unwrap a copied disk's barrier key. No OS-specific input the host cannot
 * choose can be mixed in (HOST_DATA, IMAGE_ID and FAMILY_ID are the launcher's; the guest OS runs at VMPL0 and can ask
 * for any derivation), so on the clouds the runtime unseals by the operators' shares (and attested peers) only. A
 * UEFI-booted disk is the same case anywhere (the firmware does not put the UKI into MEASUREMENT). Azure: the guest
 * has no /dev/sev-guest at all (the paravisor owns the PSP: no derived key exists for it) and its evidence is the
 * paravisor's HCL report through the vTPM (psp "azure-hcl", the only one there and only there); shares only.
 */
export function runtimeVariant(o: { cloud?: string; psp?: string; unseal?: string; format?: string }): RuntimeVariant {
  const cloud = o.cloud ?? "nocloud";
  if (cloud !== "nocloud" && !(RUNTIME_CLOUDS as readonly string[]).includes(cloud))
    throw new RuntimeImageError("--cloud", `'${cloud}'; must be nocloud, ${RUNTIME_CLOUDS.join(", ")}`);
  const onCloud = cloud !== "nocloud";
  const azure = cloud === "azure";
  const psp = o.psp ?? (azure ? "azure-hcl" : onCloud ? "sev-guest" : "virtio-psp");
  if (!(RUNTIME_PSPS as readonly string[]).includes(psp))
    throw new RuntimeImageError("--runtime-psp", `'${psp}'; must be one of ${RUNTIME_PSPS.join(", ")}`);
  // The HCL report is the only evidence an Azure CVM's guest can get, and only an Azure CVM has it.
  if (azure && psp !== "azure-hcl")
    throw new RuntimeImageError(
      "--runtime-psp",
      `'${psp}' with --cloud azure: an Azure confidential VM has no /dev/sev-guest (the paravisor owns the PSP); its evidence is the paravisor's HCL report through the vTPM: --runtime-psp azure-hcl (the default)`,
    );
  if (!azure && psp === "azure-hcl")
    throw new RuntimeImageError(
      "--runtime-psp",
      "'azure-hcl' is the Azure paravisor's report: only with --cloud azure",
    );
  const format = o.format ?? (onCloud ? "disk" : "direct");
  if (onCloud && format !== "disk")
    throw new RuntimeImageError(
      "--format",
      `'${format}' with --cloud ${cloud}: the clouds boot the runtime from the cloud disk (--format disk)`,
    );
  const unseal = o.unseal ?? (onCloud || format === "disk" ? "shares" : "derived-key");
  if (!(RUNTIME_UNSEALS as readonly string[]).includes(unseal))
    throw new RuntimeImageError("--runtime-unseal", `'${unseal}'; must be one of ${RUNTIME_UNSEALS.join(", ")}`);
  if (unseal === "derived-key" && azure)
    throw new RuntimeImageError(
      "--runtime-unseal derived-key",
      "refused with --cloud azure: an Azure confidential VM has no /dev/sev-guest (the paravisor owns the PSP), so there is no SNP derived key to wrap the unseal key with — and the paravisor's launch digest is Microsoft's firmware, the same for every CVM of the size. The runtime on azure unseals with the operators' Shamir shares (and attested peers): --runtime-unseal shares (the default)",
    );
  if (unseal === "derived-key" && onCloud)
    throw new RuntimeImageError(
      "--runtime-unseal derived-key",
      `refused with --cloud ${cloud}: there the SNP launch digest (MEASUREMENT) covers only the cloud's firmware and vCPUs, the same for every VM of that size, so the key the PSP derives from it is the same for any OS that firmware boots on that chip — the cloud operator could boot its own and derive it. The runtime on ${cloud} unseals with the operators' Shamir shares (and attested peers): --runtime-unseal shares (the default)`,
    );
  if (unseal === "derived-key" && format === "disk")
    throw new RuntimeImageError(
      "--runtime-unseal derived-key",
      "refused with --format disk: UEFI firmware does not put the disk's UKI into the SNP launch digest, so the derived key would not depend on the runtime's OS; use --runtime-unseal shares, or the direct-boot image (--format direct) with the AmdSev firmware",
    );
  return {
    psp: psp as RuntimePsp,
    unseal: unseal as RuntimeUnseal,
    ...(onCloud ? { cloud: cloud as RuntimeCloud } : {}),
  };
}

/** Where a cloud disk's runtime reaches its vTPM (the TPM 2.0 resource manager the kernel's tpm_crb/tpm_tis gives). */
export const RUNTIME_TPM_DEVICE = "/dev/tpmrm0";
/** The filesystem label of the runtime's data volume on the clouds (written on first boot: RUNTIME_CLOUD_DATA_SCRIPT). */
export const RUNTIME_DATA_LABEL = "bkdata";

/**
 * The in-guest runtime's config: attested TLS and the derived-key seal, both through the PSP channel `psp`
 * names; SQLite on the data disk. The data disk has no LUKS layer: everything the runtime writes goes through
 * its barrier (AES-GCM), whose unseal key exists on disk only wrapped with the PSP's derived key (and
 * as Shamir shares the operators hold), so a copied disk yields ciphertext. What is not hidden: sizes,
 * path names of the storage keys, write timing — as with Vault's own storage. The listener's certificate
 * carries no trust (clients pin the key the evidence binds), so its host names need not name the address
 * the platform gives the guest.
 */
export function runtimeGuestConfig(
  psp: RuntimePsp,
  variant: Omit<RuntimeVariant, "psp"> = { unseal: "derived-key" },
): string {
  const head = `storage "sqlite" { path = "/var/lib/buckypaper/runtime.db" }
listener "tcp" { address = "0.0.0.0:${RUNTIME_GUEST_PORT}"  tls_hosts = ["127.0.0.1"] }
`;
  // The clouds: the vTPM half of attested TLS (quote + event log, AK bound into REPORT_DATA), so a verifier checks
  // the boot chain the firmware-only MEASUREMENT does not cover. GCE quotes with the AK Google's CA certified.
  const vtpm =
    variant.cloud === undefined || variant.cloud === "azure"
      ? ""
      : variant.cloud === "gce"
        ? `vtpm { device = "${RUNTIME_TPM_DEVICE}"  google_ak = true }`
        : `vtpm { device = "${RUNTIME_TPM_DEVICE}" }`;
  let attestation: string, seal: string;
  if (psp === "azure-hcl") {
    // Azure: the paravisor's HCL report and the HCL AK's quote (+ event log), the binding as the claims' user-data.
    if (variant.cloud !== "azure")
      throw new RuntimeImageError("--runtime-psp azure-hcl", "only with --cloud azure (runtimeVariant)");
    attestation = `attestation "azure" { device = "${RUNTIME_TPM_DEVICE}" }\n`;
    seal = "";
  } else if (psp === "virtio-psp") {
    attestation = vtpm ? `attestation "virtio-psp" {\n  ${vtpm}\n}\n` : `attestation "virtio-psp" {}\n`;
    seal = `seal "snp-derived-key" { transport = "virtio-psp" }\n`;
  } else if (psp === "sev-guest") {
    const device = `device = "${SEV_GUEST_DEVICE}"`;
    attestation = vtpm
      ? `attestation "sev-guest" {\n  ${device}\n  ${vtpm}\n}\n`
      : `attestation "sev-guest" { ${device} }\n`;
    seal = `seal "snp-derived-key" { transport = "sev-guest"  device = "${SEV_GUEST_DEVICE}" }\n`;
  } else throw new Error(`runtime image: psp is '${String(psp)}'; must be one of ${RUNTIME_PSPS.join(", ")}`);
  if (variant.unseal === "derived-key" && variant.cloud !== undefined)
    throw new RuntimeImageError(
      "--runtime-unseal derived-key",
      `refused with --cloud ${variant.cloud} (runtimeVariant)`,
    );
  return head + attestation + (variant.unseal === "derived-key" ? seal : "");
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

/**
 * The cloud disk's data volume, found without guessing a device name (EC2 Nitro: /dev/nvme1n1 or any other NVMe
 * namespace number, GCE: /dev/sdb or /dev/nvme0n2, by attach order): the one filesystem labelled bkdata; on first
 * boot, when there is none, the one whole disk that is blank (no partition table, no signature), is not the boot
 * disk (the disk holding the bk-root-/bk-verity- partitions the initramfs verified) and is not EC2 instance storage
 * (ephemeral: "Amazon EC2 NVMe Instance Storage", lost at stop), which it then formats with that label. Two labelled
 * filesystems, or two blank candidates, stop the runtime naming them rather than picking one (the host could attach
 * a second disk; what it holds is the barrier's ciphertext either way, but the choice is not guessed at).
 */
export const RUNTIME_CLOUD_DATA_SCRIPT = `#!/bin/sh
set -eu
say() { echo "bk-runtime-data: $*" >&2; }
labelled() { blkid -t LABEL=${RUNTIME_DATA_LABEL} -o device 2>/dev/null || true; }
# Whole disks that are not the boot disk, hold no partition table or filesystem and are not instance storage.
blank() {
  boot=
  for p in /sys/class/block/*; do
    [ -f "$p/partition" ] || continue
    case "$(sed -n 's/^PARTNAME=//p' "$p/uevent")" in
      bk-root-*|bk-verity-*) boot="$boot $(basename "$(readlink -f "$p/..")")" ;;
    esac
  done
  for d in /sys/block/*; do
    n=\${d##*/}
    case "$n" in loop*|ram*|dm-*|sr*|zram*|md*) continue ;; esac
    case " $boot " in *" $n "*) continue ;; esac
    [ "$(cat "$d/ro" 2>/dev/null)" = 0 ] || continue
    [ -z "$(ls -d "$d/$n"* 2>/dev/null)" ] || continue
    case "$(cat "$d/device/model" 2>/dev/null)" in *"Instance Storage"*) continue ;; esac
    blkid -p "/dev/$n" >/dev/null 2>&1 && continue
    echo "/dev/$n"
  done
}
i=0
while :; do
  found=$(labelled)
  [ -n "$found" ] && break
  cand=$(blank)
  if [ "$(echo "$cand" | grep -c /dev/)" = 1 ]; then
    say "first boot: formatting $cand (the one blank non-boot disk) as ${RUNTIME_DATA_LABEL}"
    mkfs.ext4 -q -L ${RUNTIME_DATA_LABEL} "$cand"
    found=$cand
    break
  fi
  if [ "$(echo "$cand" | grep -c /dev/)" -gt 1 ]; then say "more than one blank disk (" $cand "): attach exactly one data volume"; exit 1; fi
  i=$((i+1))
  [ $i -lt 60 ] || { say "no data volume: attach one blank disk (or the one labelled ${RUNTIME_DATA_LABEL})"; exit 1; }
  sleep 1
done
if [ "$(echo "$found" | grep -c /dev/)" != 1 ]; then say "more than one filesystem labelled ${RUNTIME_DATA_LABEL} (" $found ")"; exit 1; fi
mkdir -p /var/lib/buckypaper
mountpoint -q /var/lib/buckypaper || mount -o nodev,nosuid,noexec "$found" /var/lib/buckypaper
chmod 0700 /var/lib/buckypaper
say "$found mounted at /var/lib/buckypaper"
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

/**
 * The cloud variant's drop-in: the runtime reads its vTPM AK at start (an unreachable TPM stops the start), and
 * /dev/tpmrm0 appears when udev has loaded tpm_crb/tpm_tis: wait for it (up to 30 s) instead of exhausting the
 * unit's restart limit.
 */
export const VTPM_DROP_IN = `[Service]
ExecStartPre=/bin/sh -c 'i=0; while [ ! -c ${RUNTIME_TPM_DEVICE} ] && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done'
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
  variant: Omit<RuntimeVariant, "psp"> = { unseal: "derived-key" },
): Promise<void> {
  const config = runtimeGuestConfig(psp, variant);
  await writeFile(path.join(root, "opt/buckypaper/.runtime-artifact-sha256"), `${artifactSha256}\n`);
  await writeFile(
    path.join(root, "opt/buckypaper/bk-runtime-data"),
    variant.cloud ? RUNTIME_CLOUD_DATA_SCRIPT : RUNTIME_DATA_SCRIPT,
    { mode: 0o755 },
  );
  await mkdir(path.join(root, path.dirname(RUNTIME_CONFIG_PATH)), { recursive: true });
  await writeFile(path.join(root, RUNTIME_CONFIG_PATH), config, { mode: 0o644 });
  const units = path.join(root, "etc/systemd/system");
  await mkdir(path.join(units, "multi-user.target.wants"), { recursive: true });
  await writeFile(path.join(units, RUNTIME_UNIT_NAME), RUNTIME_UNIT);
  const dropIn = path.join(units, `${RUNTIME_UNIT_NAME}.d`);
  await rm(dropIn, { recursive: true, force: true });
  if (psp === "sev-guest" || variant.cloud) await mkdir(dropIn, { recursive: true });
  if (psp === "sev-guest") await writeFile(path.join(dropIn, "sev-guest.conf"), SEV_GUEST_DROP_IN);
  if (variant.cloud) await writeFile(path.join(dropIn, "vtpm.conf"), VTPM_DROP_IN);
  await rm(path.join(units, "multi-user.target.wants", RUNTIME_UNIT_NAME), { force: true });
  await symlink(`../${RUNTIME_UNIT_NAME}`, path.join(units, "multi-user.target.wants", RUNTIME_UNIT_NAME));
}

/** The runtime role on a finished tree (network configured, runtime artifact unpacked): files + masks. */
export async function configureRuntimeGuest(
  root: string,
  artifactSha256: string,
  psp: RuntimePsp = "virtio-psp",
  variant: Omit<RuntimeVariant, "psp"> = { unseal: "derived-key" },
): Promise<{
  unit: string;
  config: string;
  masked: string[];
  psp: RuntimePsp;
  cloud?: RuntimeCloud;
  unseal?: RuntimeUnseal;
  vtpm?: RuntimeVtpmRecord;
}> {
  await writeRuntimeFiles(root, artifactSha256, psp, variant);
  const units = path.join(root, "etc/systemd/system");
  for (const u of RUNTIME_MASKED_UNITS) {
    await rm(path.join(units, u), { recursive: true, force: true });
    await symlink("/dev/null", path.join(units, u));
  }
  // The enable links Debian's packages made for what is masked above are left: a mask wins over them.
  // The cloud fields only for the cloud variant: the QEMU/Proxmox images' manifests stay as they were.
  return {
    unit: RUNTIME_UNIT_NAME,
    config: RUNTIME_CONFIG_PATH,
    masked: [...RUNTIME_MASKED_UNITS],
    psp,
    ...(variant.cloud
      ? {
          cloud: variant.cloud,
          unseal: variant.unseal,
          vtpm: {
            device: RUNTIME_TPM_DEVICE,
            ak:
              variant.cloud === "gce"
                ? ("google-ak" as const)
                : variant.cloud === "azure"
                  ? ("hcl-ak" as const)
                  : ("runtime-ak" as const),
          },
        }
      : {}),
  };
}

/** What the manifest records of a cloud runtime's vTPM half: the device and which AK it quotes with. */
export interface RuntimeVtpmRecord {
  device: string;
  /**
   * "runtime-ak": an AK the runtime creates under the vTPM's EK and persists (EC2: authenticated by the verifier's
   * AK pin — the image carries no nitro-tpm-attest); "google-ak": the AK Google's EK/AK CA certified (GCE);
   * "hcl-ak": Azure's paravisor AK (0x81000003), bound to the hardware by the HCL report's runtime claims.
   */
  ak: "runtime-ak" | "google-ak" | "hcl-ak";
}
