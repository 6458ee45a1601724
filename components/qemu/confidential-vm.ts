// A confidential guest on a plain QEMU/KVM host reached over SSH: boot inputs are uploaded, a NoCloud
// seed is built there from the rendered user-data, and QEMU runs as a transient systemd unit.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { ConfigError } from "../common/errors.js";
import { expectedQemuLaunch, type BootInputsArgs } from "../common/boot-measure.js";
import { registerGuest } from "../common/guest.js";
import { requireSecretMap } from "../common/secrets.js";
import { sshConnection } from "../common/ssh.js";
import { shellQuote } from "../../provider/shell.js";
import { Platform, Tee, type DataVolumeArgs, type SshHostArgs, type VhsmConnectionArgs } from "../common/types.js";
import { qemuGuestArgv } from "./settings.js";
import { noCloudSeed, systemdRunGuest, uploadToHost } from "./host.js";

export interface QemuConfidentialVmArgs {
  /** Refuse classical-only attestations: the workload's secrets are released only sealed with hybrid
   *  ML-KEM-768 + P-384 (Nitride require_pq_hybrid, docs/post-quantum.md). Default false. */
  requirePqHybrid?: boolean;
  vhsm: VhsmConnectionArgs;
  ssh: SshHostArgs;
  tee?: Tee;
  vcpus?: number;
  memoryMb?: number;
  /** QEMU CPU model (default EPYC-v4 for SNP, host for TDX). */
  cpuModel?: string;
  boot: BootInputsArgs;
  /** Boot disk image already on the host (qcow2). */
  diskPath?: string;
  /** Working directory on the host (default /var/lib/buckypaper/vms/<name>). */
  remoteDir?: string;
  secrets?: Record<string, pulumi.Input<string>>;
  dataVolume?: DataVolumeArgs;
  /** The boot disk is the kit image, which runs the enclaivelet before cloud-init: the user-data is
   *  measured (its SHA-256 registered and bound into the evidence; changed user-data is refused). */
  agentInImage?: boolean;
}

export class QemuConfidentialVm extends pulumi.ComponentResource {
  public readonly unitName: pulumi.Output<string>;
  public readonly workloadId: pulumi.Output<string>;
  public readonly expectedMeasurements: pulumi.Output<string[]>;

  constructor(name: string, args: QemuConfidentialVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:QemuConfidentialVm", name, args, opts);
    const who = `QemuConfidentialVm ${name}`;
    if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(name))
      throw new ConfigError(who, "name", "must be lower-case letters, digits and '-' (it names a systemd unit)");
    const tee = args.tee ?? Tee.SevSnp;
    const vcpus = args.vcpus ?? 2;
    const memoryMb = args.memoryMb ?? 2048;
    const cpuModel = args.cpuModel ?? (tee === Tee.SevSnp ? "EPYC-v4" : "host");
    const connection = sshConnection(who, "ssh", args.ssh);
    const secrets = requireSecretMap(who, "secrets", args.secrets);
    const expected = expectedQemuLaunch(who, tee, args.boot, vcpus, cpuModel, memoryMb);
    // The data disk is the third virtio disk (/dev/vdc, where the user-data unlocks it): boot disk first.
    if (args.dataVolume && !args.diskPath)
      throw new ConfigError(
        who,
        "dataVolume",
        "needs diskPath (the data disk is attached after the boot disk and the seed, as /dev/vdc)",
      );
    const guest = registerGuest(this, name, {
      platform: Platform.Qemu,
      tee,
      workloadId: `${pulumi.getStack()}-${name}`,
      evidencePlatform: tee === Tee.SevSnp ? "snp" : "tdx",
      reference: expected.reference,
      policy: expected.policy,
      vhsm: args.vhsm,
      requirePqHybrid: args.requirePqHybrid,
      secrets,
      dataVolume: args.dataVolume,
      dataVolumeDevice: "/dev/vdc",
      hostname: name,
      agentInImage: args.agentInImage,
    });

    const dir = args.remoteDir ?? `/var/lib/buckypaper/vms/${name}`;
    // The VM starts only after its boot files are on the host (the argv names plain paths: no implicit dependency).
    const uploads: pulumi.Resource[] = [];
    const upload = (local: string | undefined, file: string) =>
      uploadToHost(this, name, connection, dir, local, file, uploads);
    const firmwarePath = upload(args.boot.firmware, "firmware.fd")!;
    const kernelPath = upload(args.boot.kernel, "vmlinuz");
    const initrdPath = upload(args.boot.initrd, "initrd.img");
    const seed = noCloudSeed(this, name, connection, dir, guest.userData);
    // The data volume's disk: created once (empty; the enclaivelet formats it as LUKS2 after attestation)
    // and kept when the VM is replaced, so its data survive a re-deploy.
    let dataDisk: command.remote.Command | undefined;
    if (args.dataVolume)
      dataDisk = new command.remote.Command(
        `${name}-data-disk`,
        {
          connection,
          create: pulumi
            .output(args.dataVolume.sizeGb ?? 10)
            .apply(
              (gb) =>
                `mkdir -p ${shellQuote(dir)} && { test -e ${shellQuote(dir)}/data.qcow2 || qemu-img create -q -f qcow2 ${shellQuote(dir)}/data.qcow2 ${Number(gb)}G; }`,
            ),
        },
        { parent: this, retainOnDelete: true },
      );
    const argv = qemuGuestArgv({
      name,
      tee,
      vcpus,
      memoryMb,
      cpuModel,
      firmwarePath,
      kernelPath,
      initrdPath,
      append: args.boot.append,
      diskPath: args.diskPath,
      seedIsoPath: `${dir}/seed.iso`,
      dataDiskPath: args.dataVolume ? `${dir}/data.qcow2` : undefined,
    });
    const unit = `bk-${name}`;
    const vm = systemdRunGuest(
      this,
      name,
      connection,
      unit,
      argv,
      [guest.workloadId],
      [...uploads, seed, guest.workload, ...(dataDisk ? [dataDisk] : [])],
    );

    this.unitName = vm.stdout.apply(() => unit);
    this.workloadId = guest.workloadId;
    this.expectedMeasurements = pulumi.output(expected.measurements);
    this.registerOutputs({
      unitName: this.unitName,
      workloadId: this.workloadId,
      expectedMeasurements: this.expectedMeasurements,
    });
  }
}
