// Compute Engine settings of a confidential VM. Facts (cloud-offerings.md): SEV_SNP on N2D with
// min CPU platform "AMD Milan"; TDX on C3 with "Intel Sapphire Rapids"; both require
// onHostMaintenance TERMINATE (no live migration of confidential memory).
import type * as pulumi from "@pulumi/pulumi";
import type * as gcp from "@pulumi/gcp";
import { Tee } from "../common/types.js";

export interface GcpInstanceInputs {
  tee: Tee;
  machineType: string;
  zone: pulumi.Input<string>;
  image: pulumi.Input<string>;
  userData: pulumi.Input<string>;
  bootDiskSizeGb: number;
  network?: pulumi.Input<string>;
  subnetwork?: pulumi.Input<string>;
  labels: Record<string, pulumi.Input<string>>;
}

export const GCP_MIN_CPU_PLATFORM: Record<Tee, string> = {
  [Tee.SevSnp]: "AMD Milan",
  [Tee.Tdx]: "Intel Sapphire Rapids",
};

export function gcpInstanceArgs(i: GcpInstanceInputs): gcp.compute.InstanceArgs {
  return {
    machineType: i.machineType,
    zone: i.zone,
    minCpuPlatform: GCP_MIN_CPU_PLATFORM[i.tee],
    confidentialInstanceConfig: { confidentialInstanceType: i.tee === Tee.Tdx ? "TDX" : "SEV_SNP" },
    scheduling: { onHostMaintenance: "TERMINATE", automaticRestart: true },
    shieldedInstanceConfig: { enableSecureBoot: true, enableVtpm: true, enableIntegrityMonitoring: true },
    bootDisk: { autoDelete: true, initializeParams: { image: i.image, size: i.bootDiskSizeGb, type: "pd-balanced" } },
    networkInterfaces: [{ network: i.subnetwork ? undefined : (i.network ?? "default"), subnetwork: i.subnetwork }],
    metadata: {
      "user-data": i.userData,
      // Project-wide SSH keys would let anyone with project access in; keys come from the runtime's SSH CA.
      "block-project-ssh-keys": "true",
      "enable-oslogin": "false",
    },
    labels: i.labels,
    // Changing the CPU platform or confidential type needs a stop; let the engine do it.
    allowStoppingForUpdate: true,
  };
}
