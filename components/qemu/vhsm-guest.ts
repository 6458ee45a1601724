// The Vhsm component's `confidential-vm` mode on a plain QEMU/KVM host with SEV-SNP: the runtime's image (the kit
// image's runtime role built with --runtime-psp sev-guest) booted as a transient systemd unit there, with the
// same argv the workload component gives its guests (components/qemu/settings.ts qemuGuestArgv: sev-snp-guest
// with kernel-hashes=on, the guest policy, HOST_DATA through host-data= — QEMU 9.1+, the first QEMU with SNP).
// The expected measurement is computed at deploy time from the manifest's firmware, kernel, initrd and command
// line for exactly these vCPUs and this vCPU model (= `buckypaper measure snp --manifest`), by the engine that
// computes every workload's.
// Network: QEMU's user-mode network forwards <listenAddress>:<port> on the host to the runtime's listener in the
// guest (hostfwd); the deployer and the workloads reach it at https://<publicHost, default the SSH host>:<port>.
// Disks (virtio, as the image expects): vda a copy-on-write overlay of the verity root, vdb the NoCloud seed
// (meta-data only: cloud-init is masked in the runtime image, and no secret is ever in it), vdc the runtime's
// data disk. The overlay and the data disk live and die with this launch: a new launch is a new runtime.
import * as pulumi from "@pulumi/pulumi";
import type * as command from "@pulumi/command";
import { expectedQemuLaunch } from "../common/boot-measure.js";
import { ConfigError } from "../common/errors.js";
import { LAUNCH_ID, launchOf, runtimeLaunchId, type HardwareRuntimeImage } from "../common/runtime-image.js";
import { sshConnection } from "../common/ssh.js";
import { Tee, type SshHostArgs } from "../common/types.js";
import { shellQuote } from "../../provider/shell.js";
import { RUNTIME_GUEST_PORT } from "../../images/guest/runtime-role.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import { noCloudSeed, systemdRunGuest, uploadToHost } from "./host.js";
import { qemuGuestArgv } from "./settings.js";

export interface QemuVhsmGuestArgs {
  who: string;
  /** Lower-case letters, digits, '-' (it names the systemd unit bk-vhsm-<name>). */
  name: string;
  ssh: SshHostArgs;
  image: HardwareRuntimeImage;
  /** The firmware, when not the image's own AmdSev build (it must have the SNP kernel-hashes table). */
  firmware?: string;
  vcpus: number;
  memoryMb: number;
  cpuModel: string;
  dataDiskGb: number;
  /** Host port forwarded to the runtime's listener, and the address it is bound to on the host. */
  port: number;
  listenAddress: string;
  /** Host name or address in the URL (default: the SSH host). */
  publicHost?: pulumi.Input<string>;
  /** SNP HOST_DATA (64 hex digits) the guest is launched with and the deployer requires. */
  hostData: string;
  /** SNP guest policy (default 0x30000: SMT allowed; debug and migration agent off). */
  snpPolicy?: number;
  remoteDir?: string;
}

export interface QemuVhsmGuest {
  argv: string[];
  expectedMeasurement: string;
  url: pulumi.Output<string>;
  attestation: RuntimeAttestation;
  /** What names this launch (argv, the expected measurement — so the firmware's bytes too —, the image): a change
   *  is another runtime. */
  /** What names this launch: the argv / parameters, the expected measurement and the image, and the id the VM's
   *  creation printed — so a new VM, even from the same inputs (`pulumi up --replace`), is a new runtime. */
  launch: pulumi.Output<string>;
  vm: command.remote.Command;
  unit: string;
}

export function qemuVhsmGuest(parent: pulumi.Resource, a: QemuVhsmGuestArgs): QemuVhsmGuest {
  const connection = sshConnection(a.who, "ssh", a.ssh);
  const firmware = a.firmware ?? a.image.firmware;
  if (!firmware)
    throw new ConfigError(
      a.who,
      "firmware",
      `is required: the image '${a.image.manifestPath}' names no AmdSev firmware (build it with scripts/build-firmware.sh, or give the host's SNP OVMF with the kernel-hashes table)`,
    );
  const expected = expectedQemuLaunch(
    a.who,
    Tee.SevSnp,
    { firmware, kernel: a.image.kernel, initrd: a.image.initrd, append: a.image.append },
    a.vcpus,
    a.cpuModel,
    a.memoryMb,
  ).measurements[0]!;
  const dir = a.remoteDir ?? `/var/lib/buckypaper/vhsm/${a.name}`;
  const uploads: pulumi.Resource[] = [];
  const upload = (local: string, file: string) => uploadToHost(parent, a.name, connection, dir, local, file, uploads)!;
  const firmwarePath = upload(firmware, "firmware.fd");
  const kernelPath = upload(a.image.kernel, "vmlinuz");
  const initrdPath = upload(a.image.initrd, "initrd.img");
  const rootfsPath = upload(a.image.rootfs, "rootfs.img");
  // No user-data: the runtime image masks cloud-init; the seed only keeps the data disk at /dev/vdc.
  const seed = noCloudSeed(parent, a.name, connection, dir, "#cloud-config\n{}\n");
  const argv = qemuGuestArgv({
    name: a.name,
    tee: Tee.SevSnp,
    vcpus: a.vcpus,
    memoryMb: a.memoryMb,
    cpuModel: a.cpuModel,
    firmwarePath,
    kernelPath,
    initrdPath,
    append: a.image.append,
    diskPath: `${dir}/root.qcow2`,
    seedIsoPath: `${dir}/seed.iso`,
    dataDiskPath: `${dir}/data.qcow2`,
    userNetOptions: [`hostfwd=tcp:${a.listenAddress}:${a.port}-:${RUNTIME_GUEST_PORT}`],
    snpHostData: a.hostData,
    ...(a.snpPolicy !== undefined ? { snpPolicy: a.snpPolicy } : {}),
  });
  const unit = `bk-vhsm-${a.name}`;
  const q = shellQuote;
  const launch = runtimeLaunchId(argv, expected, a.image);
  const vm = systemdRunGuest(parent, a.name, connection, unit, argv, [launch], [...uploads, seed], {
    // A fresh overlay of the verity root and a blank data disk for this launch (the runtime formats it).
    before: `rm -f ${q(`${dir}/root.qcow2`)} ${q(`${dir}/data.qcow2`)} && qemu-img create -q -f qcow2 -F raw -b ${q(rootfsPath)} ${q(`${dir}/root.qcow2`)} && qemu-img create -q -f qcow2 ${q(`${dir}/data.qcow2`)} ${a.dataDiskGb}G`,
    after: `rm -f ${q(`${dir}/root.qcow2`)} ${q(`${dir}/data.qcow2`)}`,
    started: LAUNCH_ID,
  });
  const host = pulumi.output(a.publicHost ?? a.ssh.host);
  const url = host.apply((h) => `https://${h.includes(":") ? `[${h}]` : h}:${a.port}`);
  const attestation: RuntimeAttestation = { snpMeasurements: [expected], snpHostData: a.hostData, kds: "online" };
  return { argv, expectedMeasurement: expected, url, attestation, launch: launchOf(launch, vm), vm, unit };
}
