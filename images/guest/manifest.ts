// The image manifest (manifest.json beside the files): everything needed to boot the image and to
// recompute its expected launch measurement — file digests, the dm-verity parameters, the exact kernel
// command line (which carries the root hash), the package lock digest and the firmware.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { VerityInfo } from "./verity.js";
import { CREDENTIAL_CMDLINE } from "./credentials.js";

export const MANIFEST_SCHEMA = "buckypaper.guest-image/v1";

export interface ManifestFile {
  /** Relative to the manifest's directory. */
  path: string;
  sha256: string;
  size: number;
}

export interface ImageManifest {
  schema: typeof MANIFEST_SCHEMA;
  /** Hash of every input of the kernel/initrd/rootfs (the cache key). */
  inputHash: string;
  suite: string;
  kernelVersion: string;
  sourceDateEpoch: number;
  files: { kernel: ManifestFile; initrd: ManifestFile; rootfs: ManifestFile; firmware?: ManifestFile };
  verity: VerityInfo;
  /** The kernel command line to boot with (QEMU -append); its SHA-256 is in the launch digest. */
  cmdline: string;
  /** The block device the initramfs opens as root (the rootfs file attached as the first virtio disk). */
  rootDevice: string;
  packageLock: { sha256: string; packages: number };
  /** What the image runs (absent: "workload", the enclaivelet image). */
  role?: "runtime";
  /** Workload images: the agent baked in. Absent in a runtime image. */
  enclaivelet?: {
    sha256: string;
    path: string;
    node: string;
    /** The systemd unit that runs it before cloud-init's user stages, and the user-data source it reads. */
    unit?: string;
    userDataSource?: string;
    /** The Debian packages (name → locked version) its vTPM evidence runs against /dev/tpmrm0 (lock.ts
     *  VTPM_PACKAGES); absent in manifests from before the image carried them. */
    vtpmTools?: Record<string, string>;
  };
  /** Runtime images: the vHSM runtime baked in, its unit and config, and the units masked. */
  runtime?: {
    sha256: string;
    path: string;
    node: string;
    unit: string;
    config: string;
    masked: string[];
    /** Where the runtime reaches its PSP (runtime-role.ts RuntimePsp); absent in manifests from before the
     *  field: "virtio-psp" (the local stack's simulated PSP). */
    psp?: "virtio-psp" | "sev-guest" | "azure-hcl";
    /** Runtime cloud disks (`--cloud ec2|gce|azure`, runtime-role.ts runtimeVariant): the cloud it was built for.
     *  Absent: the QEMU/Proxmox image (NoCloud, direct boot). */
    cloud?: "ec2" | "gce" | "azure";
    /** How it unseals after a restart: "shares" (operators' Shamir shares, attested peers) on the clouds; absent:
     *  "derived-key" (the PSP's derived key, the shares as recovery). */
    unseal?: "derived-key" | "shares";
    /** The vTPM half of its attested TLS (clouds): the device, and whose AK it quotes with — "runtime-ak" (one it
     *  creates under the vTPM's EK; EC2: the verifier pins it), "google-ak" (GCE: certified by Google's CA) or
     *  "hcl-ak" (Azure: the paravisor's AK, bound by the HCL report). */
    vtpm?: { device: string; ak: "runtime-ak" | "google-ak" | "hcl-ak" };
  };
  /**
   * The cloud disk (`image build --format disk`, default with --cloud ec2|gce; images/guest/disk.ts): a raw GPT
   * disk with an ESP holding a UKI and the root + hash tree as partitions. Absent for a direct-boot-only build.
   */
  disk?: DiskRecord;
  firmware: {
    /** Whether the firmware verifies kernel/initrd/cmdline against the SNP kernel-hashes table. */
    measuredDirectBoot: boolean;
    description: string;
  } | null;
}

/** The cloud disk (images/guest/disk.ts) as the manifest records it. */
export interface StubPin {
  package: string;
  version: string;
  sha256: string;
}

export interface DiskPartitionRecord {
  number: number;
  name: string;
  type: string;
  guid: string;
  firstLba: number;
  lastLba: number;
}

/** The manifest's `disk` entry (paths relative to the manifest's directory). */
export interface DiskRecord {
  path: string;
  sha256: string;
  size: number;
  diskGuid: string;
  partitions: DiskPartitionRecord[];
  /** The UKI as it is on the ESP (and a copy beside the disk at `path`). */
  uki: {
    espPath: string;
    path: string;
    sha256: string;
    size: number;
    /** Its PE Authenticode digests: what UEFI firmware extends into PCR 4 when it starts it. */
    authenticode: { sha256: string; sha384: string };
    cmdline: string;
    initrdSha256: string;
    stub: StubPin & { file: string; stubSha256: string };
  };
  /** Root and hash-tree partitions by GPT name, as the command line names them. */
  rootLabel: string;
  verityLabel: string;
  initrdModules: string[];
  /** Cloud NIC drivers present in the root's /lib/modules (loaded by udev after switch_root). */
  nicModules: string[];
  /** Extra initramfs archives appended for tests (a test hook): their SHA-256s; absent in a real disk. */
  testLayers?: string[];
}

export class ManifestError extends Error {
  override name = "ManifestError";
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

export function sha256Hex(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

// no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can fail and panic the
// guest ("IO-APIC + timer doesn't work!"); the option is measured like the rest of the line. CREDENTIAL_CMDLINE:
// systemd imports no credential from the VMM's SMBIOS/fw_cfg (images/guest/credentials.ts).
export function kernelCmdline(
  rootDevice: string,
  v: VerityInfo,
  extra = `console=ttyS0 panic=-1 no_timer_check ${CREDENTIAL_CMDLINE}`,
): string {
  return `${extra} bk.root=${rootDevice} bk.roothash=${v.rootHash} bk.hashoffset=${v.hashOffset}`;
}

/**
 * What any boot of a kit image must have on its command line, whatever else a program changes in it: the verity
 * root hash (without it the root filesystem is not bound) and the words that keep systemd from importing credentials
 * from the VMM (without them the host can hand PID 1 an authorized key for root). The boot-chain prediction and the
 * registered vTPM policy (kernelCmdline.mustContain) both require them.
 */
export function kitCmdlineMustContain(m: Pick<ImageManifest, "verity">): string[] {
  return [`bk.roothash=${m.verity.rootHash}`, ...CREDENTIAL_CMDLINE.split(" ")];
}

/** Parses and checks a manifest's shape; file digests are checked by readManifestFile. */
export function parseManifest(text: string, source = "manifest.json"): ImageManifest {
  let m: ImageManifest;
  try {
    m = JSON.parse(text) as ImageManifest;
  } catch (e) {
    throw new ManifestError(source, `not JSON (${(e as Error).message})`);
  }
  if (m?.schema !== MANIFEST_SCHEMA) throw new ManifestError(`${source}.schema`, `expected '${MANIFEST_SCHEMA}'`);
  for (const k of ["kernel", "initrd", "rootfs"] as const) {
    const f = m.files?.[k];
    if (!f || typeof f.path !== "string" || !/^[0-9a-f]{64}$/.test(f.sha256 ?? ""))
      throw new ManifestError(`${source}.files.${k}`, "needs path and sha256 (64 hex digits)");
  }
  if (typeof m.cmdline !== "string" || !m.cmdline.includes(`bk.roothash=${m.verity?.rootHash}`))
    throw new ManifestError(`${source}.cmdline`, "must carry bk.roothash=<verity.rootHash>");
  return m;
}

/** Reads a file the manifest names and checks its SHA-256 (a swapped file is an error, not a new digest). */
export function readManifestFile(manifestPath: string, m: ImageManifest, key: keyof ImageManifest["files"]): Buffer {
  const f = m.files[key];
  if (!f) throw new ManifestError(`files.${key}`, "not in the manifest");
  const p = path.resolve(path.dirname(manifestPath), f.path);
  let data: Buffer;
  try {
    data = readFileSync(p);
  } catch (e) {
    throw new ManifestError(`files.${key}`, `${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const got = sha256Hex(data);
  if (got !== f.sha256)
    throw new ManifestError(`files.${key}`, `${p} has SHA-256 ${got}, the manifest says ${f.sha256}`);
  return data;
}
