// A Compute Engine confidential VM (SEV-SNP on N2D, TDX on C3). GCE firmware is Google's: its launch
// digest is published per vCPU count in Google-signed launch endorsements (`firmwareEndorsement`, preferred:
// the runtime re-verifies Google's signature at every appraisal), or computable from the firmware's facts with
// the `gce` VMSA layout, or pasted. The OS is bound through the vTPM with Google's AK certificate (os-binding.ts).
import * as pulumi from "@pulumi/pulumi";
import * as gcp from "@pulumi/gcp";
import { ConfigError } from "../common/errors.js";
import { registerGuest, type GuestReference } from "../common/guest.js";
import { requireSecretMap } from "../common/secrets.js";
import { Platform, Tee, type DataVolumeArgs, type VhsmConnectionArgs } from "../common/types.js";
import { parseFirmwareDescription, snpLaunchDigestTable, type CatalogEntry } from "../../images/index.js";
import { catalogEntry, catalogVcpus } from "../common/catalog.js";
import { gcpInstanceArgs } from "./settings.js";
import { ATTESTATION_CHAIN, measuresUserData, secureBootSummary, userDataSummary } from "../common/os-binding.js";
import { endorsedFirmware, gcpOsBinding, type GcpOsBindingArgs } from "./os-binding.js";
import type { Policy } from "../../runtime/protocol/policy.js";
import { bootChainFromKitImage, type KitImageRef } from "../common/kit-image.js";

export interface GcpConfidentialVmArgs extends GcpOsBindingArgs {
  /** Refuse classical-only attestations: the workload's secrets are released only sealed with hybrid
   *  ML-KEM-768 + P-384 (Nitride require_pq_hybrid, docs/post-quantum.md). Default false. */
  requirePqHybrid?: boolean;
  vhsm: VhsmConnectionArgs;
  /** Default SevSnp. */
  tee?: Tee;
  /** n2d-* for SEV-SNP (default n2d-standard-2), c3-* for TDX (default c3-standard-4). */
  machineType?: string;
  zone: pulumi.Input<string>;
  /** Boot image; default the catalog's confidential Ubuntu 24.04 family. */
  image?: pulumi.Input<string>;
  /**
   * The kit's own image (a `GcpKitImage`): it is booted and its manifest, disk and enrolled db certificates are the
   * bootChain the workload is registered with (exclusive with `image`; a bootChain given beside it must name the
   * same manifest and db certificates).
   */
  kitImage?: KitImageRef;
  network?: pulumi.Input<string>;
  subnetwork?: pulumi.Input<string>;
  bootDiskSizeGb?: number;
  /**
   * SEV-SNP: the GCE firmware as a sev-snp-measure-go description (JSON text: OVMFHash, ResetEIP,
   * MetadataItems); the digest is computed with the `gce` layout for this machine's vCPU count.
   */
  firmwareDescription?: string;
  /**
   * Google's launch endorsement of the VM's firmware (base64 of the VMLaunchEndorsement .binarypb from
   * storage.googleapis.com/gce_tcb_integrity/ovmf_x64_csm/{sevsnp|tdx}/<measurement hex>.binarypb): the
   * measurement for this machine type's vCPU count is taken from it, and the runtime verifies Google's
   * signature (its nitride config `gce_tcb_roots`) at every appraisal.
   */
  firmwareEndorsement?: string;
  /** GCE-cc-tcb-root (PEM): when given, the endorsement's signature is also verified at preview. */
  gceTcbRootPem?: string;
  /** Minimum Google SVN of the endorsed firmware. */
  minFirmwareSvn?: number;
  /** Or the launch digests (SNP) / MRTDs (TDX), pasted (not verified against Google's signature). */
  expectedMeasurements?: string[];
  secrets?: Record<string, pulumi.Input<string>>;
  dataVolume?: DataVolumeArgs;
  labels?: Record<string, pulumi.Input<string>>;
}

/** "project/family" of a catalog image; the family must carry SEV_SNP_CAPABLE / TDX_CAPABLE. */
function gcpImage(entry: CatalogEntry): string {
  if (entry.image.kind !== "gcp-image-family") throw new Error(`catalog image ${entry.name} is not a GCE image family`);
  return `${entry.image.project}/${entry.image.family}`;
}

export class GcpConfidentialVm extends pulumi.ComponentResource {
  public readonly instanceId: pulumi.Output<string>;
  public readonly workloadId: pulumi.Output<string>;
  public readonly expectedMeasurements: pulumi.Output<string[]>;
  /** What this VM's evidence is rooted in, and what it does not bind (docs/attestation-chain.md). */
  public readonly attestationChain: pulumi.Output<string>;

  constructor(name: string, args: GcpConfidentialVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:GcpConfidentialVm", name, args, opts);
    const who = `GcpConfidentialVm ${name}`;
    if (args.kitImage && args.image !== undefined)
      throw new ConfigError(who, "image", "and kitImage are exclusive (kitImage boots its own image)");
    // One source of truth: with a kit image, the boot chain predicted is the image's (same db certificates).
    if (args.kitImage) args = { ...args, bootChain: bootChainFromKitImage(who, args.kitImage, "gce", args.bootChain) };
    const tee = args.tee ?? Tee.SevSnp;
    if (args.kitImage && tee !== Tee.SevSnp)
      throw new ConfigError(who, "tee", `is '${tee}', but kitImage (GcpKitImage) is SEV_SNP_CAPABLE only`, [
        Tee.SevSnp,
      ]);
    const machineType = args.machineType ?? (tee === Tee.SevSnp ? "n2d-standard-2" : "c3-standard-4");
    const vcpus = catalogVcpus(who, "machineType", Platform.Gcp, machineType, tee);
    const secrets = requireSecretMap(who, "secrets", args.secrets);

    let measurements: string[];
    let gce: ReturnType<typeof endorsedFirmware> | undefined;
    if (args.firmwareEndorsement !== undefined) {
      if (args.expectedMeasurements?.length || args.firmwareDescription !== undefined)
        throw new ConfigError(
          who,
          "firmwareEndorsement",
          "excludes expectedMeasurements and firmwareDescription: the endorsement names the measurement",
        );
      gce = endorsedFirmware(who, args.firmwareEndorsement, tee === Tee.SevSnp ? "snp" : "tdx", vcpus, {
        minSvn: args.minFirmwareSvn,
        tcbRootPem: args.gceTcbRootPem,
      });
      measurements = gce.measurements;
    } else if (args.expectedMeasurements?.length) {
      measurements = args.expectedMeasurements.map((m, i) => {
        const h = m.toLowerCase().replace(/^0x/, "");
        if (!/^[0-9a-f]{96}$/.test(h))
          throw new ConfigError(who, `expectedMeasurements[${i}]`, "must be 48 bytes of hex");
        return h;
      });
    } else if (args.firmwareDescription !== undefined && tee === Tee.SevSnp) {
      let firmware;
      try {
        firmware = parseFirmwareDescription(args.firmwareDescription, "firmwareDescription");
      } catch (e) {
        throw new ConfigError(who, "firmwareDescription", (e as Error).message);
      }
      measurements = [snpLaunchDigestTable({ firmware, vmm: "gce" }, [vcpus]).get(vcpus)!.toString("hex")];
    } else {
      // The catalog's `endorsed` firmware entry says where Google publishes the endorsement.
      const fw = catalogEntry(who, Platform.Gcp, tee).firmware;
      const where = fw.kind === "endorsed" ? ` (${fw.endorsementUrl})` : "";
      throw new ConfigError(
        who,
        tee === Tee.SevSnp ? "firmwareDescription" : "expectedMeasurements",
        tee === Tee.SevSnp
          ? `or expectedMeasurements is required, or better firmwareEndorsement: GCE firmware is known only by Google's launch endorsements${where} or their firmware facts`
          : `is required for TDX on GCE, or better firmwareEndorsement: Google's launch endorsement for the firmware${where}`,
      );
    }
    // Before the boot-chain prediction: a kit image built for another user-data source is the first thing to say.
    const agentInImage = measuresUserData(who, args, "gce");
    // The launch digest is the same for every GCE VM of this shape: the OS is bound only through the vTPM.
    const vtpm = gcpOsBinding(who, args);
    const reference: GuestReference =
      tee === Tee.SevSnp ? { snpMeasurements: measurements } : { tdx: measurements.map((mrtd) => ({ mrtd })) };
    // With Google's AK certificate the workload is registered once the instance exists, pinned to its project,
    // zone and (unless pinInstance: false) instance id, as the certificate's instance-identity extension names them.
    const pin = vtpm?.gceAkCertificate !== undefined && args.pinInstance !== false;
    const guest = registerGuest(
      this,
      name,
      {
        platform: Platform.Gcp,
        tee,
        workloadId: `${pulumi.getStack()}-${name}`,
        evidencePlatform: tee === Tee.SevSnp ? "snp" : "tdx",
        reference,
        vtpm: vtpm !== undefined,
        // Google's AK certificate authenticates the AK: the agent must quote with the key it certifies.
        vtpmGoogleAk: vtpm?.gceAkCertificate !== undefined,
        agentInImage,
        vhsm: args.vhsm,
        requirePqHybrid: args.requirePqHybrid,
        secrets,
        dataVolume: args.dataVolume,
        dataVolumeDevice: "/dev/disk/by-id/google-bk-data",
        hostname: name,
      },
      "after-vm",
    );

    const instance = new gcp.compute.Instance(
      name,
      gcpInstanceArgs({
        tee,
        machineType,
        zone: args.zone,
        image: args.kitImage?.imageId ?? args.image ?? gcpImage(catalogEntry(who, Platform.Gcp, tee)),
        userData: guest.userData,
        bootDiskSizeGb: args.bootDiskSizeGb ?? 20,
        network: args.network,
        subnetwork: args.subnetwork,
        labels: { "buckypaper-workload": guest.workloadId, ...args.labels },
      }),
      { parent: this },
    );
    // GCE launches SNP guests with policy 0x70000 (SMT and migration agent allowed, debug off).
    const basePolicy: Policy =
      tee === Tee.SevSnp
        ? {
            snp: { allowDebug: false, allowMigrationAgent: true },
            ...(vtpm ? { vtpm } : {}),
            ...(gce ? { gce: gce.policy } : {}),
          }
        : { tdx: { allowDebug: false }, ...(vtpm ? { vtpm } : {}), ...(gce ? { gce: gce.policy } : {}) };
    const explicitProjects = args.akCertificateProjects?.length ? args.akCertificateProjects : undefined;
    const workload = guest.register({
      policy: vtpm?.gceAkCertificate
        ? pulumi.all([instance.project, instance.zone, instance.instanceId]).apply(([project, zone, id]): Policy => ({
            ...basePolicy,
            vtpm: {
              ...vtpm,
              gceAkCertificate: {
                projectIds: explicitProjects ?? [project],
                zones: [zone],
                ...(pin ? { instanceIds: [id] } : {}),
              },
            },
          }))
        : basePolicy,
      dependsOn: [instance],
    });
    if (args.dataVolume) {
      const disk = new gcp.compute.Disk(
        `${name}-data`,
        { zone: args.zone, size: args.dataVolume.sizeGb ?? 10, type: "pd-balanced" },
        { parent: this },
      );
      new gcp.compute.AttachedDisk(
        `${name}-data`,
        { instance: instance.name, zone: args.zone, disk: disk.id, deviceName: "bk-data" },
        { parent: this },
      );
    }
    this.instanceId = instance.instanceId;
    // Resolves once the workload is registered (after the instance).
    this.workloadId = workload.workloadId;
    this.expectedMeasurements = pulumi.output(measurements);
    this.attestationChain = pulumi.output(
      ATTESTATION_CHAIN[Platform.Gcp] +
        (gce
          ? ` THIS WORKLOAD: firmware endorsed by Google (SVN ${gce.svn}), re-verified by the runtime.`
          : " THIS WORKLOAD: firmware digest given, not verified against Google's endorsement.") +
        (vtpm?.gceAkCertificate
          ? " Boot events authenticated by Google's AK certificate." +
            ` Its instance identity must be: production, ${explicitProjects ? `project ${explicitProjects.join(" or ")}` : "this instance's project"}, this instance's zone, ${pin ? "this instance (pinned)" : "any instance (NOT pinned: pinInstance false)"}.`
          : vtpm?.akPins
            ? " Boot events authenticated by akPins."
            : " The OS is NOT bound (allowUnboundOs).") +
        secureBootSummary(vtpm?.measuredBoot) +
        userDataSummary(agentInImage, "GCP"),
    );
    this.registerOutputs({
      attestationChain: this.attestationChain,
      instanceId: this.instanceId,
      workloadId: this.workloadId,
      expectedMeasurements: this.expectedMeasurements,
    });
  }
}
