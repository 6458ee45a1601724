// An AMD SEV-SNP EC2 instance whose launch measurement is computed at deploy time and registered with
// the runtime before the instance exists; its secrets arrive only through attestation.
import * as pulumi from "@pulumi/pulumi";
import * as aws from "@pulumi/aws";
import { ConfigError, requireOneOf } from "../common/errors.js";
import { registerGuest } from "../common/guest.js";
import { requireSecretMap } from "../common/secrets.js";
import { Platform, Tee, type DataVolumeArgs, type VhsmConnectionArgs } from "../common/types.js";
import { catalogEntry, catalogRegions, catalogVcpus } from "../common/catalog.js";
import { awsAmiFilter, awsSnpMeasurements } from "./facts.js";
import { awsInstanceArgs } from "./settings.js";
import { ATTESTATION_CHAIN, measuresUserData, secureBootSummary, userDataSummary } from "../common/os-binding.js";
import { awsOsBinding, type AwsOsBindingArgs } from "./os-binding.js";
import type { Policy } from "../../runtime/protocol/policy.js";
import { InstanceTpmEk } from "../../provider/aws-ek-resource.js";
import { bootChainFromKitImage, type KitImageRef } from "../common/kit-image.js";
import { checkedAmi } from "./ami-check.js";

export interface AwsConfidentialVmArgs extends AwsOsBindingArgs {
  /** Refuse classical-only attestations: the workload's secrets are released only sealed with hybrid
   *  ML-KEM-768 + P-384 (Nitride require_pq_hybrid, docs/post-quantum.md). Default false. */
  requirePqHybrid?: boolean;
  /** The runtime the VM attests to (a `Vhsm` component's outputs). */
  vhsm: VhsmConnectionArgs;
  /** SEV-SNP capable type (m6a/c6a/r6a sizes). Default m6a.large. */
  instanceType?: string;
  /** Region; must offer SEV-SNP. Default: the aws:region config. */
  region?: string;
  /**
   * AMI id; default the latest AMI of the catalog image (see `image`), with TpmSupport v2.0 when measuredBoot is set.
   * A given AMI is read at preview (ec2:DescribeImages) and refused unless its BootMode is uefi (or uefi-preferred)
   * and, when the OS is bound through NitroTPM, its TpmSupport is v2.0.
   */
  ami?: pulumi.Input<string>;
  /**
   * The kit's own image (an `AwsKitImage`): its AMI is launched and its manifest, disk and enrolled db certificates
   * are the bootChain the workload is registered with (exclusive with `ami`; a bootChain given beside it must name
   * the same manifest and db certificates).
   */
  kitImage?: KitImageRef;
  /** Catalog image name (default ubuntu-24.04; also al2023). */
  image?: string;
  subnetId?: pulumi.Input<string>;
  securityGroupIds?: pulumi.Input<pulumi.Input<string>[]>;
  keyName?: pulumi.Input<string>;
  /** Root volume size in GiB (default 16); always encrypted. */
  rootVolumeSizeGb?: number;
  /** Application secrets (Pulumi secrets only), delivered after attestation. */
  secrets?: Record<string, pulumi.Input<string>>;
  /** An encrypted data volume unlocked with a key from the runtime. */
  dataVolume?: DataVolumeArgs;
  /** Accept the pre-2026 EC2 VMSA layout (RDX=0) as well: older hosts still produce it. Default true. */
  acceptLegacyLayout?: boolean;
  tags?: Record<string, pulumi.Input<string>>;
}

export class AwsConfidentialVm extends pulumi.ComponentResource {
  public readonly instanceId: pulumi.Output<string>;
  public readonly privateIp: pulumi.Output<string>;
  public readonly workloadId: pulumi.Output<string>;
  /** EBS volume behind the encrypted data volume, when one is requested. */
  public readonly dataVolumeId: pulumi.Output<string | undefined>;
  /** Expected SNP launch digests (hex), current layout first. */
  public readonly expectedMeasurements: pulumi.Output<string[]>;
  /** What this VM's evidence is rooted in, and what it does not bind (docs/attestation-chain.md). */
  public readonly attestationChain: pulumi.Output<string>;

  constructor(name: string, args: AwsConfidentialVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:AwsConfidentialVm", name, args, opts);
    const who = `AwsConfidentialVm ${name}`;
    if (args.kitImage && args.ami !== undefined)
      throw new ConfigError(who, "ami", "and kitImage are exclusive (kitImage launches its own AMI)");
    // One source of truth: with a kit image, the boot chain predicted is the image's (same db certificates).
    if (args.kitImage) args = { ...args, bootChain: bootChainFromKitImage(who, args.kitImage, "ec2", args.bootChain) };
    const instanceType = args.instanceType ?? "m6a.large";
    const vcpus = catalogVcpus(who, "instanceType", Platform.Aws, instanceType, Tee.SevSnp);
    const regions = catalogRegions(Platform.Aws, instanceType) ?? [];
    const region = args.region ?? aws.config.region;
    if (!region) throw new ConfigError(who, "region", "is not set (set it or the aws:region config)", regions);
    requireOneOf(who, "region", region, regions);
    const entry = catalogEntry(who, Platform.Aws, Tee.SevSnp, args.image);
    const secrets = requireSecretMap(who, "secrets", args.secrets);
    const measurements = awsSnpMeasurements(entry, vcpus, args.acceptLegacyLayout ?? true);
    // Before the boot-chain prediction: a kit image built for another user-data source is the first thing to say.
    const agentInImage = measuresUserData(who, args, "ec2");
    // The launch digest is the same for every EC2 SNP VM of this size: the OS is bound only through NitroTPM.
    const vtpm = awsOsBinding(who, args);

    // Pinned to its own instance: registered once the instance exists, with its id in vtpm.nitroTpm.instanceIds.
    const pin = vtpm?.nitroTpm !== undefined && args.pinInstance !== false;
    const guest = registerGuest(
      this,
      name,
      {
        platform: Platform.Aws,
        tee: Tee.SevSnp,
        workloadId: `${pulumi.getStack()}-${name}`,
        evidencePlatform: "snp",
        reference: { snpMeasurements: measurements },
        vtpm: vtpm !== undefined,
        agentInImage,
        vhsm: args.vhsm,
        requirePqHybrid: args.requirePqHybrid,
        secrets,
        dataVolume: args.dataVolume,
        dataVolumeDevice: "/dev/nvme1n1",
        hostname: name,
      },
      "after-vm",
    );

    // The kit image's AMI is UEFI + NitroTPM by construction; a given AMI is checked; the catalog's is filtered.
    const ami = args.kitImage
      ? args.kitImage.imageId
      : args.ami !== undefined
        ? checkedAmi(who, args.ami, vtpm !== undefined, this)
        : aws.ec2.getAmiOutput(awsAmiFilter(entry, vtpm !== undefined), { parent: this }).id;
    const tags = { Name: name, "buckypaper:workload": guest.workloadId, ...args.tags };
    const instance = new aws.ec2.Instance(
      name,
      awsInstanceArgs({
        ami,
        instanceType,
        userData: guest.userData,
        rootVolumeSizeGb: args.rootVolumeSizeGb ?? 16,
        subnetId: args.subnetId,
        securityGroupIds: args.securityGroupIds,
        keyName: args.keyName,
        tags,
      }),
      { parent: this },
    );
    // AWS shared tenancy signs reports with a VLEK; policy 0x30000 (SMT on, debug off) is what it sets.
    const basePolicy: Policy = {
      snp: { allowDebug: false, allowMigrationAgent: false },
      ...(vtpm ? { vtpm } : {}),
    };
    // The instance's EK (GetInstanceTpmEkPub) once it exists, next to any given in ekPublicTpmt: Nitride makes an EK
    // credential for it at every attestation (vtpm.ekPublics) and checks the AK's parent (vtpm.ekNames).
    const ek =
      vtpm && (args.instanceEkPin ?? true)
        ? new InstanceTpmEk(`${name}-ek`, { instanceId: instance.id, region }, { parent: this, dependsOn: [instance] })
        : undefined;
    const workload = guest.register({
      policy:
        pin || ek
          ? pulumi
              .all([instance.id, ek?.ekName ?? "", ek?.ekPublicTpmt ?? ""])
              .apply(([id, ekName, ekPublic]): Policy => ({
                ...basePolicy,
                vtpm: {
                  ...vtpm!,
                  ...(pin ? { nitroTpm: { ...vtpm!.nitroTpm, instanceIds: [id] } } : {}),
                  ...(ekName ? { ekNames: [...new Set([...(vtpm!.ekNames ?? []), ekName])] } : {}),
                  ...(ekPublic ? { ekPublics: [...new Set([...(vtpm!.ekPublics ?? []), ekPublic])] } : {}),
                },
              }))
          : basePolicy,
      dependsOn: [instance, ...(ek ? [ek] : [])],
    });
    let dataVolumeId: pulumi.Output<string | undefined> = pulumi.output(undefined);
    if (args.dataVolume) {
      const volume = new aws.ebs.Volume(
        `${name}-data`,
        {
          availabilityZone: instance.availabilityZone,
          size: args.dataVolume.sizeGb ?? 10,
          type: "gp3",
          // EBS encryption protects against the disk leaving AWS; LUKS inside protects against AWS.
          encrypted: true,
          tags,
        },
        { parent: this },
      );
      const attachment = new aws.ec2.VolumeAttachment(
        `${name}-data`,
        { instanceId: instance.id, volumeId: volume.id, deviceName: "/dev/sdf" },
        { parent: this },
      );
      dataVolumeId = attachment.volumeId;
    }
    this.dataVolumeId = dataVolumeId;

    this.instanceId = instance.id;
    this.privateIp = instance.privateIp;
    // Resolves once the workload is registered (after the instance).
    this.workloadId = workload.workloadId;
    this.expectedMeasurements = pulumi.output(measurements);
    this.attestationChain = pulumi.output(
      ATTESTATION_CHAIN[Platform.Aws] +
        (vtpm && (vtpm.akPins || vtpm.nitroTpm || ek || vtpm.ekPublics)
          ? vtpm.nitroTpm
            ? " THIS WORKLOAD: boot events authenticated by the NitroTPM document."
            : vtpm.akPins
              ? " THIS WORKLOAD: boot events authenticated by akPins."
              : " THIS WORKLOAD: boot events authenticated by EK credential activation."
          : " THIS WORKLOAD: the OS is NOT bound (allowUnboundOs).") +
        secureBootSummary(vtpm?.measuredBoot) +
        userDataSummary(agentInImage, "AWS") +
        (pin
          ? " Instance: pinned (the NitroTPM document's module_id must be this component's instance)."
          : " Instance: NOT pinned (any instance booted from the registered image qualifies).") +
        (ek || vtpm?.ekPublics
          ? ` EK pin: ${ek ? "this instance's NitroTPM EK from GetInstanceTpmEkPub" : "the registered EK (ekPublicTpmt)"}, with EK credential activation: the AK must activate a credential made for that EK, proving it lives in that TPM; the EK itself is vouched for only by the EC2 API (the cloud operator).`
          : vtpm
            ? " EK credential activation: off (instanceEkPin: false)."
            : ""),
    );
    this.registerOutputs({
      attestationChain: this.attestationChain,
      instanceId: this.instanceId,
      privateIp: this.privateIp,
      workloadId: this.workloadId,
      dataVolumeId: this.dataVolumeId,
      expectedMeasurements: this.expectedMeasurements,
    });
  }
}
