// The `Vhsm` component: deploys the buckypaper runtime (Nitride + Vault-compatible API) and outputs
// what confidential VMs pin (URL, CA fingerprint) plus the deployer credential the deployment registers
// workloads with. Modes: `process` (a server process on this machine, for the `local` stack; `local` is
// its old name), `ssh` (a server process on an on-premises host reached over SSH, with `buckypaper`
// installed there) and `confidential-vm` (the runtime in an attested guest: platform `local` — a real QEMU
// guest with the simulated PSP, components/local/vhsm-guest.ts —, `qemu` — a QEMU/KVM host with SEV-SNP,
// components/qemu/vhsm-guest.ts — and `proxmox` — a Proxmox VE node with SEV-SNP,
// components/proxmox/vhsm-guest.ts —, `aws`, `gcp` and `azure` — the runtime's cloud disk on an SEV-SNP instance
// whose OS is bound through the cloud's vTPM, components/{aws,gcp,azure}/vhsm-guest.ts — are deployable; on Azure
// the runtime attests with the paravisor's HCL report and its AK's quote, since the guest has no /dev/sev-guest).
//
// Trust bootstrap (docs/security.md): at init the root token sets up the deployer credential — a JWT
// auth role bound to an Ed25519 key whose private half stays in a 0600 file under the user's config
// directory — and is revoked; the Shamir recovery shares are output only encrypted to operator keys.
//
// The process is managed by provider/ RuntimeService (a dynamic provider) rather than @pulumi/command:
// the command provider's Go module is not obtainable from the Go proxy here (docs/pulumi.md).
import type { KitImageRef } from "./common/kit-image.js";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { RuntimeService, type DeployerAuthArgs } from "../provider/resources.js";
import type { SimulatedAnchor } from "../provider/local-vm.js";
import { ConfigError, requireOneOf } from "./common/errors.js";
import { renderRuntimeConfig } from "../runtime/server/http/config-render.js";
import { userConfigDir } from "../runtime/client/deployer.js";
import { RUNTIME_GUEST_PORT } from "../images/guest/runtime-role.js";
import type { RuntimeAttestationArgs, RuntimeBootstrapArgs, SshTargetArgs } from "../provider/resources.js";
import { localVhsmGuest } from "./local/vhsm-guest.js";
import { qemuVhsmGuest } from "./qemu/vhsm-guest.js";
import { proxmoxVhsmGuest } from "./proxmox/vhsm-guest.js";
import { hardwareRuntimeImage } from "./common/runtime-image.js";
import { awsVhsmGuest } from "./aws/vhsm-guest.js";
import { gcpVhsmGuest } from "./gcp/vhsm-guest.js";
import { azureVhsmGuest } from "./azure/vhsm-guest.js";
import { Tee } from "./common/types.js";
import { AttestedRuntime } from "../provider/attested-runtime.js";
import { createHash } from "node:crypto";

/** What the deployer established about a runtime in a confidential VM (public; printed by the local stack). */
export interface VhsmAttestationSummary {
  platform: string;
  expectedMeasurement: string;
  /** What the runtime's evidence reported (equals expectedMeasurement, or `pulumi up` failed). */
  measurement: string;
  /** What the simulated PSP measured from the files QEMU was started with (local). */
  launchMeasurement: string;
  /** The HOST_DATA the runtime's VM was launched with and every verifier requires ("" where the platform sets
   *  none: Proxmox, with allowAnyInstance). Local: SHA-256 of its instance identity (a random id in state). */
  snpHostData: string;
  /** What the runtime's report carried when the deployer verified it (equals snpHostData, or `pulumi up` failed). */
  hostData: string;
  /** The runtime's instance id its evidence bound right after the deployer initialised it; every verifier
   *  (provider, `runtime verify --instance-id`, the enclaivelets) requires it, so a twin is refused. */
  runtimeInstanceId: string;
  kernelMeasured: boolean;
  tlsKeySha256: string;
  simulated: boolean;
  verifiedBy: string;
  verifiedAt: string;
  checks: string[];
  pid: number;
  accel: string;
  bootSeconds: number;
  consoleLog: string;
  /** aws / gcp: what binds the runtime's OS (the cloud's vTPM), since the SNP digest names only the firmware. */
  osBinding?: string;
  /** aws / gcp: what unseals a restarted runtime (no auto-unseal there: CLOUD_UNSEAL). */
  unseal?: string;
}

export enum VhsmMode {
  /** A runtime process on the machine that runs `pulumi up`. */
  Process = "process",
  /** The former name of `process` (same behaviour). */
  Local = "local",
  /** A runtime process on a host reached over SSH. */
  Ssh = "ssh",
  /** The runtime in an attested confidential VM (issue #16): platforms `local`, `qemu`, `proxmox`, `aws`, `gcp`, `azure`. */
  ConfidentialVm = "confidential-vm",
}

/** Where the runtime's confidential VM runs: the components' platforms plus the local stack's. */
export enum VhsmPlatform {
  /** A real QEMU guest of the local stack whose simulated PSP is a `SimulatedPlatform`. */
  Local = "local",
  Aws = "aws",
  Azure = "azure",
  Gcp = "gcp",
  Proxmox = "proxmox",
  Qemu = "qemu",
}
/** The local stack's platform (VhsmPlatform.Local). */
export const VHSM_LOCAL_PLATFORM = VhsmPlatform.Local;
/** Where mode confidential-vm can deploy today. */
const CVM_PLATFORMS: string[] = [
  VhsmPlatform.Local,
  VhsmPlatform.Qemu,
  VhsmPlatform.Proxmox,
  VhsmPlatform.Aws,
  VhsmPlatform.Gcp,
  VhsmPlatform.Azure,
];
/** The clouds: the runtime's cloud disk, its OS bound through the cloud's vTPM (components/{aws,gcp,azure}/vhsm-guest.ts). */
const CLOUD_PLATFORMS: string[] = [VhsmPlatform.Aws, VhsmPlatform.Gcp, VhsmPlatform.Azure];
/** Inputs only the cloud platforms take, and which. */
const CLOUD_KEYS = {
  cloudImageId: CLOUD_PLATFORMS,
  // No AzureKitImage yet: on Azure the program makes the gallery image version (cloudImageId) itself.
  kitImage: [VhsmPlatform.Aws, VhsmPlatform.Gcp],
  size: CLOUD_PLATFORMS,
  region: [VhsmPlatform.Aws],
  subnetId: [VhsmPlatform.Aws, VhsmPlatform.Azure],
  securityGroupIds: [VhsmPlatform.Aws],
  akPins: [VhsmPlatform.Aws],
  dbCertificates: CLOUD_PLATFORMS,
  zone: [VhsmPlatform.Gcp],
  network: [VhsmPlatform.Gcp],
  subnetwork: [VhsmPlatform.Gcp],
  firmwareEndorsement: [VhsmPlatform.Gcp],
  gceTcbRootPem: [VhsmPlatform.Gcp],
  minFirmwareSvn: [VhsmPlatform.Gcp],
  resourceGroupName: [VhsmPlatform.Azure],
  location: [VhsmPlatform.Azure],
  paravisorMeasurements: [VhsmPlatform.Azure],
  allowSerialConsole: [VhsmPlatform.Azure],
} as const satisfies Record<string, readonly string[]>;
/** The SEV-SNP hardware platforms: the runtime image's sev-guest variant, verified against AMD's roots. */
const HARDWARE_PLATFORMS: string[] = [VhsmPlatform.Qemu, VhsmPlatform.Proxmox];
/** Inputs only the hardware platforms take. */
const HARDWARE_KEYS = [
  "image",
  "tee",
  "cpuModel",
  "hostData",
  "allowAnyInstance",
  "node",
  "vmid",
  "storage",
  "bridge",
  "macAddress",
] as const;
/** Inputs only platform proxmox takes. */
const PROXMOX_KEYS = ["node", "vmid", "storage", "bridge", "macAddress", "allowAnyInstance"] as const;
/** Inputs only platform local takes. */
const LOCAL_KEYS = ["platformDir", "actualFirmware", "trustSimulatedSnp"] as const;

const MODES = [VhsmMode.Process, VhsmMode.Ssh, VhsmMode.ConfidentialVm];

/** The host the runtime runs on (mode ssh): the one SSH target type; hostKey pinning is recommended. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- its own name keeps the generated SDK type name
export interface VhsmSshArgs extends SshTargetArgs {}

export interface VhsmArgs {
  /** Default process. */
  mode?: VhsmMode;
  /** Mode confidential-vm: the platform the runtime's guest runs on. Deployable: `local`, `qemu`, `proxmox`. */
  platform?: VhsmPlatform;
  /**
   * Mode confidential-vm, platforms qemu and proxmox (required): the absolute path of the runtime image's
   * manifest.json, as `buckypaper image build --role runtime --runtime-psp sev-guest` prints it. Its kernel,
   * initrd and command line (with the dm-verity root hash) are booted and measured; its root filesystem is
   * uploaded; on qemu its AmdSev firmware too (unless `firmware` is given).
   * Platforms aws and gcp (required): the manifest of the runtime's cloud disk (`… --format disk --cloud ec2|gce`):
   * the measured-boot policy the runtime's vTPM evidence must meet is predicted from its disk's UKI.
   */
  image?: string;
  /**
   * Mode confidential-vm, platforms aws and gcp (required): the AMI id / GCE image the program created from the disk
   * of `image` (`buckypaper image build --role runtime --runtime-psp sev-guest --format disk --cloud ec2|gce`): the AMI
   * registered with UEFI boot and TpmSupport v2.0, the GCE image with SEV_SNP_CAPABLE and UEFI_COMPATIBLE. What binds
   * the runtime is not this id (the cloud names it) but the boot chain predicted from the manifest's disk, which the
   * runtime's vTPM evidence must meet: an AMI/image of another disk is refused when the deployer verifies it.
   */
  cloudImageId?: pulumi.Input<string>;
  /**
   * Mode confidential-vm, platforms aws and gcp: instead of `image`, `cloudImageId` and `dbCertificates`, the
   * `AwsKitImage`/`GcpKitImage` made from the runtime's cloud disk — its manifest, its image id and the db
   * certificates it enrolls, so the certificates the image enrolls are the ones the runtime's policy registers.
   */
  kitImage?: KitImageRef;
  /** Mode confidential-vm, platforms aws and gcp: the instance type (default m6a.large) / machine type (default
   *  n2d-standard-2), checked against the catalog (images/catalog): it must offer SEV-SNP; its vCPUs are measured. */
  size?: string;
  /** Mode confidential-vm, platform aws: the region (default the aws:region config); must offer SEV-SNP. */
  region?: string;
  /** Mode confidential-vm, platform aws: the subnet and security groups of the instance (the groups must let the
   *  deployer and the workloads reach TCP 8200); platform azure (required): the subnet of the VM's NIC. */
  subnetId?: pulumi.Input<string>;
  securityGroupIds?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * Mode confidential-vm, platform aws: SHA-256 (hex) of the runtime's vTPM attestation key (TPM2B_PUBLIC), obtained
   * over a channel you trust — the AK authentication instead of the instance's EK or the NitroTPM document. Optional:
   * a runtime image that quotes with its own AK (manifest runtime.vtpm.ak "runtime-ak") is otherwise authenticated by
   * EK credential activation against the instance's EK (EC2 GetInstanceTpmEkPub, deployer's credentials
   * ec2:GetInstanceTpmEkPub); with pins the instance is pinned by that AK and the runtime instance id instead.
   */
  akPins?: string[];
  /**
   * Mode confidential-vm, platforms aws and gcp (required on gcp, whose Shielded VM boots with Secure Boot on): the db
   * certificate files (PEM or DER) the runtime disk's UKI is signed with (`image build --sign-key/--sign-cert`) and
   * the image enrolls (AMI `uefiData`, GCE image `shieldedInstanceInitialState.dbs`). The boot policy then also
   * requires Secure Boot on and the boot verified by one of them (PCR 7 authority).
   */
  dbCertificates?: string[];
  /** Mode confidential-vm, platform gcp (required): the zone; and the network or subnetwork (default network default). */
  zone?: pulumi.Input<string>;
  network?: pulumi.Input<string>;
  subnetwork?: pulumi.Input<string>;
  /**
   * Mode confidential-vm, platform gcp (required): Google's launch endorsement of the VM's firmware (base64 of the
   * VMLaunchEndorsement .binarypb, as GcpConfidentialVm takes it): the SNP measurement for the machine type's vCPUs is
   * taken from it, its signature verified at preview against `gceTcbRootPem` (required with it).
   */
  firmwareEndorsement?: string;
  /** Mode confidential-vm, platform gcp (required): the GCE-cc-tcb-root certificate (PEM) the endorsement must chain to. */
  gceTcbRootPem?: string;
  /** Mode confidential-vm, platform gcp: the minimum SVN of the endorsed firmware. */
  minFirmwareSvn?: number;
  /** Mode confidential-vm, platform azure (required): the resource group of the runtime's VM; and its location. */
  resourceGroupName?: pulumi.Input<string>;
  location?: pulumi.Input<string>;
  /**
   * Mode confidential-vm, platform azure (required): the SNP launch digest(s) (96 hex) of Microsoft's paravisor the
   * runtime's VM runs under — the same for every Azure CVM of the size (Azure publishes no endorsement the kit can
   * verify: take it from a CVM's HCL report over a channel you trust). The OS is bound by the boot events instead.
   */
  paravisorMeasurements?: string[];
  /**
   * Mode confidential-vm, platform azure: accept an HCL report whose vm-configuration says the serial console is
   * enabled (Azure's default unless disabled for the subscription). The runtime image masks every getty, so the
   * console gives no login; default false (refused, `policy.console`).
   */
  allowSerialConsole?: boolean;
  /** Mode confidential-vm, platforms qemu and proxmox: the TEE. Only SEV-SNP (the default) is deployable. */
  tee?: Tee;
  /** Mode confidential-vm, platforms qemu and proxmox: the QEMU vCPU model, part of the SNP measurement
   *  (default EPYC-v4). */
  cpuModel?: string;
  /**
   * Mode confidential-vm, platform qemu: SNP HOST_DATA (64 hex digits) the runtime's VM is launched with
   * (host-data=, QEMU 9.1+) and every verifier requires. Default: SHA-256 of
   * "buckypaper-vhsm-instance", project, stack and name. Proxmox cannot set it (see allowAnyInstance).
   */
  hostData?: string;
  /**
   * Mode confidential-vm, platform proxmox (required there, must be true): PVE's amd-sev option has no
   * HOST_DATA, so the verifiers cannot tell this instance from another VM launched from the same image; this
   * says you accept that (the measurement, the policy and the AMD chain are still checked).
   */
  allowAnyInstance?: boolean;
  /** Mode confidential-vm, platform proxmox (required): the PVE node name. */
  node?: string;
  /** Mode confidential-vm, platform proxmox (required): the VM id (100 - 999999999). */
  vmid?: number;
  /** Mode confidential-vm, platform proxmox: the storage for the runtime's disks (default local-lvm). */
  storage?: string;
  /** Mode confidential-vm, platform proxmox: the bridge of the VM's NIC (default vmbr0). */
  bridge?: string;
  /** Mode confidential-vm, platform proxmox: the NIC's MAC address (e.g. for a DHCP reservation of publicHost). */
  macAddress?: string;
  /** Mode confidential-vm, platform local: the simulated platform's directory (a `SimulatedPlatform`'s dir).
   *  Its anchor goes in `trustSimulatedSnp`: the guest's reports are signed by it, and the runtime trusts it
   *  for the workloads' evidence. */
  platformDir?: pulumi.Input<string>;
  /** Mode confidential-vm: the guest's firmware (default on local and qemu: the runtime image's AmdSev OVMF,
   *  whose kernel-hashes table puts kernel, initrd and command line — with the verity root hash — in the digest).
   *  Required on proxmox: a copy of the node's OVMF_SEV_4M.fd (PVE boots its own; the measurement needs its bytes). */
  firmware?: string;
  /** Mode confidential-vm: vCPUs (default 1) and memory in MiB (default 1024) of the guest. */
  vcpus?: number;
  memoryMb?: number;
  /** Mode confidential-vm: GiB of the runtime's data disk (default 1; on aws and gcp 10: an EBS gp3 volume / a GCE
   *  pd-balanced disk attached blank, which the runtime image formats and finds by its label). */
  dataDiskGb?: number;
  /**
   * Mode confidential-vm, platform local: boot the guest with this firmware instead of the one the
   * measurement is computed from — the tamper demonstration: `pulumi up` must refuse the runtime.
   */
  actualFirmware?: string;
  /** SSH target (mode ssh; mode confidential-vm: the QEMU host or the PVE node, as root). */
  ssh?: VhsmSshArgs;
  /** Absolute directory for config, SQLite storage, log and pid file. Default: <cwd>/.bk/vhsm/<stack> (local), /var/lib/buckypaper/vhsm-<stack> (ssh).
   *  Mode confidential-vm on qemu/proxmox: the directory on the host for the boot files and disks (same default as ssh). */
  stateDir?: string;
  /** Address the server listens on. Default 127.0.0.1 (local), 0.0.0.0 (ssh). Mode confidential-vm on qemu: the
   *  host address QEMU forwards to the runtime's listener (default 0.0.0.0). */
  listenAddress?: string;
  /** TCP port. Default 8200. On qemu: the host port forwarded to the runtime; on proxmox it is the guest's own (8200). */
  port?: number;
  /** Host name or IP in the URL that the deployment and the VMs use. Default 127.0.0.1 (local), the SSH host (ssh,
   *  and confidential-vm on qemu). Required on proxmox: the address the runtime's VM gets on the bridge. */
  publicHost?: pulumi.Input<string>;
  /** More host names/IP addresses in the listener certificate, e.g. the address the local stack's real
   *  QEMU guests reach the runtime at through their user-mode network (10.0.2.100). */
  tlsHosts?: string[];
  /** Serve HTTPS with the runtime CA (default true). */
  tls?: boolean;
  /** Command that runs the buckypaper CLI. Default: this package's bin/buckypaper.js with the current Node (local), `buckypaper` (ssh). */
  command?: string[];
  /**
   * Shamir key shares / threshold at init. Default: one share per recovery key (1 without recoveryKeys),
   * threshold 1 for one share, else a majority.
   */
  keyShares?: number;
  keyThreshold?: number;
  /**
   * Operators' public JWKs (JSON text; X25519, or EC P-256/P-384/P-521), one per key share: each share
   * is output only as a JWE to one of them (`recoveryShares`). Without it, the single share is encrypted
   * to a key generated into <config dir>/buckypaper/recovery/ (0600), which lets `pulumi up` on this
   * machine unseal a restarted runtime. Generate operator keys with `buckypaper runtime recovery-key`.
   */
  recoveryKeys?: pulumi.Input<string>[];
  /**
   * Where the deployer's private key is written at init (0600). Default:
   * <config dir>/buckypaper/deployer/<project>-<stack>-<name>.pem. BUCKYPAPER_DEPLOYER_KEY overrides it.
   */
  deployerKeyFile?: string;
  /** Your own deployer public key (Ed25519 PEM), its private key given as BUCKYPAPER_DEPLOYER_KEY: no file is written. */
  deployerPublicKey?: pulumi.Input<string>;
  /** Any value; changing it rotates the deployer key pair on the next `pulumi up`. */
  deployerKeyRotation?: pulumi.Input<string>;
  /**
   * INSECURE, for those who need the old behaviour: keep the root token (never revoked) and the plaintext
   * unseal keys in Pulumi state (as secrets) and set up no deployer credential. Default false.
   */
  insecureKeepRootTokenInState?: boolean;
  /**
   * Modes process and confidential-vm (local, required there): trust this simulated SEV-SNP platform (a `SimulatedPlatform`'s anchor). Sets the
   * runtime's nitride config to accept evidence chaining to it (marked simulated in every verdict) and
   * turns AMD KDS lookups off. Never use it for a runtime that guards real secrets.
   */
  trustSimulatedSnp?: pulumi.Input<SimulatedAnchor>;
  /** Write the runtime's audit log to <stateDir>/audit.log (default false). */
  auditLog?: boolean;
  /**
   * Server processes sharing the listener and storage (docs/runtime.md "Workers"), 1 to 64. Default:
   * 1 in local mode, one per CPU of the host in ssh mode.
   */
  workers?: number;
}

/** The runtime's config file: rendered beside the runtime's config parser (runtime/server/http/config-render.ts). */
export { renderRuntimeConfig };

// components/ in the sources, dist/components/ when compiled: the package root is one or two levels up.
const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE_ROOT =
  path.basename(path.dirname(HERE)) === "dist" ? path.resolve(HERE, "..", "..") : path.resolve(HERE, "..");

/** A kit image's manifest, id and enrolled db certificates as the Vhsm's image, cloudImageId and dbCertificates. */
function kitImageArgs(who: string, args: VhsmArgs, given: (k: keyof VhsmArgs) => boolean): VhsmArgs {
  const image = args.kitImage!;
  const cloud = args.platform === VhsmPlatform.Aws ? "ec2" : "gce";
  for (const k of ["image", "cloudImageId", "dbCertificates"] as const)
    if (given(k))
      throw new ConfigError(
        who,
        k,
        "and kitImage are exclusive (kitImage supplies the manifest, image id and db certificates)",
      );
  if (image.cloud !== cloud)
    throw new ConfigError(who, "kitImage", `is an image of a disk built for '${image.cloud}'`, [cloud]);
  if (image.bootChain.disk !== undefined || image.bootChain.manifest === undefined)
    throw new ConfigError(
      who,
      "kitImage",
      "was made from a disk other than its manifest's (disk): the runtime's policy is predicted from the manifest's own disk",
    );
  return {
    ...args,
    image: image.bootChain.manifest,
    cloudImageId: image.imageId,
    ...(image.bootChain.dbCertificates !== undefined ? { dbCertificates: image.bootChain.dbCertificates } : {}),
  };
}

/** Mode confidential-vm on aws / gcp: what the cloud decides is refused, naming the field (AWS CDK guidelines). */
function validateCloud(who: string, args: VhsmArgs, given: (k: keyof VhsmArgs) => boolean): void {
  const on = `on platform '${args.platform}'`;
  const aws = args.platform === VhsmPlatform.Aws;
  const azure = args.platform === VhsmPlatform.Azure;
  const build = azure
    ? "buckypaper image build --role runtime --runtime-psp azure-hcl --format disk --cloud azure"
    : `buckypaper image build --role runtime --runtime-psp sev-guest --format disk --cloud ${aws ? "ec2" : "gce"}`;
  if (args.ssh)
    throw new ConfigError(who, "ssh", `is not used ${on}: the runtime's VM is created through the cloud's API`);
  const why: Partial<Record<keyof VhsmArgs, string>> = {
    platformDir: "is only allowed on platform 'local' (the simulated PSP)",
    actualFirmware: "is only allowed on platform 'local' (the simulated PSP)",
    trustSimulatedSnp: `is only allowed on platform 'local' (the simulated PSP); ${on} the runtime's evidence chains to AMD's roots`,
    firmware: `is not settable ${on}: the VM boots the cloud's firmware, whose digest comes from ${aws ? "the catalog (images/catalog)" : azure ? "paravisorMeasurements (Microsoft's paravisor)" : "Google's launch endorsement (firmwareEndorsement)"}`,
    vcpus: `is not settable ${on}: the vCPUs come from size (and are part of the launch digest)`,
    memoryMb: `is not settable ${on}: the memory comes from size`,
    cpuModel: `is not settable ${on}: the cloud chooses the vCPU model`,
    hostData: `is not settable ${on}: the cloud launches SEV-SNP guests without a customer HOST_DATA; the instance is pinned by ${aws ? "the vTPM's NitroTPM document (module_id) or EK" : azure ? "the HCL report's vmUniqueId (the Azure API's vmId)" : "the vTPM's Google AK certificate (instance id)"} and the runtime instance id`,
    allowAnyInstance: `is not needed ${on}: the instance is pinned by the cloud's ${azure ? "HCL report (vmUniqueId)" : "vTPM evidence"}`,
    node: "is only allowed on platform 'proxmox'",
    vmid: "is only allowed on platform 'proxmox'",
    storage: "is only allowed on platform 'proxmox'",
    bridge: "is only allowed on platform 'proxmox'",
    macAddress: "is only allowed on platform 'proxmox'",
    listenAddress: `is not used ${on}: the runtime listens on its own address in the VM`,
    stateDir: `is not used ${on}: nothing is kept on a host`,
  };
  for (const [k, w] of Object.entries(why) as [keyof VhsmArgs, string][])
    if (given(k)) throw new ConfigError(who, k, w);
  if (args.port !== undefined && args.port !== RUNTIME_GUEST_PORT)
    throw new ConfigError(who, "port", `is ${args.port}; ${on} the runtime listens on its own port`, [
      RUNTIME_GUEST_PORT,
    ]);
  if (args.tee !== undefined && args.tee !== Tee.SevSnp)
    throw new ConfigError(
      who,
      "tee",
      `is '${args.tee}': the runtime's guest ${on} runs on SEV-SNP only — the runtime image has no TDX evidence path${aws ? " and EC2 offers no TDX" : azure ? " (Azure's TDX CVMs need the TD quote from IMDS, which verifyRuntime does not expect for the runtime)" : ""}`,
      [Tee.SevSnp],
    );
  if (args.image === undefined)
    throw new ConfigError(who, "image", `is required ${on}: the manifest.json of the runtime's cloud disk (${build})`);
  if (args.cloudImageId === undefined)
    throw new ConfigError(
      who,
      "cloudImageId",
      `is required ${on}: the ${aws ? "AMI (UEFI boot, TpmSupport v2.0)" : azure ? "Compute Gallery image version (security type ConfidentialVM, the db certificate enrolled)" : "GCE image (SEV_SNP_CAPABLE, UEFI_COMPATIBLE)"} the program created from the manifest's disk`,
    );
  if (azure) {
    if (args.resourceGroupName === undefined) throw new ConfigError(who, "resourceGroupName", `is required ${on}`);
    if (args.subnetId === undefined)
      throw new ConfigError(who, "subnetId", `is required ${on}: the subnet of the VM's NIC`);
    if (args.paravisorMeasurements === undefined)
      throw new ConfigError(
        who,
        "paravisorMeasurements",
        `is required ${on}: the SNP launch digest is Microsoft's paravisor's, which Azure does not endorse in a form the kit verifies; give the digest(s) you accept (the OS is bound by the boot events the runtime's vTPM logs)`,
      );
  } else if (!aws) {
    if (args.zone === undefined) throw new ConfigError(who, "zone", `is required ${on}`);
    if (args.firmwareEndorsement === undefined)
      throw new ConfigError(
        who,
        "firmwareEndorsement",
        `is required ${on}: the SNP launch digest is Google's firmware's, known only by Google's launch endorsement (no pasted digest for the vHSM)`,
      );
    if (args.gceTcbRootPem === undefined)
      throw new ConfigError(
        who,
        "gceTcbRootPem",
        `is required ${on}: the endorsement's signature is verified at preview against it (the clients then pin the endorsed digest)`,
      );
  }
}

/** What a confidential-vm deployment gives the component's outputs. */
type VhsmParts = Pick<
  Vhsm,
  | "url"
  | "rootToken"
  | "deployer"
  | "recoveryShares"
  | "workloadAudience"
  | "attestation"
  | "measurement"
  | "tlsKeySha256"
  | "attestationSummary"
>;

/** What a cloud runtime's unseal rests on (attestationSummary.unseal; docs/trust-bootstrap.md). */
export const CLOUD_UNSEAL =
  "NO auto-unseal: the SNP measurement on this cloud is the provider's firmware only (the same for any VM of this size), so a key the PSP derives from it would open the barrier on any such VM; a restarted runtime stays sealed until the operators' recovery shares (or its attested peers, where the runtime image offers it) unseal it — `pulumi up` on a machine holding the recovery key does it";

export class Vhsm extends pulumi.ComponentResource {
  /** Base URL of the runtime (https://host:port). */
  public readonly url: pulumi.Output<string>;
  /** SHA-256 (hex) of the runtime CA certificate: what guests pin. Empty without TLS. */
  public readonly caFingerprint: pulumi.Output<string>;
  /** PEM of the runtime CA certificate. */
  public readonly caPem: pulumi.Output<string>;
  /** Only with insecureKeepRootTokenInState: the root token (a Pulumi secret). Otherwise undefined. */
  public readonly rootToken: pulumi.Output<string>;
  /** The deployer credential to put in connections (`deployer: vhsm.deployer`): a mount, a role, a key file path. */
  public readonly deployer: pulumi.Output<DeployerAuthArgs>;
  /** The Shamir recovery shares, each a JWE to one operator key (ciphertext only; none with the insecure opt-out). */
  public readonly recoveryShares: pulumi.Output<string[]>;
  /**
   * What a JWT auth role of this runtime binds (`bound_audiences`) to admit its Nitride workload tokens: the
   * runtime's own audience (`buckypaper-nitride:<mount uuid>`; each token also carries that + `:<workload id>`),
   * or the audience configured in `nitride/config`. Empty for a runtime bootstrapped before it was recorded.
   */
  public readonly workloadAudience: pulumi.Output<string>;
  /**
   * Mode confidential-vm: what every client must verify before sending anything (put it in connections:
   * `attestation: vhsm.attestation`; the guests get it in their user-data). Undefined in the other modes.
   */
  public readonly attestation: pulumi.Output<RuntimeAttestationArgs>;
  /** Mode confidential-vm: the runtime's MEASUREMENT as verified at bootstrap (computed from the boot inputs). */
  public readonly measurement: pulumi.Output<string>;
  /** Mode confidential-vm: SHA-256 of the TLS key (SPKI) the runtime's evidence binds. */
  public readonly tlsKeySha256: pulumi.Output<string>;
  /** Mode confidential-vm: who verified the runtime, when, against what; the guest's pid, console and boot time. */
  public readonly attestationSummary: pulumi.Output<VhsmAttestationSummary | undefined>;

  constructor(name: string, args: VhsmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:Vhsm", name, args, opts);
    const component = `Vhsm ${name}`;
    const mode = args.mode === VhsmMode.Local ? VhsmMode.Process : (args.mode ?? VhsmMode.Process);
    requireOneOf(component, "mode", mode, MODES);
    const given = (k: keyof VhsmArgs) => args[k] !== undefined;
    if (mode === VhsmMode.ConfidentialVm) {
      const platforms: string[] = Object.values(VhsmPlatform);
      if (args.platform === undefined)
        throw new ConfigError(component, "platform", "is required when mode is 'confidential-vm'", CVM_PLATFORMS);
      requireOneOf(component, "platform", args.platform, platforms);
      for (const k of ["command", "workers", "tls", "tlsHosts", "auditLog"] as const)
        if (given(k))
          throw new ConfigError(
            component,
            k,
            "is not used in mode 'confidential-vm': the runtime's config is part of its measured guest image",
          );
      for (const [k, on] of Object.entries(CLOUD_KEYS) as [keyof typeof CLOUD_KEYS, readonly string[]][])
        if (given(k) && !on.includes(args.platform))
          throw new ConfigError(component, k, `is only allowed on platform ${on.join(" or ")}`, on);
      if (CLOUD_PLATFORMS.includes(args.platform)) {
        if (args.kitImage !== undefined) args = kitImageArgs(component, args, given);
        validateCloud(component, args, given);
      } else if (args.platform === VhsmPlatform.Local) {
        if (args.ssh) throw new ConfigError(component, "ssh", "is only allowed when mode is 'ssh'");
        for (const k of HARDWARE_KEYS)
          if (given(k))
            throw new ConfigError(
              component,
              k,
              "is only allowed on the SEV-SNP hardware platforms",
              HARDWARE_PLATFORMS,
            );
        if (args.platformDir === undefined)
          throw new ConfigError(
            component,
            "platformDir",
            "is required when platform is 'local' (a SimulatedPlatform's dir)",
          );
        if (args.trustSimulatedSnp === undefined)
          throw new ConfigError(
            component,
            "trustSimulatedSnp",
            "is required when platform is 'local' (the SimulatedPlatform's anchor: the runtime guest's reports chain to it)",
          );
        for (const k of ["listenAddress", "publicHost"] as const)
          if (given(k))
            throw new ConfigError(
              component,
              k,
              "is not used in mode 'confidential-vm': the runtime's config is part of its measured guest image",
            );
      } else {
        const on = `on platform '${args.platform}'`;
        for (const k of LOCAL_KEYS)
          if (given(k))
            throw new ConfigError(
              component,
              k,
              `is only allowed on platform 'local' (the simulated PSP); ${on} the runtime's evidence chains to AMD's roots`,
            );
        if (!args.ssh)
          throw new ConfigError(
            component,
            "ssh",
            `is required ${on}: the ${args.platform === VhsmPlatform.Qemu ? "QEMU/KVM host" : "PVE node"} the runtime's VM is created on (as root)`,
          );
        if (args.image === undefined)
          throw new ConfigError(
            component,
            "image",
            `is required ${on}: the manifest.json of the runtime image (buckypaper image build --role runtime --runtime-psp sev-guest)`,
          );
        if (args.tee !== undefined && args.tee !== Tee.SevSnp)
          throw new ConfigError(
            component,
            "tee",
            `is '${args.tee}': the runtime's guest on ${args.platform} runs on SEV-SNP only — its auto-unseal needs the security processor's derived key (SNP_GET_DERIVED_KEY), which TDX has no equivalent of, and the runtime image has no TDX evidence path`,
            [Tee.SevSnp],
          );
        if (args.platform === VhsmPlatform.Qemu) {
          for (const k of PROXMOX_KEYS)
            if (given(k))
              throw new ConfigError(
                component,
                k,
                k === "allowAnyInstance"
                  ? "is not needed on platform 'qemu': the runtime's VM is launched with HOST_DATA (hostData) and every verifier requires it"
                  : "is only allowed on platform 'proxmox'",
              );
          if (args.hostData !== undefined && !/^[0-9a-f]{64}$/.test(args.hostData))
            throw new ConfigError(component, "hostData", "must be 64 lower-case hex digits (32 bytes)");
        } else {
          if (args.hostData !== undefined)
            throw new ConfigError(
              component,
              "hostData",
              "is not settable on platform 'proxmox': PVE's amd-sev option has no host-data (set allowAnyInstance: true to accept that the instance is not pinned)",
            );
          if (args.allowAnyInstance !== true)
            throw new ConfigError(
              component,
              "allowAnyInstance",
              "must be true on platform 'proxmox': PVE cannot launch the VM with HOST_DATA, so no verifier can tell this runtime from another VM of the same image; say that you accept it",
              ["true"],
            );
          if (args.node === undefined) throw new ConfigError(component, "node", `is required ${on}`);
          if (args.vmid === undefined) throw new ConfigError(component, "vmid", `is required ${on}`);
          if (args.firmware === undefined)
            throw new ConfigError(
              component,
              "firmware",
              `is required ${on}: a copy of the node's OVMF_SEV_4M.fd (PVE boots its own firmware; the expected measurement is computed from its bytes)`,
            );
          if (args.publicHost === undefined)
            throw new ConfigError(
              component,
              "publicHost",
              `is required ${on}: the address the runtime's VM gets on the bridge (e.g. a DHCP reservation for macAddress)`,
            );
          if (args.listenAddress !== undefined)
            throw new ConfigError(
              component,
              "listenAddress",
              `is not used ${on}: the VM has its own address on the bridge`,
            );
          if (args.port !== undefined && args.port !== RUNTIME_GUEST_PORT)
            throw new ConfigError(
              component,
              "port",
              `is ${args.port}; ${on} the runtime listens on its own port on the bridge`,
              [RUNTIME_GUEST_PORT],
            );
          if (!Number.isInteger(args.vmid) || args.vmid < 100 || args.vmid > 999_999_999)
            throw new ConfigError(component, "vmid", `is ${args.vmid}; must be an integer from 100 to 999999999`);
          if (!/^[a-zA-Z0-9][a-zA-Z0-9.-]*$/.test(args.node))
            throw new ConfigError(component, "node", `'${args.node}' is not a PVE node name`);
          if (args.macAddress !== undefined && !/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/.test(args.macAddress))
            throw new ConfigError(
              component,
              "macAddress",
              `'${args.macAddress}' is not a MAC address (aa:bb:cc:dd:ee:ff)`,
            );
        }
      }
    } else {
      if (args.platform !== undefined)
        throw new ConfigError(component, "platform", "is only allowed when mode is 'confidential-vm'");
      for (const k of [
        "platformDir",
        "firmware",
        "vcpus",
        "memoryMb",
        "dataDiskGb",
        "actualFirmware",
        ...HARDWARE_KEYS,
        ...(Object.keys(CLOUD_KEYS) as (keyof typeof CLOUD_KEYS)[]),
      ] as const)
        if (args[k] !== undefined)
          throw new ConfigError(component, k, "is only allowed when mode is 'confidential-vm'");
    }
    if (mode === VhsmMode.Ssh && !args.ssh)
      throw new ConfigError(`Vhsm ${name}`, "ssh", "is required when mode is 'ssh'");
    if (mode === VhsmMode.Process && args.ssh)
      throw new ConfigError(`Vhsm ${name}`, "ssh", "is only allowed when mode is 'ssh'");
    const hardware = mode === VhsmMode.ConfidentialVm && HARDWARE_PLATFORMS.includes(args.platform!);
    if (args.ssh && typeof args.ssh.privateKey === "string") {
      throw new ConfigError(
        `Vhsm ${name}`,
        "ssh.privateKey",
        "is a plain string; pass a Pulumi secret (config.requireSecret(...))",
      );
    }
    const port = args.port ?? 8200;
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new ConfigError(`Vhsm ${name}`, "port", `is ${port}; must be 1..65535`);
    if (args.trustSimulatedSnp !== undefined && mode === VhsmMode.Ssh)
      throw new ConfigError(
        `Vhsm ${name}`,
        "trustSimulatedSnp",
        "is only allowed when mode is 'process' or 'confidential-vm'",
      );
    const stack = pulumi.getStack();
    const stateDir =
      args.stateDir ??
      (mode === VhsmMode.Ssh || hardware ? `/var/lib/buckypaper/vhsm-${stack}` : path.resolve(".bk", "vhsm", stack));
    if (!path.isAbsolute(stateDir))
      throw new ConfigError(`Vhsm ${name}`, "stateDir", `is '${stateDir}'; must be an absolute path`);
    if (args.workers !== undefined && !(Number.isInteger(args.workers) && args.workers >= 1 && args.workers <= 64)) {
      throw new ConfigError(`Vhsm ${name}`, "workers", `is ${args.workers}; must be an integer from 1 to 64`);
    }

    const recoveryKeys = args.recoveryKeys;
    const keyShares = args.keyShares ?? (recoveryKeys?.length || 1);
    if (recoveryKeys && !args.insecureKeepRootTokenInState && recoveryKeys.length !== keyShares)
      throw new ConfigError(
        component,
        "recoveryKeys",
        `has ${recoveryKeys.length} key(s) but keyShares is ${keyShares}; give one operator public key per share`,
      );
    if (!recoveryKeys && !args.insecureKeepRootTokenInState && keyShares !== 1)
      throw new ConfigError(
        component,
        "keyShares",
        `is ${keyShares}; more than one share needs recoveryKeys (one per share)`,
      );
    const keyThreshold = args.keyThreshold ?? (keyShares === 1 ? 1 : Math.floor(keyShares / 2) + 1);
    const keyName = `${pulumi.getProject()}-${stack}-${name}`.replace(/[^A-Za-z0-9._-]/g, "_");
    const deployerKeyFile = args.deployerKeyFile ?? path.join(userConfigDir(), "deployer", `${keyName}.pem`);
    if (!path.isAbsolute(deployerKeyFile))
      throw new ConfigError(component, "deployerKeyFile", `is '${deployerKeyFile}'; must be an absolute path`);
    const rootWrites =
      args.trustSimulatedSnp === undefined
        ? undefined
        : [
            {
              path: "nitride/config",
              body: pulumi
                .output(args.trustSimulatedSnp)
                .apply((a) => ({ kds: "off", accept_simulated: true, simulated_snp_anchors: [a] })),
            },
          ];

    const bootstrap = {
      keyShares,
      keyThreshold,
      ...(args.insecureKeepRootTokenInState
        ? { insecureKeepRootTokenInState: true }
        : {
            deployerKeyFile,
            ...(args.deployerPublicKey !== undefined ? { deployerPublicKey: args.deployerPublicKey } : {}),
            ...(args.deployerKeyRotation !== undefined ? { deployerKeyRotation: args.deployerKeyRotation } : {}),
            ...(recoveryKeys
              ? { recoveryKeys }
              : { localRecoveryKeyFile: path.join(userConfigDir(), "recovery", `${keyName}.jwk`) }),
          }),
      ...(rootWrites ? { rootWrites } : {}),
    };

    if (mode === VhsmMode.ConfidentialVm) {
      const who = component;
      const int = (k: "vcpus" | "memoryMb" | "dataDiskGb", v: number, min: number, max: number) => {
        if (!Number.isInteger(v) || v < min || v > max)
          throw new ConfigError(who, k, `is ${v}; must be an integer ${min}..${max}`);
        return v;
      };
      if (CLOUD_PLATFORMS.includes(args.platform!)) {
        const cl = this.deployCloudGuest(name, args, bootstrap);
        this.url = cl.url;
        // No CA to pin: trust comes from the attestation (the listener's certificate is self-signed).
        this.caFingerprint = pulumi.output("");
        this.caPem = pulumi.output("");
        this.rootToken = cl.rootToken;
        this.deployer = cl.deployer;
        this.recoveryShares = cl.recoveryShares;
        this.workloadAudience = cl.workloadAudience;
        this.attestation = cl.attestation;
        this.measurement = cl.measurement;
        this.tlsKeySha256 = cl.tlsKeySha256;
        this.attestationSummary = cl.attestationSummary;
        this.registerOutputs({ ...cl, caFingerprint: this.caFingerprint, caPem: this.caPem });
        return;
      }
      if (hardware) {
        const hw = this.deployHardwareGuest(name, args, {
          stateDir,
          port,
          vcpus: int("vcpus", args.vcpus ?? 1, 1, 64),
          memoryMb: int("memoryMb", args.memoryMb ?? 1024, 512, 65536),
          dataDiskGb: int("dataDiskGb", args.dataDiskGb ?? 1, 1, 64),
          bootstrap,
        });
        this.url = hw.url;
        // No CA to pin: trust comes from the attestation (the listener's certificate is self-signed).
        this.caFingerprint = pulumi.output("");
        this.caPem = pulumi.output("");
        this.rootToken = hw.rootToken;
        this.deployer = hw.deployer;
        this.recoveryShares = hw.recoveryShares;
        this.workloadAudience = hw.workloadAudience;
        this.attestation = hw.attestation;
        this.measurement = hw.measurement;
        this.tlsKeySha256 = hw.tlsKeySha256;
        this.attestationSummary = hw.attestationSummary;
        this.registerOutputs({ ...hw, caFingerprint: this.caFingerprint, caPem: this.caPem });
        return;
      }
      const local = localVhsmGuest(this, {
        who,
        instanceName: `${pulumi.getProject()}/${stack}/${name}`,
        name: `${name}`
          .toLowerCase()
          .replace(/[^a-z0-9-]/g, "-")
          .slice(0, 40),
        packageRoot: PACKAGE_ROOT,
        platformDir: args.platformDir!,
        anchor: args.trustSimulatedSnp!,
        stateDir,
        port,
        ...(args.firmware ? { firmware: args.firmware } : {}),
        ...(args.actualFirmware ? { actualFirmware: args.actualFirmware } : {}),
        vcpus: int("vcpus", args.vcpus ?? 1, 1, 64),
        memoryMb: int("memoryMb", args.memoryMb ?? 1024, 512, 65536),
        dataDiskGb: int("dataDiskGb", args.dataDiskGb ?? 1, 1, 64),
        bootstrap,
      });
      const g = local.guest;
      this.url = pulumi.all([g.url, g.measurement]).apply(([u]) => u);
      // No CA to pin: trust comes from the attestation (the listener's certificate is self-signed).
      this.caFingerprint = pulumi.output("");
      this.caPem = pulumi.output("");
      this.rootToken = pulumi.secret(g.rootToken) as pulumi.Output<string>;
      this.deployer = g.deployer as pulumi.Output<DeployerAuthArgs>;
      this.recoveryShares = g.recoveryShares as pulumi.Output<string[]>;
      this.workloadAudience = g.workloadAudience.apply((a) => a ?? "");
      // Usable once the runtime was verified and bootstrapped (outputs of the guest resource): the measurement,
      // the anchor and the instance's HOST_DATA.
      this.attestation = local.attestation as pulumi.Output<RuntimeAttestationArgs>;
      this.measurement = g.measurement;
      this.tlsKeySha256 = g.tlsKeySha256;
      this.attestationSummary = pulumi
        .all([
          g.measurement,
          g.launchMeasurement,
          g.tlsKeySha256,
          g.simulated,
          g.verifiedBy,
          g.verifiedAt,
          g.checks,
          pulumi.all([g.pid, g.accel, g.bootSeconds, g.consoleLog, g.snpHostData, g.hostData, g.runtimeInstanceId]),
        ])
        .apply(
          ([
            measurement,
            launchMeasurement,
            tlsKeySha256,
            simulated,
            verifiedBy,
            verifiedAt,
            checks,
            [pid, accel, bootSeconds, consoleLog, snpHostData, hostData, runtimeInstanceId],
          ]) => ({
            platform: VHSM_LOCAL_PLATFORM,
            expectedMeasurement: local.expectedMeasurement,
            measurement,
            launchMeasurement,
            snpHostData,
            hostData: hostData ?? "",
            runtimeInstanceId: runtimeInstanceId ?? "",
            kernelMeasured: local.kernelMeasured,
            tlsKeySha256,
            simulated,
            verifiedBy,
            verifiedAt,
            checks,
            pid,
            accel,
            bootSeconds,
            consoleLog,
          }),
        );
      this.registerOutputs({
        url: this.url,
        caFingerprint: this.caFingerprint,
        caPem: this.caPem,
        rootToken: this.rootToken,
        deployer: this.deployer,
        recoveryShares: this.recoveryShares,
        workloadAudience: this.workloadAudience,
        attestation: this.attestation,
        measurement: this.measurement,
        tlsKeySha256: this.tlsKeySha256,
        attestationSummary: this.attestationSummary,
      });
      return;
    }

    const workers = args.workers ?? (mode === VhsmMode.Process ? 1 : "auto");
    const tls = args.tls ?? true;
    const listenAddress = args.listenAddress ?? (mode === VhsmMode.Process ? "127.0.0.1" : "0.0.0.0");
    const publicHost = pulumi.output(args.publicHost ?? (mode === VhsmMode.Process ? "127.0.0.1" : args.ssh!.host));
    const url = publicHost.apply((h) => `${tls ? "https" : "http"}://${h.includes(":") ? `[${h}]` : h}:${port}`);
    const command =
      args.command ??
      (mode === VhsmMode.Process
        ? [process.execPath, path.join(PACKAGE_ROOT, "bin", "buckypaper.js")]
        : ["buckypaper"]);
    const service = new RuntimeService(
      `${name}-runtime`,
      {
        ssh: args.ssh,
        stateDir,
        serverCommand: [...command, "runtime", "server", "--config", "{config}"],
        config: pulumi.all([publicHost, url]).apply(([h, u]) =>
          renderRuntimeConfig({
            stateDir,
            listenAddress,
            port,
            tls,
            publicHost: h,
            ...(args.tlsHosts?.length ? { extraTlsHosts: args.tlsHosts } : {}),
            publicUrl: u,
            workers,
            ...(args.auditLog ? { auditLog: true } : {}),
          }),
        ),
        url,
        ...bootstrap,
      },
      { parent: this },
    );
    this.url = service.url;
    this.caFingerprint = service.caFingerprint;
    this.caPem = service.caPem;
    // Typed as always present for the connection types; undefined with / without the opt-out respectively.
    this.rootToken = pulumi.secret(service.rootToken) as pulumi.Output<string>;
    this.deployer = service.deployer as pulumi.Output<DeployerAuthArgs>;
    this.recoveryShares = service.recoveryShares as pulumi.Output<string[]>;
    this.workloadAudience = service.workloadAudience.apply((a) => a ?? "");
    this.attestation = pulumi.output(undefined) as unknown as pulumi.Output<RuntimeAttestationArgs>;
    this.measurement = pulumi.output("");
    this.tlsKeySha256 = pulumi.output("");
    this.attestationSummary = pulumi.output(undefined);
    this.registerOutputs({
      url: this.url,
      caFingerprint: this.caFingerprint,
      caPem: this.caPem,
      rootToken: this.rootToken,
      deployer: this.deployer,
      recoveryShares: this.recoveryShares,
      workloadAudience: this.workloadAudience,
    });
  }

  /** Mode confidential-vm on qemu or proxmox: the runtime image's VM on SEV-SNP hardware, verified, bootstrapped. */
  private deployHardwareGuest(
    name: string,
    args: VhsmArgs,
    o: {
      stateDir: string;
      port: number;
      vcpus: number;
      memoryMb: number;
      dataDiskGb: number;
      bootstrap: RuntimeBootstrapArgs;
    },
  ): VhsmParts {
    const who = `Vhsm ${name}`;
    const guestName = `${name}`
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, "-")
      .slice(0, 40);
    const image = hardwareRuntimeImage(who, "image", args.image!);
    const cpuModel = args.cpuModel ?? "EPYC-v4";
    if (cpuModel === "host")
      throw new ConfigError(
        who,
        "cpuModel",
        "'host' makes the SNP measurement depend on the host's CPU; name a model",
        ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin"],
      );
    let g: {
      expectedMeasurement: string;
      url: pulumi.Output<string>;
      attestation: RuntimeAttestationArgs;
      launch: pulumi.Output<string>;
      vm: pulumi.Resource;
    };
    let where: string;
    if (args.platform === VhsmPlatform.Qemu) {
      // HOST_DATA names this deployment's instance: verifiers refuse the same image launched under other names.
      const hostData =
        args.hostData ??
        createHash("sha256")
          .update(["buckypaper-vhsm-instance", pulumi.getProject(), pulumi.getStack(), name].join("\0"))
          .digest("hex");
      const q = qemuVhsmGuest(this, {
        who,
        name: guestName,
        ssh: args.ssh!,
        image,
        ...(args.firmware ? { firmware: args.firmware } : {}),
        vcpus: o.vcpus,
        memoryMb: o.memoryMb,
        cpuModel,
        dataDiskGb: o.dataDiskGb,
        port: o.port,
        listenAddress: args.listenAddress ?? "0.0.0.0",
        ...(args.publicHost !== undefined ? { publicHost: args.publicHost } : {}),
        hostData,
        remoteDir: o.stateDir,
      });
      g = q;
      where = `QEMU/KVM host, unit ${q.unit} (journalctl -u ${q.unit} on the host: the guest's console)`;
    } else {
      const p = proxmoxVhsmGuest(this, {
        who,
        name: guestName,
        ssh: args.ssh!,
        node: args.node!,
        vmid: args.vmid!,
        image,
        firmware: args.firmware!,
        cores: o.vcpus,
        memoryMb: o.memoryMb,
        cpuModel,
        dataDiskGb: o.dataDiskGb,
        storage: args.storage ?? "local-lvm",
        bridge: args.bridge ?? "vmbr0",
        ...(args.macAddress ? { macAddress: args.macAddress } : {}),
        publicHost: args.publicHost!,
        allowSmt: true,
        remoteBootDir: o.stateDir,
      });
      g = p;
      where = `Proxmox VE node ${args.node}, VM ${args.vmid} (qm terminal ${args.vmid}: the guest's console)`;
    }
    pulumi.log.info(
      `measured the vHSM runtime guest (${args.platform}): the image's firmware/kernel/initrd/cmdline (dm-verity root hash ${image.manifest.verity.rootHash.slice(0, 16)}…), ${o.vcpus} × ${cpuModel} → ${g.expectedMeasurement.slice(0, 16)}…`,
      this,
    );
    return this.bootstrapAttested(name, args.platform!, o.bootstrap, {
      url: g.url,
      attestation: g.attestation,
      launch: g.launch,
      vm: g.vm,
      expectedMeasurement: g.expectedMeasurement,
      snpHostData: (g.attestation.snpHostData as string | undefined) ?? "", // a plain string here
      where: pulumi.output(where),
      accel: "kvm (SEV-SNP)",
    });
  }

  /**
   * Mode confidential-vm on aws or gcp: the runtime's cloud disk on an SEV-SNP instance, its OS bound through the
   * cloud's vTPM (components/aws/vhsm-guest.ts, components/gcp/vhsm-guest.ts), verified and bootstrapped.
   */
  private deployCloudGuest(name: string, args: VhsmArgs, bootstrap: RuntimeBootstrapArgs): VhsmParts {
    const who = `Vhsm ${name}`;
    const guestName = `${name}`
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, "-")
      .slice(0, 40);
    const aws = args.platform === VhsmPlatform.Aws;
    // The runtime's data volume (a blank disk its image formats on first boot): default 10 GiB (GCE's minimum).
    const dataDisk = (min: number, max: number) => {
      const v = args.dataDiskGb ?? 10;
      if (!Number.isInteger(v) || v < min || v > max)
        throw new ConfigError(who, "dataDiskGb", `is ${v}; must be an integer ${min}..${max} on ${args.platform}`);
      return v;
    };
    const azure = args.platform === VhsmPlatform.Azure;
    const g = azure
      ? azureVhsmGuest(this, {
          who,
          name: guestName,
          image: args.image!,
          cloudImageId: args.cloudImageId!,
          vmSize: args.size ?? "Standard_DC2as_v5",
          resourceGroupName: args.resourceGroupName!,
          ...(args.location !== undefined ? { location: args.location } : {}),
          subnetId: args.subnetId!,
          ...(args.publicHost !== undefined ? { publicHost: args.publicHost } : {}),
          paravisorMeasurements: args.paravisorMeasurements!,
          ...(args.dbCertificates !== undefined ? { dbCertificates: args.dbCertificates } : {}),
          ...(args.allowSerialConsole !== undefined ? { allowSerialConsole: args.allowSerialConsole } : {}),
          osDiskSizeGb: 30,
          dataDiskGb: dataDisk(1, 32767),
        })
      : aws
        ? awsVhsmGuest(this, {
            who,
            name: guestName,
            image: args.image!,
            cloudImageId: args.cloudImageId!,
            instanceType: args.size ?? "m6a.large",
            ...(args.region !== undefined ? { region: args.region } : {}),
            subnetId: args.subnetId,
            securityGroupIds: args.securityGroupIds,
            ...(args.publicHost !== undefined ? { publicHost: args.publicHost } : {}),
            ...(args.akPins !== undefined ? { akPins: args.akPins } : {}),
            ...(args.dbCertificates !== undefined ? { dbCertificates: args.dbCertificates } : {}),
            rootVolumeSizeGb: 16,
            dataDiskGb: dataDisk(1, 16384),
            acceptLegacyLayout: true,
          })
        : gcpVhsmGuest(this, {
            who,
            name: guestName,
            image: args.image!,
            cloudImageId: args.cloudImageId!,
            machineType: args.size ?? "n2d-standard-2",
            zone: args.zone!,
            network: args.network,
            subnetwork: args.subnetwork,
            ...(args.publicHost !== undefined ? { publicHost: args.publicHost } : {}),
            bootDiskSizeGb: 20,
            dataDiskGb: dataDisk(10, 65536),
            ...(args.dbCertificates !== undefined ? { dbCertificates: args.dbCertificates } : {}),
            firmwareEndorsement: args.firmwareEndorsement!,
            gceTcbRootPem: args.gceTcbRootPem!,
            ...(args.minFirmwareSvn !== undefined ? { minFirmwareSvn: args.minFirmwareSvn } : {}),
          });
    pulumi.log.info(
      `vHSM runtime guest (${args.platform}): SNP launch digest of the cloud's firmware for ${g.vcpus} vCPUs → ${g.expectedMeasurements[0]!.slice(0, 16)}… (the same for every VM of this size); OS bound by the vTPM boot policy predicted from the disk's UKI ${g.image.ukiSha256.slice(0, 16)}… (dm-verity root ${g.image.manifest.verity.rootHash.slice(0, 16)}…)`,
      this,
    );
    return this.bootstrapAttested(name, args.platform!, bootstrap, {
      url: g.url,
      attestation: g.attestation,
      launch: g.launch,
      vm: g.vm,
      expectedMeasurement: g.expectedMeasurements[0]!,
      snpHostData: "",
      where: g.where,
      accel: `${aws ? "EC2" : azure ? "Azure CVM" : "GCE"} SEV-SNP (${g.vcpus} vCPUs)`,
      osBinding: azure
        ? `vTPM: the Azure paravisor's HCL report (SNP report over runtime claims with the vTPM AK, vm-configuration and this runtime's binding as user-data), the HCL AK's quote over it, and the event log meeting the boot policy predicted from the runtime disk's UKI (SHA-256 bank, Secure Boot under the dbCertificates authority); vm-configuration: Secure Boot on${args.allowSerialConsole ? "" : ", serial console off"}, vmUniqueId of this VM; the SNP digest names only Microsoft's paravisor for ${g.vcpus} vCPUs`
        : aws
          ? args.akPins?.length
            ? `vTPM: NitroTPM quote + event log meeting the boot policy predicted from the runtime disk's UKI (SHA-256 bank), signed by a pinned AK (akPins: as trustworthy as the channel it was obtained over); the SNP digest names only EC2's firmware and ${g.vcpus} vCPUs`
            : g.image.ak === "runtime-ak"
              ? `vTPM: NitroTPM quote + event log meeting the boot policy predicted from the runtime disk's UKI (SHA-256 bank), by an AK proven by EK credential activation against this instance's EK from EC2 GetInstanceTpmEkPub (the EK vouched for by the EC2 API alone); the SNP digest names only EC2's firmware and ${g.vcpus} vCPUs`
              : `vTPM: NitroTPM quote + event log meeting the boot policy predicted from the runtime disk's UKI (SHA-384 bank), the PCRs authenticated by the NitroTPM attestation document (AWS Nitro PKI) whose module_id must be this instance; the SNP digest names only EC2's firmware and ${g.vcpus} vCPUs`
          : `vTPM: a quote by the AK Google's EK/AK CA certified for this instance (project, zone, instance id), event log meeting the boot policy predicted from the runtime disk's UKI (SHA-256 bank); the SNP digest is Google's endorsed firmware for ${g.vcpus} vCPUs (SVN ${(g as { svn?: number }).svn ?? "?"})`,
      unseal: CLOUD_UNSEAL,
    });
  }

  /** AttestedRuntime for a runtime VM: verify, init, unseal with the shares, bootstrap the deployer (trust-bootstrap.md). */
  private bootstrapAttested(
    name: string,
    platform: string,
    bootstrap: RuntimeBootstrapArgs,
    g: {
      url: pulumi.Output<string>;
      attestation: pulumi.Input<RuntimeAttestationArgs>;
      launch: pulumi.Output<string>;
      vm: pulumi.Resource;
      expectedMeasurement: string;
      snpHostData: string;
      where: pulumi.Output<string>;
      accel: string;
      osBinding?: string;
      unseal?: string;
    },
  ): VhsmParts {
    const rt = new AttestedRuntime(
      `${name}-runtime`,
      { url: g.url, attestation: g.attestation, launch: g.launch, ...bootstrap },
      { parent: this, dependsOn: [g.vm] },
    );
    return {
      url: rt.url,
      rootToken: pulumi.secret(rt.rootToken) as pulumi.Output<string>,
      deployer: rt.deployer as pulumi.Output<DeployerAuthArgs>,
      recoveryShares: rt.recoveryShares as pulumi.Output<string[]>,
      workloadAudience: rt.workloadAudience.apply((a) => a ?? ""),
      // Usable once the runtime was verified and bootstrapped (outputs of the resource): the instance id its
      // evidence bound after init is required from then on, so a twin of the runtime is refused.
      attestation: pulumi
        .all([rt.measurement, rt.runtimeInstanceId, g.attestation])
        .apply(([, runtimeInstanceId, attestation]) => ({
          ...attestation,
          ...(runtimeInstanceId ? { runtimeInstanceId } : {}),
        })) as pulumi.Output<RuntimeAttestationArgs>,
      measurement: rt.measurement,
      tlsKeySha256: rt.tlsKeySha256,
      attestationSummary: pulumi
        .all([
          rt.measurement,
          rt.tlsKeySha256,
          rt.simulated,
          rt.verifiedBy,
          rt.verifiedAt,
          rt.checks,
          pulumi.all([rt.hostData, rt.runtimeInstanceId, g.where]),
        ])
        .apply(
          ([
            measurement,
            tlsKeySha256,
            simulated,
            verifiedBy,
            verifiedAt,
            checks,
            [hostData, runtimeInstanceId, where],
          ]): VhsmAttestationSummary => ({
            platform,
            expectedMeasurement: g.expectedMeasurement,
            measurement,
            // On hardware the PSP measured the launch and its report says so: the reported value is the launch's.
            launchMeasurement: measurement,
            snpHostData: g.snpHostData,
            hostData: hostData ?? "",
            runtimeInstanceId: runtimeInstanceId ?? "",
            kernelMeasured: true,
            tlsKeySha256,
            simulated,
            verifiedBy,
            verifiedAt,
            checks,
            pid: 0,
            accel: g.accel,
            bootSeconds: 0,
            consoleLog: where,
            ...(g.osBinding ? { osBinding: g.osBinding } : {}),
            ...(g.unseal ? { unseal: g.unseal } : {}),
          }),
        ),
    };
  }
}
