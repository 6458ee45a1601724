// Types shared by every confidential-VM component. Enums (not string unions) so that the schema
// Pulumi infers for other languages has real enum types.
import type * as pulumi from "@pulumi/pulumi";
import type { RuntimeConnectionArgs, SshTargetArgs } from "../../provider/resources.js";

export enum Platform {
  Aws = "aws",
  Azure = "azure",
  Gcp = "gcp",
  Proxmox = "proxmox",
  Qemu = "qemu",
}

export enum Tee {
  SevSnp = "snp",
  Tdx = "tdx",
}

/**
 * Where the runtime is and how to reach it — the one connection type (provider RuntimeConnectionArgs:
 * url, token, caPem) — plus what the guests need: the CA fingerprint they pin (required here) and where
 * they fetch the enclaivelet. A `Vhsm` component's outputs fit here.
 */
export interface VhsmConnectionArgs extends RuntimeConnectionArgs {
  /** SHA-256 (hex) of the runtime CA certificate; guests pin it. Empty ("") with `attestation` (a `Vhsm` in
   *  mode confidential-vm): the guests verify the runtime's evidence instead of a copied fingerprint. */
  caFingerprint: pulumi.Input<string>;
  /**
   * Where guests download the enclaivelet artifact (`buckypaper enclaivelet package`) and its SHA-256,
   * pinned in user-data. Without them the agent must be baked into the image (/opt/buckypaper).
   */
  agentUrl?: pulumi.Input<string>;
  agentSha256?: pulumi.Input<string>;
}

/** The encrypted data volume the enclaivelet unlocks with a key released only after attestation. */
export interface DataVolumeArgs {
  /** Size in GiB (default 10). */
  sizeGb?: pulumi.Input<number>;
  /** Mount point inside the guest (default /data). */
  mountPoint?: pulumi.Input<string>;
}

/** An SSH target (Proxmox node, KVM host): the one SSH target type (name kept for the generated SDKs). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- its own name keeps the generated SDK type name
export interface SshHostArgs extends SshTargetArgs {}
