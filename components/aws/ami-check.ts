// A program-given AMI, read at preview (aws.ec2.getAmi, i.e. ec2:DescribeImages) and refused when it cannot carry an
// SEV-SNP workload whose OS is bound through NitroTPM: SEV-SNP instances boot UEFI only, and NitroTPM exists only
// on instances of an AMI registered with TpmSupport v2.0 (the AMI enables it, not the instance). Without this an
// AMI registered without TPM support launches, never produces a quote, and the workload is never provisioned — found
// only after the instance is paid for. The refusal names the AMI attribute and the values allowed.
import * as pulumi from "@pulumi/pulumi";
import * as aws from "@pulumi/aws";
import { ConfigError } from "../common/errors.js";

/** BootMode values an SEV-SNP instance boots: `uefi-preferred` boots UEFI on every UEFI-capable (all SNP) type. */
export const SNP_BOOT_MODES = ["uefi", "uefi-preferred"] as const;

/** The attributes of one AMI that matter here, checked; returns the problem or undefined. */
export function amiProblem(
  who: string,
  id: string,
  a: { bootMode?: string; tpmSupport?: string },
  needsTpm: boolean,
): ConfigError | undefined {
  if (!(SNP_BOOT_MODES as readonly string[]).includes(a.bootMode ?? ""))
    return new ConfigError(
      who,
      "ami",
      `${id} has BootMode '${a.bootMode || "(unset: legacy-bios)"}'; SEV-SNP instances boot UEFI only`,
      SNP_BOOT_MODES,
    );
  if (needsTpm && a.tpmSupport !== "v2.0")
    return new ConfigError(
      who,
      "ami",
      `${id} has TpmSupport '${a.tpmSupport || "(unset)"}': its instances have no NitroTPM, so the OS binding (bootChain/measuredBoot) can never be met. Register the AMI with --tpm-support v2.0 (AwsKitImage does)`,
      ["v2.0"],
    );
  return undefined;
}

/** The AMI id, resolved only after its attributes passed (an Output that fails the preview otherwise). */
export function checkedAmi(
  who: string,
  ami: pulumi.Input<string>,
  needsTpm: boolean,
  parent: pulumi.Resource,
): pulumi.Output<string> {
  const found = aws.ec2.getAmiOutput({ filters: [{ name: "image-id", values: [ami] }] }, { parent });
  return pulumi.all([pulumi.output(ami), found]).apply(([id, r]) => {
    if (r.id !== id)
      throw new ConfigError(who, "ami", `${id} was not found (DescribeImages returned ${r.id || "none"})`);
    const problem = amiProblem(who, id, r, needsTpm);
    if (problem) throw problem;
    return r.id;
  });
}
