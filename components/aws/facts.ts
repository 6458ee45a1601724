// AWS SEV-SNP expectations from the catalog (images/catalog: instance types, regions, the aws/uefi
// firmware known by its published OVMF hash and section layout).
import { snpLaunchDigestTable, snpFirmwareDescription, type CatalogEntry } from "../../images/index.js";

/** Expected digests for `vcpus`: the current EC2 layout first, then the alternatives (pre-2026 RDX=0). */
export function awsSnpMeasurements(entry: CatalogEntry, vcpus: number, acceptLegacy: boolean): string[] {
  const firmware = snpFirmwareDescription(entry);
  const vmms = [entry.vmm ?? "ec2", ...(acceptLegacy ? entry.alternativeVmms : [])];
  return vmms.map((vmm) => snpLaunchDigestTable({ firmware, vmm }, [vcpus]).get(vcpus)!.toString("hex"));
}

/**
 * The aws.ec2.getAmi filter for the catalog image (UEFI-capable, as SEV-SNP requires). With `nitroTpm`, only
 * AMIs registered with TpmSupport v2.0 (NitroTPM is enabled by the AMI, not the instance) qualify.
 */
export function awsAmiFilter(entry: CatalogEntry, nitroTpm = false) {
  if (entry.image.kind !== "aws-ami") throw new Error(`catalog image ${entry.name} is not an AMI`);
  return {
    owners: entry.image.owners,
    mostRecent: true,
    filters: [
      { name: "name", values: [entry.image.namePattern] },
      { name: "architecture", values: [entry.image.architecture] },
      { name: "virtualization-type", values: ["hvm"] },
      ...(nitroTpm ? [{ name: "tpm-support", values: ["v2.0"] }] : []),
    ],
  };
}
