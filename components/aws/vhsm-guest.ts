// The Vhsm component's `confidential-vm` mode on AWS: the runtime's cloud disk (the kit's runtime role, `image build
// --role runtime --format disk --cloud ec2`, uploaded by the program as an AMI registered with UEFI boot and
// TpmSupport v2.0) on an SEV-SNP EC2 instance. What the deployer then requires of it (the `attestation` every client
// verifies before sending anything):
//   - the SNP launch digest of EC2's firmware for this instance type's vCPUs (from the catalog, as the workload
//     component computes it) — the same for every customer's VM of that size, so it alone names no OS;
//   - the vTPM half (`policy.vtpm`): a NitroTPM quote and event log meeting the measured-boot policy predicted from
//     the runtime disk's UKI, by an AK authenticated as THIS instance's NitroTPM's:
//       - a runtime image quoting with its own AK (manifest runtime.vtpm.ak "runtime-ak", no nitro-tpm-attest): EK
//         credential activation (`ekPublics`) against the instance's EK from EC2 GetInstanceTpmEkPub (the
//         InstanceTpmEk resource, as AwsConfidentialVm's instanceEkPin): the verifier makes a credential for that EK
//         and the AK's Name and the runtime opens it (POST sys/attestation/activate) — SHA-256 bank; or pinned AKs
//         (`akPins`) when the program gives them;
//       - otherwise the NitroTPM attestation document (AWS Nitro PKI, SHA-384 bank) whose module_id must be THIS
//         instance (`nitroTpm.instanceIds`).
// EC2 launches SNP guests with HOST_DATA zero (not settable): the instance is pinned by its EK (or the NitroTPM
// document) and, after bootstrap, by the runtime instance id its evidence binds. The EK itself is vouched for only
// by the EC2 API (the cloud operator), which the vTPM trusts anyway.
// Unseal: on EC2 the SNP measurement is the firmware's only, so a key the PSP derives from it would unseal ANY VM of
// this size: the runtime is not promised auto-unseal here — it unseals with the operators' recovery shares (or its
// peers), as the runtime image decides; `pulumi up` unseals it with the shares this machine can open.
// The user-data carries no secret (a fixed marker): the runtime's config is part of its measured image.
import { checkedAmi } from "./ami-check.js";
import * as pulumi from "@pulumi/pulumi";
import * as aws from "@pulumi/aws";
import { ConfigError, requireOneOf } from "../common/errors.js";
import { catalogEntry, catalogRegions, catalogVcpus } from "../common/catalog.js";
import { cloudRuntimeImage, type CloudRuntimeImage } from "../common/cloud-runtime-image.js";
import { Platform, Tee } from "../common/types.js";
import { RUNTIME_GUEST_PORT } from "../../images/guest/runtime-role.js";
import type { Policy } from "../../runtime/protocol/policy.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import { awsSnpMeasurements } from "./facts.js";
import { awsInstanceArgs } from "./settings.js";
import { InstanceTpmEk } from "../../provider/aws-ek-resource.js";

/** The runtime VM's user-data: no secret, no config (both are in the measured image). */
export const VHSM_CLOUD_USER_DATA =
  "#cloud-config\n# buckypaper vHSM runtime: its config is in the measured image; nothing here is secret\n{}\n";

export interface AwsVhsmGuestArgs {
  who: string;
  name: string;
  /** The runtime image's manifest.json (field `image`). */
  image: string;
  /** The AMI the program registered from the manifest's disk (field `cloudImageId`). */
  cloudImageId: pulumi.Input<string>;
  instanceType: string;
  /** Default: the aws:region config. */
  region?: string;
  subnetId?: pulumi.Input<string>;
  securityGroupIds?: pulumi.Input<pulumi.Input<string>[]>;
  publicHost?: pulumi.Input<string>;
  /**
   * SHA-256 of the runtime's AK (TPM2B_PUBLIC), obtained over a channel the program trusts: the AK authentication
   * instead of the instance's EK (runtime image with runtime.vtpm.ak "runtime-ak") or the NitroTPM document
   * (field `akPins`).
   */
  akPins?: string[];
  /** db certificates the UKI is signed with and the AMI's uefiData enrolls (optional on AWS: field `dbCertificates`). */
  dbCertificates?: string[];
  rootVolumeSizeGb: number;
  /** GiB of the runtime's data volume (EBS gp3, encrypted by EBS; the runtime's barrier encrypts inside it). */
  dataDiskGb: number;
  /** Accept the pre-2026 EC2 VMSA layout as well (default true, as the workload component). */
  acceptLegacyLayout: boolean;
  tags?: Record<string, pulumi.Input<string>>;
}

export interface CloudVhsmGuest {
  expectedMeasurements: string[];
  image: CloudRuntimeImage;
  url: pulumi.Output<string>;
  /** What every client requires (resolves once the instance exists: its id is pinned). */
  attestation: pulumi.Output<RuntimeAttestation>;
  /** What names this launch: a new instance is a new runtime. */
  launch: pulumi.Output<string>;
  vm: pulumi.Resource;
  vcpus: number;
  where: pulumi.Output<string>;
}

export function awsVhsmGuest(parent: pulumi.Resource, a: AwsVhsmGuestArgs): CloudVhsmGuest {
  const vcpus = catalogVcpus(a.who, "size", Platform.Aws, a.instanceType, Tee.SevSnp);
  const regions = catalogRegions(Platform.Aws, a.instanceType) ?? [];
  const region = a.region ?? aws.config.region;
  if (!region) throw new ConfigError(a.who, "region", "is not set (set it or the aws:region config)", regions);
  requireOneOf(a.who, "region", region, regions);
  const pins = (a.akPins ?? []).map((p, i) => {
    if (!/^[0-9a-fA-F]{64}$/.test(p)) throw new ConfigError(a.who, `akPins[${i}]`, "must be 64 hex digits (SHA-256)");
    return p.toLowerCase();
  });
  if (a.akPins !== undefined && pins.length === 0)
    throw new ConfigError(
      a.who,
      "akPins",
      "is empty: give the runtime's AK digest, or leave it out (the instance's EK, or the NitroTPM document)",
    );
  // The NitroTPM document signs only the SHA-384 bank: the policy is predicted in it. The runtime's own AK (pinned or
  // proven by EK credential activation) quotes sha256.
  const image = cloudRuntimeImage(a.who, "image", a.image, {
    bank: (ak) => (pins.length || ak === "runtime-ak" ? "sha256" : "sha384"),
    cloud: "ec2",
    ...(a.dbCertificates !== undefined ? { dbCertificates: a.dbCertificates } : {}),
  });
  // A runtime-ak image without pins: its AK is proven by EK credential activation against THIS instance's EK.
  const ekActivation = image.ak === "runtime-ak" && !pins.length;
  const measurements = awsSnpMeasurements(catalogEntry(a.who, Platform.Aws, Tee.SevSnp), vcpus, a.acceptLegacyLayout);
  if (typeof a.cloudImageId === "string" && !/^ami-[0-9a-f]{8,17}$/.test(a.cloudImageId))
    throw new ConfigError(
      a.who,
      "cloudImageId",
      `is '${a.cloudImageId}'; must be the AMI id (ami-…) registered from the runtime disk (${image.manifest.disk!.path}) with UEFI boot and TpmSupport v2.0`,
    );
  const instance = new aws.ec2.Instance(
    `${a.name}-vm`,
    {
      ...awsInstanceArgs({
        // Read at preview: UEFI boot and NitroTPM (TpmSupport v2.0) — the runtime's vTPM evidence needs it.
        ami: checkedAmi(a.who, a.cloudImageId, true, parent),
        instanceType: a.instanceType,
        userData: VHSM_CLOUD_USER_DATA,
        rootVolumeSizeGb: a.rootVolumeSizeGb,
        subnetId: a.subnetId,
        securityGroupIds: a.securityGroupIds,
        tags: { Name: a.name, "buckypaper:vhsm": a.name, ...a.tags },
      }),
      // The deployer reaches the runtime at its public address unless the program names another (publicHost).
      ...(a.publicHost === undefined ? { associatePublicIpAddress: true } : {}),
    },
    { parent },
  );
  // The runtime's storage: a blank second volume the runtime image formats with the label bkdata on first boot and
  // finds by that label afterwards (images/guest/runtime-role.ts RUNTIME_CLOUD_DATA_SCRIPT). What it holds is the
  // barrier's ciphertext; EBS encryption only adds protection against the disk leaving AWS.
  const volume = new aws.ebs.Volume(
    `${a.name}-data`,
    {
      availabilityZone: instance.availabilityZone,
      size: a.dataDiskGb,
      type: "gp3",
      encrypted: true,
      tags: { Name: `${a.name}-data`, "buckypaper:vhsm": a.name, ...a.tags },
    },
    { parent },
  );
  const attachment = new aws.ec2.VolumeAttachment(
    `${a.name}-data`,
    { instanceId: instance.id, volumeId: volume.id, deviceName: "/dev/sdf" },
    { parent },
  );
  const host = a.publicHost !== undefined ? pulumi.output(a.publicHost) : instance.publicIp;
  const url = host.apply((h) => {
    if (!h)
      throw new ConfigError(
        a.who,
        "publicHost",
        "is not set and the instance got no public IP (a subnet without public addresses?): give the address the deployer reaches the runtime at",
      );
    return `https://${h.includes(":") ? `[${h}]` : h}:${RUNTIME_GUEST_PORT}`;
  });
  // The instance's EK from EC2 GetInstanceTpmEkPub once the instance exists (deployer's credentials).
  const ek = ekActivation
    ? new InstanceTpmEk(`${a.name}-ek`, { instanceId: instance.id, region }, { parent, dependsOn: [instance] })
    : undefined;
  const attestation = pulumi
    .all([instance.id, ek?.ekPublicTpmt ?? "", ek?.ekName ?? ""])
    .apply(([id, ekPublic, ekName]): RuntimeAttestation => {
      if (ekActivation && !(ekPublic && ekName))
        throw new ConfigError(
          a.who,
          "image",
          `EC2 returned no TPM EK for instance ${id} (GetInstanceTpmEkPub): is NitroTPM enabled on the AMI (TpmSupport v2.0)?`,
        );
      const policy: Policy = {
        // EC2 shared tenancy: policy 0x30000 (SMT on, debug and migration agent off), VLEK-signed reports.
        snp: { allowDebug: false, allowMigrationAgent: false },
        vtpm: pins.length
          ? { measuredBoot: image.measuredBoot, akPins: pins }
          : ekActivation
            ? { measuredBoot: image.measuredBoot, ekPublics: [ekPublic], ekNames: [ekName] }
            : { measuredBoot: image.measuredBoot, nitroTpm: { instanceIds: [id] } },
      };
      return {
        snpMeasurements: measurements,
        // HOST_DATA cannot be set on EC2: the instance is named by its EK (policy.vtpm.ekPublics) or the NitroTPM
        // document's module_id (policy.vtpm.nitroTpm.instanceIds) and, once bootstrapped, by the runtime instance id.
        allowAnyInstance: true,
        policy: JSON.stringify(policy),
        kds: "online",
      };
    });
  const launch = instance.id.apply((id) => `aws:${id}:${image.ukiSha256}:${measurements.join(",")}`);
  return {
    expectedMeasurements: measurements,
    image,
    url,
    attestation,
    launch,
    vm: attachment,
    vcpus,
    where: instance.id.apply(
      (id) => `EC2 instance ${id} in ${region} (aws ec2 get-console-output --instance-id ${id}: the guest's console)`,
    ),
  };
}
