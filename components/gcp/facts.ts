// GCE confidential machine shapes (cloud-offerings.md: SEV_SNP on N2D "AMD Milan"; TDX on C3).
import { ConfigError } from "../common/errors.js";
import { Tee } from "../common/types.js";

const N2D_SIZES = [2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224];
const C3_SIZES = [4, 8, 22, 44, 88, 176];

/** machine type → vCPUs for the families that offer the TEE. */
export function gcpMachineVcpus(component: string, tee: Tee, machineType: string): number {
  const family = tee === Tee.SevSnp ? "n2d" : "c3";
  const sizes = tee === Tee.SevSnp ? N2D_SIZES : C3_SIZES;
  const allowed = ["standard", "highmem", "highcpu"].flatMap((k) => sizes.map((n) => `${family}-${k}-${n}`));
  const m = new RegExp(`^${family}-(standard|highmem|highcpu)-(\\d+)$`).exec(machineType);
  if (!m || !sizes.includes(Number(m[2]))) {
    throw new ConfigError(component, "machineType", `is '${machineType}', which does not offer ${tee === Tee.SevSnp ? "SEV-SNP" : "TDX"}`, allowed.slice(0, 12).concat(["…"]));
  }
  return Number(m[2]);
}

/** Public confidential-capable images (families carry the SEV_SNP_CAPABLE / TDX_CAPABLE features). */
export const GCP_IMAGES: Record<Tee, string> = {
  [Tee.SevSnp]: "ubuntu-os-cloud/ubuntu-2404-lts-amd64",
  [Tee.Tdx]: "ubuntu-os-cloud/ubuntu-2404-lts-amd64",
};
