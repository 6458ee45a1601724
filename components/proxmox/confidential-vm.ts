// A confidential VM on a Proxmox VE node (SEV-SNP with measured direct boot, or TDX). The user-data
// snippet is uploaded over SSH (the PVE API cannot upload snippets), then the VM is created with
// `pvesh` as root@pam, which PVE requires for amd-sev / intel-tdx.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { ConfigError } from "../common/errors.js";
import { expectedQemuLaunch, type BootInputsArgs } from "../common/boot-measure.js";
import { registerGuest } from "../common/guest.js";
import { requireSecretMap } from "../common/secrets.js";
import { sshConnection } from "../common/ssh.js";
import { shellQuote } from "../../provider/shell.js";
import { Platform, Tee, type DataVolumeArgs, type SshHostArgs, type VhsmConnectionArgs } from "../common/types.js";
import { proxmoxVmParams } from "./settings.js";
import { pveVm } from "./host.js";
import { uploadToHost } from "../qemu/host.js";

export interface ProxmoxConfidentialVmArgs {
  /** Refuse classical-only attestations: the workload's secrets are released only sealed with hybrid
   *  ML-KEM-768 + P-384 (Nitride require_pq_hybrid, docs/post-quantum.md). Default false. */
  requirePqHybrid?: boolean;
  vhsm: VhsmConnectionArgs;
  /** SSH to the PVE node as root (snippet upload, pvesh). */
  ssh: SshHostArgs;
  /** PVE node name. */
  node: string;
  /** VM id (100 - 999999999). */
  vmid: number;
  /** Default SevSnp (PVE >= 8.4); Tdx needs PVE >= 9.1. */
  tee?: Tee;
  /** vCPUs (default 2). */
  cores?: number;
  memoryMb?: number;
  /** QEMU CPU model (default EPYC-v4 for SNP, host for TDX); part of the SNP measurement. */
  cpuModel?: string;
  storage?: string;
  /** Storage with `snippets` content for the user-data (default local). */
  snippetStorage?: string;
  diskGb?: number;
  /** Cloud image volume to import as the boot disk. */
  importFrom?: string;
  bridge?: string;
  /** Boot inputs as files here; `firmware` must be the node's OVMF (e.g. OVMF_SEV_4M.fd). */
  boot: BootInputsArgs;
  /** Where the kernel/initrd are uploaded on the node (default /var/lib/buckypaper/boot/<vmid>). */
  remoteBootDir?: string;
  secrets?: Record<string, pulumi.Input<string>>;
  dataVolume?: DataVolumeArgs;
  /** SNP: let the guest run with SMT on (policy bit 16). Default true. */
  allowSmt?: boolean;
}

export class ProxmoxConfidentialVm extends pulumi.ComponentResource {
  public readonly vmid: pulumi.Output<number>;
  public readonly workloadId: pulumi.Output<string>;
  public readonly expectedMeasurements: pulumi.Output<string[]>;
  /** The PVE API parameters the VM was created with (strings and numbers; typed `any` because Pulumi's
   * schema analyzer, which other languages' SDKs come from, rejects union types). */
  public readonly parameters: pulumi.Output<Record<string, any>>; // eslint-disable-line @typescript-eslint/no-explicit-any

  constructor(name: string, args: ProxmoxConfidentialVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:ProxmoxConfidentialVm", name, args, opts);
    const who = `ProxmoxConfidentialVm ${name}`;
    const tee = args.tee ?? Tee.SevSnp;
    if (!Number.isInteger(args.vmid) || args.vmid < 100 || args.vmid > 999_999_999)
      throw new ConfigError(who, "vmid", `is ${args.vmid}; must be an integer from 100 to 999999999`);
    if (!/^[a-zA-Z0-9][a-zA-Z0-9.-]*$/.test(args.node))
      throw new ConfigError(who, "node", `'${args.node}' is not a PVE node name`);
    const cores = args.cores ?? 2;
    const memoryMb = args.memoryMb ?? 2048;
    const cpuModel = args.cpuModel ?? (tee === Tee.SevSnp ? "EPYC-v4" : "host");
    if (tee === Tee.SevSnp && cpuModel === "host")
      throw new ConfigError(
        who,
        "cpuModel",
        "'host' makes the SNP measurement depend on the node's CPU; name a model",
        ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin"],
      );
    const connection = sshConnection(who, "ssh", args.ssh);
    const secrets = requireSecretMap(who, "secrets", args.secrets);
    const expected = expectedQemuLaunch(who, tee, args.boot, cores, cpuModel, memoryMb);

    const guest = registerGuest(this, name, {
      platform: Platform.Proxmox,
      tee,
      workloadId: `${pulumi.getStack()}-${name}`,
      evidencePlatform: tee === Tee.SevSnp ? "snp" : "tdx",
      reference: expected.reference,
      policy: expected.policy,
      vhsm: args.vhsm,
      requirePqHybrid: args.requirePqHybrid,
      secrets,
      dataVolume: args.dataVolume,
      dataVolumeDevice: "/dev/sdb",
      hostname: name,
    });

    const snippetStorage = args.snippetStorage ?? "local";
    const snippetFile = `bk-${args.vmid}-user.yaml`;
    // Default `local` storage keeps snippets here; other storages need their own path (documented).
    const snippetPath = `/var/lib/vz/snippets/${snippetFile}`;
    const snippet = new command.remote.Command(
      `${name}-snippet`,
      {
        connection,
        create: `install -D -m 0640 /dev/stdin ${shellQuote(snippetPath)}`,
        stdin: guest.userData,
        delete: `rm -f ${shellQuote(snippetPath)}`,
        triggers: [guest.userData],
      },
      { parent: this },
    );

    const bootDir = args.remoteBootDir ?? `/var/lib/buckypaper/boot/${args.vmid}`;
    const uploads: pulumi.Resource[] = [snippet];
    const remote = (local: string | undefined, file: string) =>
      uploadToHost(this, name, connection, bootDir, local, file, uploads);
    const params = proxmoxVmParams({
      vmid: args.vmid,
      name,
      tee,
      cores,
      memoryMb,
      cpuModel,
      storage: args.storage ?? "local-lvm",
      diskGb: args.diskGb ?? 16,
      importFrom: args.importFrom,
      bridge: args.bridge ?? "vmbr0",
      userDataVolume: `${snippetStorage}:snippets/${snippetFile}`,
      kernelPath: remote(args.boot.kernel, "vmlinuz"),
      initrdPath: remote(args.boot.initrd, "initrd.img"),
      append: args.boot.append,
      allowSmt: args.allowSmt ?? true,
    });
    if (args.dataVolume) params.scsi1 = `${args.storage ?? "local-lvm"}:${args.dataVolume.sizeGb ?? 10}`;

    const vm = pveVm(
      this,
      name,
      connection,
      args.node,
      args.vmid,
      params,
      [guest.workloadId],
      [...uploads, guest.workload],
    );

    this.vmid = vm.stdout.apply(() => args.vmid);
    this.workloadId = guest.workloadId;
    this.expectedMeasurements = pulumi.output(expected.measurements);
    this.parameters = pulumi.output(params);
    this.registerOutputs({
      vmid: this.vmid,
      workloadId: this.workloadId,
      expectedMeasurements: this.expectedMeasurements,
      parameters: this.parameters,
    });
  }
}
