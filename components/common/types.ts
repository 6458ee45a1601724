// Types shared by every confidential-VM component. Enums (not string unions) so that the schema
// Pulumi infers for other languages has real enum types.
import type * as pulumi from "@pulumi/pulumi";

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

/** Where the vHSM runtime is and how to reach it: the output of a `Vhsm` component. */
export interface VhsmConnectionArgs {
  /** Runtime base URL the guests and the deployment reach, e.g. https://vhsm.example:8200. */
  url: pulumi.Input<string>;
  /** SHA-256 (hex) of the runtime CA certificate; guests pin it. */
  caFingerprint: pulumi.Input<string>;
  /** Token the deployment uses to register workloads (a Pulumi secret). */
  token: pulumi.Input<string>;
  /** PEM of the runtime CA: lets the deployment itself reach an https runtime with a private CA (a `Vhsm`'s caPem). */
  caPem?: pulumi.Input<string>;
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

/** An SSH target (Proxmox node, KVM host). The private key must be a Pulumi secret. */
export interface SshHostArgs {
  host: pulumi.Input<string>;
  port?: pulumi.Input<number>;
  user?: pulumi.Input<string>;
  privateKey: pulumi.Input<string>;
}
