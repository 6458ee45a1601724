// Proxmox VE parameters of a confidential VM for POST /nodes/{node}/qemu, as a pure function so they
// can be checked against the official API schema. Facts (proxmox.md): `amd-sev: type=snp` needs
// bios=ovmf and PVE >= 8.4 (root@pam only); `intel-tdx` needs PVE >= 9.1; SNP/TDX boot a single
// read-only firmware image, so no efidisk0. Measured direct boot (kernel-hashes=1) passes the kernel,
// initrd and command line through `args`, which also makes them part of the SNP launch digest.
import { Tee } from "../common/types.js";
import { shellQuote } from "../../provider/shell.js";

export interface ProxmoxVmInputs {
  vmid: number;
  name: string;
  tee: Tee;
  cores: number;
  memoryMb: number;
  /** QEMU CPU model; part of the SNP VMSA, so it must match what the measurement assumed. */
  cpuModel: string;
  storage: string;
  diskGb: number;
  /** Volume of a cloud image to import as the boot disk, e.g. "local:import/debian-12.qcow2". */
  importFrom?: string;
  bridge: string;
  /** Snippet volume holding the user-data, e.g. "local:snippets/bk-web-user.yaml". */
  userDataVolume: string;
  /** Host paths for measured direct boot (SNP kernel-hashes=1 / TDX RTMRs). */
  kernelPath?: string;
  initrdPath?: string;
  append?: string;
  /** SNP: allow SMT on the host (policy bit 16). */
  allowSmt: boolean;
}

export function proxmoxVmParams(i: ProxmoxVmInputs): Record<string, string | number> {
  const p: Record<string, string | number> = {
    vmid: i.vmid,
    name: i.name,
    bios: "ovmf",
    machine: "q35",
    ostype: "l26",
    cpu: i.cpuModel,
    sockets: 1,
    cores: i.cores,
    memory: String(i.memoryMb),
    scsihw: "virtio-scsi-single",
    scsi0: i.importFrom ? `${i.storage}:0,import-from=${i.importFrom}` : `${i.storage}:${i.diskGb}`,
    ide2: `${i.storage}:cloudinit`,
    cicustom: `user=${i.userDataVolume}`,
    citype: "nocloud",
    net0: `virtio,bridge=${i.bridge}`,
    serial0: "socket",
    boot: "order=scsi0",
    onboot: 1,
  };
  if (i.tee === Tee.SevSnp) {
    const kernelHashes = i.kernelPath ? 1 : 0;
    p["amd-sev"] = `type=snp,kernel-hashes=${kernelHashes},no-debug=1,allow-smt=${i.allowSmt ? 1 : 0}`;
  } else {
    p["intel-tdx"] = "type=tdx,attestation=1";
  }
  if (i.kernelPath) {
    const args = [`-kernel ${shellQuote(i.kernelPath)}`];
    if (i.initrdPath) args.push(`-initrd ${shellQuote(i.initrdPath)}`);
    if (i.append !== undefined) args.push(`-append ${shellQuote(i.append)}`);
    p.args = args.join(" ");
  }
  return p;
}

/** Renders params as `pvesh create /nodes/<node>/qemu` flags (values shell-quoted). */
export function pveshCreateCommand(node: string, params: Record<string, string | number>): string {
  const flags = Object.entries(params).map(([k, v]) => `--${k} ${shellQuote(String(v))}`);
  return `pvesh create ${shellQuote(`/nodes/${node}/qemu`)} ${flags.join(" ")}`;
}
