// An Azure confidential VM (SEV-SNP on DCasv5/ECasv5, TDX on DCesv5/ECesv5). Microsoft's paravisor and
// firmware are measured, not the customer's boot chain, so the launch digest is not predictable: the
// workload is registered with the facts that are verifiable instead — the HCL report bound to the
// vTPM, secure boot on, debug off, optionally Microsoft's ID-key digests, and the OS through the vTPM:
// boot events predicted from the kit's Azure disk (bootChain) or given (measuredBoot), or PCR values (os-binding.ts).
import type { Policy } from "../../runtime/protocol/policy.js";
import * as pulumi from "@pulumi/pulumi";
import * as network from "@pulumi/azure-native/network/index.js";
import * as compute from "@pulumi/azure-native/compute/index.js";
import { ConfigError } from "../common/errors.js";
import { catalogEntry, catalogVcpus } from "../common/catalog.js";
import type { CatalogEntry } from "../../images/index.js";
import { registerGuest } from "../common/guest.js";
import { requireSecretMap } from "../common/secrets.js";
import { Platform, Tee, type DataVolumeArgs, type VhsmConnectionArgs } from "../common/types.js";
import { azureVmArgs, type AzureImageReference } from "./settings.js";
import { ATTESTATION_CHAIN, secureBootSummary, userDataSummary, type MeasuredBootArgs } from "../common/os-binding.js";
import type { BootChainArgs } from "../common/boot-chain.js";
import { bootChainFromKitImage, type KitImageRef } from "../common/kit-image.js";
import { azureOsBinding, bootEventsSummary } from "./os-binding.js";

export interface AzureConfidentialVmArgs {
  /** Refuse classical-only attestations: the workload's secrets are released only sealed with hybrid
   *  ML-KEM-768 + P-384 (Nitride require_pq_hybrid, docs/post-quantum.md). Default false. */
  requirePqHybrid?: boolean;
  vhsm: VhsmConnectionArgs;
  resourceGroupName: pulumi.Input<string>;
  location?: pulumi.Input<string>;
  /** Subnet for the VM's NIC. */
  subnetId: pulumi.Input<string>;
  /** Default SevSnp. */
  tee?: Tee;
  /** Default Standard_DC2as_v5 (SNP) / Standard_DC2es_v5 (TDX). */
  vmSize?: string;
  /** Default Canonical's Ubuntu 24.04 CVM image. */
  image?: AzureImageReference;
  /**
   * The kit image (AzureKitImage): the VM boots its gallery image version, and its manifest and enrolled db
   * certificates are the bootChain (a bootChain also given must name the same manifest and db certificates).
   * Exclusive with image.
   */
  kitImage?: KitImageRef;
  adminUsername?: string;
  sshPublicKey?: pulumi.Input<string>;
  osDiskSizeGb?: number;
  /** SNP: accepted ID_KEY_DIGESTs of Microsoft's paravisor (48-byte hex). */
  idKeyDigests?: string[];
  /**
   * The image the VM boots, from which the OS's boot events are predicted and registered (azure.measuredBoot): the kit's
   * manifest built with `buckypaper image build --cloud azure --sign-key KEY --sign-cert CERT` (the UKI read from its
   * disk: Authenticode digest in PCR 4, its command line with the verity root hash, PCR 11) with `dbCertificates: [CERT]`
   * (required with the kit image: the db certificate that verified the boot, PCR 7 authority event), or a UKI/kernel.
   * The verifier replays the guest's event log to the HCL-bound AK's quote and checks these events. Sets agentInImage
   * by default (kit manifest).
   */
  bootChain?: BootChainArgs;
  /** The boot events to require, given directly (bank sha256; exclusive with bootChain). */
  measuredBoot?: MeasuredBootArgs;
  /**
   * Accepted vTPM PCR values, PCR index → SHA-256 hex list: the alternative for an image the kit cannot predict (no
   * event is read, so the db authority is not appraised). PCR 4 (the boot applications the firmware ran) is what
   * binds the OS; PCR 11 of a UKI (or 9) adds to it but binds nothing alone, since software extends it. With
   * bootChain/measuredBoot both apply.
   */
  pcrs?: Record<string, string[]>;
  /** LOUD opt-out: register the workload although neither boot events nor a PCR 4 value bind the OS. */
  allowUnboundOs?: boolean;
  /**
   * The VM boots a kit image built with `buckypaper image build --cloud azure` (set `image` to it): its enclaivelet
   * reads the customData cloud-init executes (cloud-init-local's copy of the OVF) before cloud-init runs any of it,
   * and binds its SHA-256 into the vTPM quote's extraData; the hash of the rendered user-data is registered, so a
   * changed customData is refused (`nitride.user-data`). Required unless allowUnboundUserData.
   */
  agentInImage?: boolean;
  /** LOUD opt-out: register the workload although its user-data is not bound (cloud-init runs any customData). */
  allowUnboundUserData?: boolean;
  /**
   * With agentInImage (the kit image) registered by `pcrs`, without bootChain: the db certificate(s) (PEM or DER files)
   * the kit UKI is signed with (`buckypaper image build --cloud azure --sign-key KEY --sign-cert CERT`). The VM runs with
   * Secure Boot on, so its firmware refuses an unsigned UKI (or one signed by a key not in db): enroll the certificate
   * in the Compute Gallery image version `image` names (`securityProfile.uefiSettings.additionalSignatures.db`,
   * docs/images.md). Enforced by the firmware only (PCR values, no authority event); with bootChain give it as
   * bootChain.dbCertificates instead, where it is appraised by event.
   */
  dbCertificates?: string[];
  secrets?: Record<string, pulumi.Input<string>>;
  dataVolume?: DataVolumeArgs;
  tags?: Record<string, pulumi.Input<string>>;
}

/** Marketplace reference of the catalog's confidential image for the TEE. */
function azureImage(entry: CatalogEntry): AzureImageReference {
  if (entry.image.kind !== "azure-marketplace")
    throw new Error(`catalog image ${entry.name} is not an Azure marketplace image`);
  const { publisher, offer, sku, version } = entry.image;
  return { publisher, offer, sku, version };
}

export class AzureConfidentialVm extends pulumi.ComponentResource {
  public readonly vmId: pulumi.Output<string>;
  public readonly privateIp: pulumi.Output<string | undefined>;
  public readonly workloadId: pulumi.Output<string>;
  /** What this VM's evidence is rooted in, and what it does not bind (docs/attestation-chain.md). */
  public readonly attestationChain: pulumi.Output<string>;

  constructor(name: string, args: AzureConfidentialVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:AzureConfidentialVm", name, args, opts);
    const who = `AzureConfidentialVm ${name}`;
    if (args.kitImage && args.image !== undefined)
      throw new ConfigError(who, "image", "and kitImage are exclusive (kitImage boots its own image)");
    // One source of truth: with a kit image, the boot chain predicted is the image's (same db certificates).
    if (args.kitImage)
      args = { ...args, bootChain: bootChainFromKitImage(who, args.kitImage, "azure", args.bootChain) };
    const tee = args.tee ?? Tee.SevSnp;
    const vmSize = args.vmSize ?? (tee === Tee.SevSnp ? "Standard_DC2as_v5" : "Standard_DC2es_v5");
    catalogVcpus(who, "vmSize", Platform.Azure, vmSize, tee);
    (args.idKeyDigests ?? []).forEach((d, i) => {
      if (!/^[0-9a-fA-F]{96}$/.test(d)) throw new ConfigError(who, `idKeyDigests[${i}]`, "must be 48 bytes of hex");
    });
    if (tee === Tee.Tdx && args.idKeyDigests?.length)
      throw new ConfigError(who, "idKeyDigests", "apply to SEV-SNP only");
    const secrets = requireSecretMap(who, "secrets", args.secrets);
    const os = azureOsBinding(who, args.kitImage ? { ...args, image: args.kitImage.imageId } : args);
    const measured = os.measured;
    const policy: Policy = {
      azure: {
        requireSecureBoot: true,
        forbidConsole: false,
        ...(args.pcrs ? { pcrs: args.pcrs } : {}),
        ...(os.boot ? { measuredBoot: os.boot } : {}),
      },
      ...(tee === Tee.SevSnp
        ? {
            snp: {
              allowDebug: false,
              allowMigrationAgent: false,
              vmpl: 0,
              ...(args.idKeyDigests?.length ? { trustedIdKeyDigests: args.idKeyDigests } : {}),
            },
          }
        : { tdx: { allowDebug: false } }),
    };
    const guest = registerGuest(this, name, {
      platform: Platform.Azure,
      tee,
      workloadId: `${pulumi.getStack()}-${name}`,
      evidencePlatform: tee === Tee.SevSnp ? "azure-snp" : "azure-tdx",
      reference: {},
      policy,
      vhsm: args.vhsm,
      requirePqHybrid: args.requirePqHybrid,
      secrets,
      dataVolume: args.dataVolume,
      dataVolumeDevice: "/dev/disk/azure/scsi1/lun0",
      hostname: name,
      // The user-data then carries only the agent's config, and its SHA-256 is registered with the workload.
      agentInImage: measured,
    });

    const nic = new network.NetworkInterface(
      `${name}-nic`,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        ipConfigurations: [{ name: "primary", subnet: { id: args.subnetId }, privateIPAllocationMethod: "Dynamic" }],
      },
      { parent: this },
    );
    const tags = { "buckypaper-workload": guest.workloadId, ...args.tags };
    const disk = args.dataVolume
      ? new compute.Disk(
          `${name}-data`,
          {
            resourceGroupName: args.resourceGroupName,
            location: args.location,
            creationData: { createOption: "Empty" },
            diskSizeGB: args.dataVolume.sizeGb ?? 10,
            sku: { name: "Premium_LRS" },
            tags,
          },
          { parent: this },
        )
      : undefined;
    const vm = new compute.VirtualMachine(
      name,
      azureVmArgs({
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        vmSize,
        image: args.kitImage
          ? { id: args.kitImage.imageId }
          : (args.image ?? azureImage(catalogEntry(who, Platform.Azure, tee))),
        computerName: name,
        adminUsername: args.adminUsername ?? "azureuser",
        sshPublicKey: args.sshPublicKey,
        // cloud-init base64-decodes customData to exactly these bytes, whose SHA-256 is registered (agentInImage).
        customDataBase64: guest.userData.apply((u) => Buffer.from(u, "utf8").toString("base64")),
        networkInterfaceId: nic.id,
        osDiskSizeGb: args.osDiskSizeGb ?? 30,
        dataDiskId: disk?.id,
        tags,
      }),
      { parent: this, dependsOn: [guest.workload] },
    );
    this.vmId = vm.vmId;
    this.privateIp = nic.ipConfigurations.apply((c) => c?.[0]?.privateIPAddress);
    this.workloadId = guest.workloadId;
    const dbCerts = os.firmwareDbCertificates;
    this.attestationChain = pulumi.output(
      ATTESTATION_CHAIN[Platform.Azure] +
        (os.bound ? "" : " THIS WORKLOAD: the OS is NOT bound (allowUnboundOs).") +
        (os.boot
          ? bootEventsSummary(os.boot)
          : os.bound
            ? " OS: bound by PCR values only (azure.pcrs; no boot event is read)."
            : "") +
        secureBootSummary(os.boot) +
        (dbCerts.length
          ? ` Secure Boot: the kit UKI must verify against db certificate ${dbCerts.join(", ")} (enforced by the firmware with the gallery image's enrolled keys; PCR 7 is bound only as far as the registered PCR values say — set bootChain to appraise the authority by event).`
          : "") +
        userDataSummary(measured, "Azure"),
    );
    this.registerOutputs({
      vmId: this.vmId,
      privateIp: this.privateIp,
      workloadId: this.workloadId,
      attestationChain: this.attestationChain,
    });
  }
}
