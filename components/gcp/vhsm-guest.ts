// The Vhsm component's `confidential-vm` mode on Google Cloud: the runtime's cloud disk (the kit's runtime role,
// `image build --role runtime --format disk --cloud gce`, uploaded by the program as a GCE image with the
// SEV_SNP_CAPABLE, UEFI_COMPATIBLE guest OS features) on an N2D SEV-SNP Shielded VM (vTPM and integrity monitoring on,
// as the workload component sets them). What the deployer requires of it (the `attestation` every client verifies):
//   - the SNP launch digest Google's launch endorsement names for this machine type's vCPU count, the endorsement's
//     signature verified at preview against the GCE-cc-tcb-root the program gives (no pasted digest);
//   - the vTPM half (`policy.vtpm`): a quote by the AK Google's EK/AK CA certified for THIS instance (project, zone,
//     instance id in the certificate), with an event log meeting the measured-boot policy predicted from the runtime
//     disk's UKI (SHA-256 bank).
// GCE launches SNP guests without a customer HOST_DATA: the instance is pinned by the AK certificate and, after
// bootstrap, by the runtime instance id. The launch digest is Google's firmware only (the same for any VM of the
// shape), so the runtime is not promised auto-unseal here: it unseals with the operators' recovery shares (or its
// peers), as the runtime image decides. The user-data carries no secret.
import * as pulumi from "@pulumi/pulumi";
import * as gcp from "@pulumi/gcp";
import { ConfigError } from "../common/errors.js";
import { catalogVcpus } from "../common/catalog.js";
import { cloudRuntimeImage } from "../common/cloud-runtime-image.js";
import { Platform, Tee } from "../common/types.js";
import { RUNTIME_GUEST_PORT } from "../../images/guest/runtime-role.js";
import type { Policy } from "../../runtime/protocol/policy.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import { VHSM_CLOUD_USER_DATA, type CloudVhsmGuest } from "../aws/vhsm-guest.js";
import { endorsedFirmware } from "./os-binding.js";
import { gcpInstanceArgs } from "./settings.js";

export interface GcpVhsmGuestArgs {
  who: string;
  name: string;
  image: string;
  /** The GCE image the program created from the manifest's disk (field `cloudImageId`). */
  cloudImageId: pulumi.Input<string>;
  machineType: string;
  zone: pulumi.Input<string>;
  network?: pulumi.Input<string>;
  subnetwork?: pulumi.Input<string>;
  publicHost?: pulumi.Input<string>;
  bootDiskSizeGb: number;
  /** GB of the runtime's data disk (pd-balanced; the runtime's barrier encrypts inside it). */
  dataDiskGb: number;
  /** db certificates the UKI is signed with and the image's shieldedInstanceInitialState.dbs enrolls (required). */
  dbCertificates?: string[];
  firmwareEndorsement: string;
  gceTcbRootPem: string;
  minFirmwareSvn?: number;
  labels?: Record<string, pulumi.Input<string>>;
}

export function gcpVhsmGuest(parent: pulumi.Resource, a: GcpVhsmGuestArgs): CloudVhsmGuest & { svn: number } {
  const vcpus = catalogVcpus(a.who, "size", Platform.Gcp, a.machineType, Tee.SevSnp);
  const image = cloudRuntimeImage(a.who, "image", a.image, {
    bank: "sha256",
    cloud: "gce",
    ...(a.dbCertificates !== undefined ? { dbCertificates: a.dbCertificates } : {}),
    secureBootOn:
      "the instance runs with Secure Boot on (shieldedInstanceConfig.enableSecureBoot; the image's shieldedInstanceInitialState.dbs must hold the certificate)",
  });
  // Verified at preview against the program's GCE-cc-tcb-root: the clients pin only the digest it endorses.
  const fw = endorsedFirmware(a.who, a.firmwareEndorsement, "snp", vcpus, {
    tcbRootPem: a.gceTcbRootPem,
    ...(a.minFirmwareSvn !== undefined ? { minSvn: a.minFirmwareSvn } : {}),
  });
  const base = gcpInstanceArgs({
    tee: Tee.SevSnp,
    machineType: a.machineType,
    zone: a.zone,
    image: a.cloudImageId,
    userData: VHSM_CLOUD_USER_DATA,
    bootDiskSizeGb: a.bootDiskSizeGb,
    network: a.network,
    subnetwork: a.subnetwork,
    labels: { "buckypaper-vhsm": a.name, ...a.labels },
  });
  const instance = new gcp.compute.Instance(
    `${a.name}-vm`,
    {
      ...base,
      // An ephemeral external address unless the program names the one the deployer reaches (publicHost).
      networkInterfaces:
        a.publicHost === undefined
          ? [
              {
                network: a.subnetwork ? undefined : (a.network ?? "default"),
                subnetwork: a.subnetwork,
                accessConfigs: [{}],
              },
            ]
          : base.networkInterfaces,
    },
    { parent },
  );
  // The runtime's storage: a blank second disk the runtime image formats with the label bkdata on first boot.
  const disk = new gcp.compute.Disk(
    `${a.name}-data`,
    { zone: a.zone, size: a.dataDiskGb, type: "pd-balanced", labels: { "buckypaper-vhsm": a.name } },
    { parent },
  );
  const attached = new gcp.compute.AttachedDisk(
    `${a.name}-data`,
    { instance: instance.name, zone: a.zone, disk: disk.id, deviceName: "bk-data" },
    { parent },
  );
  const host =
    a.publicHost !== undefined
      ? pulumi.output(a.publicHost)
      : instance.networkInterfaces.apply((n) => n?.[0]?.accessConfigs?.[0]?.natIp ?? "");
  const url = host.apply((h) => {
    if (!h)
      throw new ConfigError(
        a.who,
        "publicHost",
        "is not set and the instance got no external address: give the address the deployer reaches the runtime at",
      );
    return `https://${h.includes(":") ? `[${h}]` : h}:${RUNTIME_GUEST_PORT}`;
  });
  const attestation = pulumi
    .all([instance.project, instance.zone, instance.instanceId])
    .apply(([project, zone, id]): RuntimeAttestation => {
      const policy: Policy = {
        // GCE launches SNP guests with policy 0x70000 (SMT and migration agent allowed, debug off).
        snp: { allowDebug: false, allowMigrationAgent: true },
        vtpm: {
          measuredBoot: image.measuredBoot,
          gceAkCertificate: { projectIds: [project], zones: [zone], instanceIds: [id] },
        },
      };
      return {
        snpMeasurements: fw.measurements,
        // No customer HOST_DATA on GCE: the instance is named by Google's AK certificate and the runtime instance id.
        allowAnyInstance: true,
        policy: JSON.stringify(policy),
        kds: "online",
      };
    });
  const launch = instance.instanceId.apply((id) => `gcp:${id}:${image.ukiSha256}:${fw.measurements.join(",")}`);
  return {
    expectedMeasurements: fw.measurements,
    image,
    url,
    attestation,
    launch,
    vm: attached,
    vcpus,
    svn: fw.svn,
    where: pulumi
      .all([instance.name, instance.zone])
      .apply(
        ([n, z]) =>
          `GCE instance ${n} in ${z} (gcloud compute instances get-serial-port-output ${n}: the guest's console)`,
      ),
  };
}
