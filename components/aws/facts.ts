// AWS SEV-SNP facts the component needs at preview time. Sources: AWS EC2 User Guide "AMD SEV-SNP for
// Amazon EC2 instances" (types, regions, UEFI AMIs) and github.com/aws/uefi (firmware; CHANGELOG
// publishes the SNP OVMF hash), summarised in shared/docs/reference/cloud-offerings.md and
// cloud-measurement-notes.md.
import { snpLaunchDigestTable, type FirmwareDescription } from "../../images/index.js";

/** Instance type → vCPUs (the launch digest depends on the count). */
export const AWS_SNP_INSTANCE_TYPES: Record<string, number> = {
  "m6a.large": 2, "m6a.xlarge": 4, "m6a.2xlarge": 8, "m6a.4xlarge": 16, "m6a.8xlarge": 32,
  "c6a.large": 2, "c6a.xlarge": 4, "c6a.2xlarge": 8, "c6a.4xlarge": 16, "c6a.8xlarge": 32, "c6a.12xlarge": 48, "c6a.16xlarge": 64,
  "r6a.large": 2, "r6a.xlarge": 4, "r6a.2xlarge": 8, "r6a.4xlarge": 16,
};

/** Regions offering SEV-SNP on shared tenancy. */
export const AWS_SNP_REGIONS = ["us-east-2", "eu-west-1"] as const;

/**
 * The EC2 firmware (aws/uefi, release of 2023-04-21) known by its facts: the OVMF hash from the
 * aws/uefi CHANGELOG, and the SEV metadata layout, which is that of edk2-stable202211 builds (five
 * sections, reset EIP 0x80b004, no kernel-hashes table: EC2 cannot do measured direct boot).
 */
export const AWS_UEFI_FIRMWARE: FirmwareDescription = {
  ovmfHash: Buffer.from("a58211791a556a630a4319dc9e2ea96cc0e9784dd9f20a4fadf81b26c98d163fcdcb6703884bbbb80d7b1de45b3d84d0", "hex"),
  resetEip: 0x80b004,
  sections: [
    { gpa: 0x800000, size: 0x9000, type: 1 },
    { gpa: 0x80a000, size: 0x3000, type: 1 },
    { gpa: 0x80d000, size: 0x1000, type: 2 },
    { gpa: 0x80e000, size: 0x1000, type: 3 },
    { gpa: 0x80f000, size: 0x11000, type: 1 },
  ],
};

/** Expected digests for `vcpus`: the current EC2 layout, and the pre-2026 one (RDX=0) if asked. */
export function awsSnpMeasurements(vcpus: number, acceptLegacy: boolean, firmware: FirmwareDescription = AWS_UEFI_FIRMWARE): string[] {
  const out = [snpLaunchDigestTable({ firmware, vmm: "ec2" }, [vcpus]).get(vcpus)!.toString("hex")];
  if (acceptLegacy) out.push(snpLaunchDigestTable({ firmware, vmm: "ec2-legacy" }, [vcpus]).get(vcpus)!.toString("hex"));
  return out;
}

/** Canonical's Ubuntu 24.04 server AMIs boot UEFI-preferred, which SEV-SNP accepts. */
export function awsAmiFilter() {
  return {
    owners: ["099720109477"],
    mostRecent: true,
    filters: [
      { name: "name", values: ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"] },
      { name: "architecture", values: ["x86_64"] },
      { name: "virtualization-type", values: ["hvm"] },
    ],
  };
}
