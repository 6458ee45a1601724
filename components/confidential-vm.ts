// The cloud-neutral facade: one set of flat props for every platform, validated at preview time, then
// delegated to the platform component (which does the measuring, registering and VM creation).
import * as pulumi from "@pulumi/pulumi";
import { AwsConfidentialVm } from "./aws/confidential-vm.js";
import { AzureConfidentialVm } from "./azure/confidential-vm.js";
import { GcpConfidentialVm } from "./gcp/confidential-vm.js";
import { ProxmoxConfidentialVm } from "./proxmox/confidential-vm.js";
import { QemuConfidentialVm } from "./qemu/confidential-vm.js";
import { ConfigError } from "./common/errors.js";
import type { BootInputsArgs } from "./common/boot-measure.js";
import type { MeasuredBootArgs } from "./common/os-binding.js";
import type { BootChainArgs } from "./common/boot-chain.js";
import { Platform, Tee, type DataVolumeArgs, type SshHostArgs, type VhsmConnectionArgs } from "./common/types.js";

export interface ConfidentialVmArgs {
  platform: Platform;
  /** Default SevSnp. */
  tee?: Tee;
  vhsm: VhsmConnectionArgs;
  /** Instance type (AWS), machine type (GCP) or VM size (Azure). */
  size?: string;
  /** vCPUs (Proxmox, QEMU; clouds derive it from size). */
  vcpus?: number;
  memoryMb?: number;
  /** AWS region. */
  region?: string;
  /** GCP zone. */
  zone?: string;
  /** Azure resource group and subnet. */
  resourceGroupName?: pulumi.Input<string>;
  subnetId?: pulumi.Input<string>;
  /** Proxmox node name and VM id. */
  node?: string;
  vmid?: number;
  /** Proxmox node / KVM host. */
  ssh?: SshHostArgs;
  /** Boot inputs (Proxmox, QEMU). */
  boot?: BootInputsArgs;
  /** Image id/name in the platform's terms (AMI, GCE image, Proxmox import volume). */
  image?: string;
  /** GCP SEV-SNP: firmware description JSON (sev-snp-measure-go format). */
  firmwareDescription?: string;
  /** GCP: digests / MRTDs from Google's launch endorsement. */
  expectedMeasurements?: string[];
  secrets?: Record<string, pulumi.Input<string>>;
  dataVolume?: DataVolumeArgs;
  /** AWS/GCP/Azure: expected boot-chain events (vTPM measured boot); AWS/GCP: authenticated AK pins (common/os-binding.ts). */
  measuredBoot?: MeasuredBootArgs;
  akPins?: string[];
  /** AWS/GCP: the image the VM boots (kit manifest, UKI or kernel), measuredBoot predicted from it (common/boot-chain.ts). */
  bootChain?: BootChainArgs;
  /**
   * AWS/GCP/QEMU: the image runs the enclaivelet before cloud-init, so the user-data is measured (common/os-binding.ts).
   * AWS/GCP default: on with a bootChain.manifest built for the cloud (`image build --cloud ec2|gce`). Azure: use
   * AzureConfidentialVm (agentInImage with its `image`); the facade's Azure VMs need allowUnboundUserData.
   */
  agentInImage?: boolean;
  /** AWS/GCP: pin the workload to the instance the component creates (default true with the NitroTPM document / Google AK certificate). */
  pinInstance?: boolean;
  /** AWS: register the instance's NitroTPM EK (GetInstanceTpmEkPub) for EK credential activation. Default true with a vTPM OS binding. */
  instanceEkPin?: boolean;
  /** GCP: accept only Google AK certificates of VMs in these projects (default: the instance's project). */
  akCertificateProjects?: string[];
  /** Azure: accepted vTPM PCR values (the alternative to measuredBoot for an image the kit cannot predict). */
  pcrs?: Record<string, string[]>;
  /** AWS/GCP/Azure, LOUD opt-out: register a workload whose evidence does not bind the OS. */
  allowUnboundOs?: boolean;
  /** Azure, LOUD opt-out: register a workload whose user-data is not bound (required here: see agentInImage). */
  allowUnboundUserData?: boolean;
  /** Refuse classical-only attestations: secrets are released only sealed with hybrid ML-KEM-768 +
   *  P-384 (Nitride require_pq_hybrid, docs/post-quantum.md). Default false. */
  requirePqHybrid?: boolean;
}

const TEES: Record<Platform, Tee[]> = {
  [Platform.Aws]: [Tee.SevSnp],
  [Platform.Azure]: [Tee.SevSnp, Tee.Tdx],
  [Platform.Gcp]: [Tee.SevSnp, Tee.Tdx],
  [Platform.Proxmox]: [Tee.SevSnp, Tee.Tdx],
  [Platform.Qemu]: [Tee.SevSnp, Tee.Tdx],
};

/** A prop that only some platforms take: set on another one, it would silently do nothing — refused instead. */
function onlyOn(who: string, field: string, value: unknown, platform: Platform, platforms: Platform[]): void {
  if (value !== undefined && !platforms.includes(platform))
    throw new ConfigError(
      who,
      field,
      `applies only to platform ${platforms.join(" or ")} (not '${platform}')`,
      platforms,
    );
}

function need<T>(who: string, field: string, v: T | undefined, platform: Platform): T {
  if (v === undefined) throw new ConfigError(who, field, `is required on platform '${platform}'`);
  return v;
}

export class ConfidentialVm extends pulumi.ComponentResource {
  public readonly workloadId: pulumi.Output<string>;
  /** Expected launch measurements (SNP digests / TDX MRTDs); empty on Azure, where none is predictable. */
  public readonly expectedMeasurements: pulumi.Output<string[]>;

  constructor(name: string, args: ConfidentialVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:ConfidentialVm", name, args, opts);
    const who = `ConfidentialVm ${name}`;
    if (!Object.values(Platform).includes(args.platform))
      throw new ConfigError(who, "platform", `is '${args.platform}'`, Object.values(Platform));
    const tee = args.tee ?? Tee.SevSnp;
    if (!TEES[args.platform].includes(tee)) {
      throw new ConfigError(
        who,
        "tee",
        `is '${tee}', which platform '${args.platform}' does not offer`,
        TEES[args.platform],
      );
    }
    if (args.requirePqHybrid !== undefined && typeof args.requirePqHybrid !== "boolean")
      throw new ConfigError(who, "requirePqHybrid", `is '${String(args.requirePqHybrid)}'`, ["true", "false"]);
    const o = { parent: this };
    const p = args.platform;
    const clouds = [Platform.Aws, Platform.Gcp];
    onlyOn(who, "bootChain", args.bootChain, p, clouds);
    onlyOn(who, "measuredBoot", args.measuredBoot, p, [...clouds, Platform.Azure]);
    onlyOn(who, "akPins", args.akPins, p, clouds);
    onlyOn(who, "agentInImage", args.agentInImage, p, [...clouds, Platform.Qemu]);
    onlyOn(who, "allowUnboundUserData", args.allowUnboundUserData, p, [Platform.Azure]);
    onlyOn(who, "pinInstance", args.pinInstance, p, clouds);
    onlyOn(who, "instanceEkPin", args.instanceEkPin, p, [Platform.Aws]);
    onlyOn(who, "akCertificateProjects", args.akCertificateProjects, p, [Platform.Gcp]);
    let vm: { workloadId: pulumi.Output<string>; expectedMeasurements?: pulumi.Output<string[]> };
    switch (p) {
      case Platform.Aws:
        vm = new AwsConfidentialVm(
          name,
          {
            vhsm: args.vhsm,
            requirePqHybrid: args.requirePqHybrid,
            instanceType: args.size,
            region: args.region,
            ami: args.image,
            secrets: args.secrets,
            dataVolume: args.dataVolume,
            measuredBoot: args.measuredBoot,
            akPins: args.akPins,
            bootChain: args.bootChain,
            agentInImage: args.agentInImage,
            pinInstance: args.pinInstance,
            instanceEkPin: args.instanceEkPin,
            allowUnboundOs: args.allowUnboundOs,
          },
          o,
        );
        break;
      case Platform.Gcp:
        vm = new GcpConfidentialVm(
          name,
          {
            vhsm: args.vhsm,
            requirePqHybrid: args.requirePqHybrid,
            tee,
            machineType: args.size,
            zone: need(who, "zone", args.zone, p),
            image: args.image,
            firmwareDescription: args.firmwareDescription,
            expectedMeasurements: args.expectedMeasurements,
            secrets: args.secrets,
            dataVolume: args.dataVolume,
            measuredBoot: args.measuredBoot,
            akPins: args.akPins,
            bootChain: args.bootChain,
            agentInImage: args.agentInImage,
            pinInstance: args.pinInstance,
            akCertificateProjects: args.akCertificateProjects,
            allowUnboundOs: args.allowUnboundOs,
          },
          o,
        );
        break;
      case Platform.Azure:
        vm = new AzureConfidentialVm(
          name,
          {
            vhsm: args.vhsm,
            requirePqHybrid: args.requirePqHybrid,
            tee,
            vmSize: args.size,
            resourceGroupName: need(who, "resourceGroupName", args.resourceGroupName, p),
            subnetId: need(who, "subnetId", args.subnetId, p),
            secrets: args.secrets,
            dataVolume: args.dataVolume,
            pcrs: args.pcrs,
            measuredBoot: args.measuredBoot,
            allowUnboundOs: args.allowUnboundOs,
            // The facade cannot name an Azure image (its `image` is an AMI/GCE image name), so it cannot boot a kit
            // image there: agentInImage is AzureConfidentialVm's, and the facade's Azure VMs need this opt-out.
            allowUnboundUserData: args.allowUnboundUserData,
          },
          o,
        );
        break;
      case Platform.Proxmox:
        vm = new ProxmoxConfidentialVm(
          name,
          {
            vhsm: args.vhsm,
            requirePqHybrid: args.requirePqHybrid,
            tee,
            ssh: need(who, "ssh", args.ssh, p),
            node: need(who, "node", args.node, p),
            vmid: need(who, "vmid", args.vmid, p),
            cores: args.vcpus,
            memoryMb: args.memoryMb,
            boot: need(who, "boot", args.boot, p),
            importFrom: args.image,
            secrets: args.secrets,
            dataVolume: args.dataVolume,
          },
          o,
        );
        break;
      case Platform.Qemu:
        vm = new QemuConfidentialVm(
          name,
          {
            vhsm: args.vhsm,
            requirePqHybrid: args.requirePqHybrid,
            tee,
            ssh: need(who, "ssh", args.ssh, p),
            vcpus: args.vcpus,
            memoryMb: args.memoryMb,
            boot: need(who, "boot", args.boot, p),
            diskPath: args.image,
            agentInImage: args.agentInImage,
            secrets: args.secrets,
            dataVolume: args.dataVolume,
          },
          o,
        );
        break;
    }
    this.workloadId = vm.workloadId;
    this.expectedMeasurements = vm.expectedMeasurements ?? pulumi.output([]);
    this.registerOutputs({ workloadId: this.workloadId, expectedMeasurements: this.expectedMeasurements });
  }
}
