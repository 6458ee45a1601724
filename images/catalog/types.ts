// Catalog types: what a component needs at deploy time to launch a confidential VM on a platform and to
// compute its expected launch measurement. Every fact carries the source it was taken from; what no
// source establishes is typed as "must be supplied" instead of guessed.
import type { VmmType } from "../snp/vmsa.js";
import type { MrtdOrder } from "../tdx/mrtd.js";

export const PLATFORMS = ["aws", "azure", "gcp", "proxmox", "qemu"] as const;
export type Platform = (typeof PLATFORMS)[number];
export const TEES = ["snp", "tdx"] as const;
export type Tee = (typeof TEES)[number];
/** SEV-SNP VMSA register layouts of the measurement engine (images/snp). */
export type VmmLayout = VmmType;

/** Where a fact comes from: a document/repository reference, and optionally a note on its limits. */
export interface Sourced {
  source: string;
}

export type ImageRef =
  | (Sourced & {
      kind: "aws-ami";
      owners: string[];
      namePattern: string;
      architecture: "x86_64";
      bootMode: "uefi" | "uefi-preferred";
    })
  | (Sourced & {
      kind: "azure-marketplace";
      urn: string;
      publisher: string;
      offer: string;
      sku: string;
      version: string;
      securityType: "ConfidentialVM";
    })
  | (Sourced & {
      kind: "gcp-image-family";
      project: string;
      family: string;
      requiredGuestOsFeature: "SEV_SNP_CAPABLE" | "TDX_CAPABLE";
    })
  | (Sourced & { kind: "cloud-image"; url: string; format: "qcow2"; sha512: "must be supplied" })
  | (Sourced & { kind: "direct-boot"; kernel: PinnedFile; initrd: PinnedFile; fetchScript: string })
  /**
   * The kit's own guest image (docs/images.md): kernel, initramfs and a dm-verity root filesystem built from
   * `lockFile` by `buildCommand`; its manifest.json names the files, their SHA-256s and the command line with the
   * root hash, and `buckypaper measure snp --manifest` recomputes the launch digest from it.
   */
  | (Sourced & {
      kind: "kit-image";
      buildCommand: "buckypaper image build";
      lockFile: "images/guest/packages.lock";
      manifest: string;
      rootfsDisk: string;
    });

/** One SEV metadata section (GPA, size, SectionTypeInt) as in sev-snp-measure-go's MetadataItems. */
export interface SnpSection {
  gpa: number;
  size: number;
  type: number;
}

export interface PinnedFile {
  path: string;
  sha256: string;
  /** Debian package(s) the bytes come from. */
  from: string;
}

export type FirmwareRef =
  /** A firmware binary on the deploying machine (or the host), hashable and parseable by the engine. */
  | (Sourced & {
      kind: "file";
      path: string;
      sha256: string | "must be supplied";
      package: string;
      measuredDirectBoot: boolean;
      notes: string[];
    })
  /**
   * Firmware known by its facts only: a published SNP OVMF hash (the chain seed) plus the SEV metadata
   * layout — enough for the SNP engine's firmware description (see snpFirmwareDescription).
   */
  | (Sourced & {
      kind: "snp-ovmf-hash";
      ovmfHash: string;
      release: string;
      resetEip: number;
      sections: SnpSection[];
      otherKnownHashes: (Sourced & { ovmfHash: string; what: string })[];
      measuredDirectBoot: false;
      notes: string[];
    })
  /** The cloud signs reference measurements (launch endorsements) per firmware release; fetch and verify those. */
  | (Sourced & { kind: "endorsed"; endorsementUrl: string; notes: string[] })
  /** The launch measurement covers closed cloud firmware (paravisor): no prediction from public inputs. */
  | (Sourced & { kind: "not-predictable"; reason: string; notes: string[] })
  /** Nothing published: the operator provides the firmware binary (path on the host given as a hint). */
  | (Sourced & { kind: "must be supplied"; hint: string; notes: string[] });

export interface CatalogEntry {
  platform: Platform;
  tee: Tee;
  /** Image name within platform × TEE, e.g. "ubuntu-24.04". */
  name: string;
  isDefault: boolean;
  image: ImageRef;
  firmware: FirmwareRef;
  /** SNP VMSA layout (null for TDX and where the launch measurement is not predictable). */
  vmm: VmmLayout | null;
  /** Other layouts a verifier may have to accept too (e.g. older EC2 hosts). */
  alternativeVmms: VmmLayout[];
  /** Default SNP vCPU type (null where the layout ignores it or for TDX). */
  vcpuType: string | null;
  /** TDX page-add order of the platform's hosts (null for SNP). */
  mrtdOrder: MrtdOrder | null;
  notes: string[];
}

export interface InstanceType {
  name: string;
  vcpus: number;
  memoryGiB: number;
  tees: Tee[];
  family: string;
}

export interface InstanceFamily extends Sourced {
  platform: Platform;
  family: string;
  tees: Tee[];
  cpu: string;
  /** Regions where the family supports the TEE; null when no source lists them (query the cloud at deploy time). */
  regions: string[] | null;
  regionsNote?: string;
  sizes: { name: string; vcpus: number; memoryGiB: number }[];
}
