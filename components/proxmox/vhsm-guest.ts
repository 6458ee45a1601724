// The Vhsm component's `confidential-vm` mode on a Proxmox VE node with SEV-SNP (PVE >= 8.4, host kernel >= 6.11):
// the runtime's image (the kit image's runtime role built with --runtime-psp sev-guest) as a PVE VM whose
// parameters are the workload component's (components/proxmox/settings.ts proxmoxVmParams: amd-sev type=snp with
// kernel-hashes=1 and no-debug=1, measured direct boot through `args`), with the runtime's disks instead of a
// cloud image and a cloud-init drive. PVE boots its own OVMF (OVMF_SEV_4M.fd): the deployer gives a copy of it
// as `firmware` and the expected measurement is computed from it and the manifest's kernel, initrd and command
// line for exactly these cores and this CPU model. PVE's amd-sev has no HOST_DATA, so the deployer cannot pin
// the instance: the component requires the explicit `allowAnyInstance` (named in every verification).
// Network: the VM's NIC on a PVE bridge; the runtime listens on its port there. The deployer and the workloads
// reach it at https://<publicHost>:8200, publicHost being the address the VM gets on that bridge (a DHCP
// reservation for `macAddress`, or a DNS name).
// Disks (virtio, as the image expects): virtio0 the verity root imported from the uploaded image, virtio1 the
// NoCloud seed (meta-data only: cloud-init is masked in the runtime image), virtio2 the runtime's data disk.
import * as pulumi from "@pulumi/pulumi";
import type * as command from "@pulumi/command";
import { expectedQemuLaunch } from "../common/boot-measure.js";
import { LAUNCH_ID, launchOf, runtimeLaunchId, type HardwareRuntimeImage } from "../common/runtime-image.js";
import { sshConnection } from "../common/ssh.js";
import { Tee, type SshHostArgs } from "../common/types.js";
import { RUNTIME_GUEST_PORT } from "../../images/guest/runtime-role.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import { noCloudSeed, uploadToHost } from "../qemu/host.js";
import { pveVm } from "./host.js";
import { proxmoxVmParams } from "./settings.js";

export interface ProxmoxVhsmGuestArgs {
  who: string;
  name: string;
  ssh: SshHostArgs;
  node: string;
  vmid: number;
  image: HardwareRuntimeImage;
  /** A copy of the node's SNP OVMF (/usr/share/pve-edk2-firmware/OVMF_SEV_4M.fd): what PVE boots. */
  firmware: string;
  cores: number;
  memoryMb: number;
  cpuModel: string;
  dataDiskGb: number;
  storage: string;
  bridge: string;
  macAddress?: string;
  publicHost: pulumi.Input<string>;
  allowSmt: boolean;
  remoteBootDir?: string;
}

export interface ProxmoxVhsmGuest {
  params: Record<string, string | number>;
  expectedMeasurement: string;
  url: pulumi.Output<string>;
  attestation: RuntimeAttestation;
  /** What names this launch: the argv / parameters, the expected measurement and the image, and the id the VM's
   *  creation printed — so a new VM, even from the same inputs (`pulumi up --replace`), is a new runtime. */
  launch: pulumi.Output<string>;
  vm: command.remote.Command;
}

/** The runtime guest's PVE parameters: the workload's, with the runtime's virtio disks and no cloud-init drive. */
export function proxmoxRuntimeVmParams(
  i: Omit<Parameters<typeof proxmoxVmParams>[0], "userDataVolume" | "importFrom" | "diskGb" | "tee"> & {
    rootfsPath: string;
    seedPath: string;
    dataDiskGb: number;
    macAddress?: string;
  },
): Record<string, string | number> {
  const p = proxmoxVmParams({ ...i, tee: Tee.SevSnp, diskGb: 1, userDataVolume: "-" });
  for (const k of ["scsi0", "scsihw", "ide2", "cicustom", "citype"]) delete p[k];
  p.virtio0 = `${i.storage}:0,import-from=${i.rootfsPath}`;
  p.virtio1 = `${i.storage}:0,import-from=${i.seedPath}`;
  p.virtio2 = `${i.storage}:${i.dataDiskGb}`;
  p.boot = "order=virtio0";
  if (i.macAddress) p.net0 = `virtio=${i.macAddress},bridge=${i.bridge}`;
  return p;
}

export function proxmoxVhsmGuest(parent: pulumi.Resource, a: ProxmoxVhsmGuestArgs): ProxmoxVhsmGuest {
  const connection = sshConnection(a.who, "ssh", a.ssh);
  const expected = expectedQemuLaunch(
    a.who,
    Tee.SevSnp,
    { firmware: a.firmware, kernel: a.image.kernel, initrd: a.image.initrd, append: a.image.append },
    a.cores,
    a.cpuModel,
    a.memoryMb,
  ).measurements[0]!;
  const bootDir = a.remoteBootDir ?? `/var/lib/buckypaper/boot/${a.vmid}`;
  const uploads: pulumi.Resource[] = [];
  const upload = (local: string, file: string) =>
    uploadToHost(parent, a.name, connection, bootDir, local, file, uploads)!;
  const kernelPath = upload(a.image.kernel, "vmlinuz");
  const initrdPath = upload(a.image.initrd, "initrd.img");
  const rootfsPath = upload(a.image.rootfs, "rootfs.img");
  // No user-data: the runtime image masks cloud-init; the seed only keeps the data disk at /dev/vdc.
  uploads.push(noCloudSeed(parent, a.name, connection, bootDir, "#cloud-config\n{}\n"));
  const params = proxmoxRuntimeVmParams({
    vmid: a.vmid,
    name: a.name,
    cores: a.cores,
    memoryMb: a.memoryMb,
    cpuModel: a.cpuModel,
    storage: a.storage,
    bridge: a.bridge,
    kernelPath,
    initrdPath,
    append: a.image.append,
    allowSmt: a.allowSmt,
    rootfsPath,
    seedPath: `${bootDir}/seed.iso`,
    dataDiskGb: a.dataDiskGb,
    ...(a.macAddress ? { macAddress: a.macAddress } : {}),
  });
  const launch = runtimeLaunchId(params, expected, a.image);
  const vm = pveVm(parent, a.name, connection, a.node, a.vmid, params, [launch], uploads, LAUNCH_ID);
  const url = pulumi
    .output(a.publicHost)
    .apply((h) => `https://${h.includes(":") ? `[${h}]` : h}:${RUNTIME_GUEST_PORT}`);
  const attestation: RuntimeAttestation = { snpMeasurements: [expected], allowAnyInstance: true, kds: "online" };
  return { params, expectedMeasurement: expected, url, attestation, launch: launchOf(launch, vm), vm };
}
