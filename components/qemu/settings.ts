// The QEMU command line of a confidential guest on a plain KVM host (and of the local stack's guest).
// SNP: sev-snp-guest with kernel-hashes=on so firmware + kernel + initrd + cmdline are all in the
// launch digest; TDX: tdx-guest with split irqchip. Both boot one read-only firmware image (-bios).
import { Tee } from "../common/types.js";
import { shellJoin } from "../../provider/shell.js";

export interface QemuGuestInputs {
  name: string;
  tee: Tee;
  vcpus: number;
  memoryMb: number;
  cpuModel: string;
  firmwarePath: string;
  kernelPath?: string;
  initrdPath?: string;
  append?: string;
  diskPath?: string;
  seedIsoPath?: string;
  /** The data volume's disk (LUKS2 in the guest): attached third, so the guest sees it at /dev/vdc —
   *  the device the rendered user-data unlocks. Needs the boot disk and the seed before it. */
  dataDiskPath?: string;
  dataDiskFormat?: "qcow2" | "raw";
  /** Extra options of the user-mode network (e.g. `restrict=on`, `guestfwd=…`), comma-joined. */
  userNetOptions?: string[];
  /** Without the sev-snp-guest object: the local stack's TCG guests (same argv otherwise). Default true. */
  sevObject?: boolean;
  /** SNP guest policy (default 0x30000: SMT allowed, debug and migration agent off). */
  snpPolicy?: number;
  /** SNP HOST_DATA (64 hex digits): sev-snp-guest host-data= (QEMU 9.1+), in every report of the guest. */
  snpHostData?: string;
  /** C-bit position of the host CPU (51 on Milan/Genoa/Turin). */
  cbitpos?: number;
  reducedPhysBits?: number;
  accel?: "kvm" | "tcg";
}

function hostDataProp(hex: string | undefined): string {
  if (hex === undefined) return "";
  if (!/^[0-9a-f]{64}$/i.test(hex)) throw new Error("qemuGuestArgv: snpHostData must be 64 hex digits (32 bytes)");
  return `,host-data=${Buffer.from(hex, "hex").toString("base64")}`;
}

export function qemuGuestArgv(i: QemuGuestInputs): string[] {
  const argv = ["qemu-system-x86_64", "-name", i.name, "-nodefaults", "-nographic", "-serial", "stdio"];
  argv.push("-accel", i.accel ?? "kvm", "-cpu", i.cpuModel, "-smp", String(i.vcpus), "-m", `${i.memoryMb}M`);
  if (i.tee === Tee.SevSnp && i.sevObject === false) {
    argv.push(
      "-machine",
      "q35,memory-backend=ram1",
      "-object",
      `memory-backend-memfd,id=ram1,size=${i.memoryMb}M,share=true,prealloc=false`,
    );
  } else if (i.tee === Tee.SevSnp) {
    argv.push(
      "-machine",
      "q35,confidential-guest-support=sev0,memory-backend=ram1",
      "-object",
      `memory-backend-memfd,id=ram1,size=${i.memoryMb}M,share=true,prealloc=false`,
      "-object",
      `sev-snp-guest,id=sev0,cbitpos=${i.cbitpos ?? 51},reduced-phys-bits=${i.reducedPhysBits ?? 1},policy=0x${(i.snpPolicy ?? 0x30000).toString(16)}${i.kernelPath ? ",kernel-hashes=on" : ""}${hostDataProp(i.snpHostData)}`,
    );
  } else {
    argv.push(
      "-machine",
      "q35,kernel-irqchip=split,confidential-guest-support=tdx0,memory-backend=ram1",
      "-object",
      `memory-backend-memfd,id=ram1,size=${i.memoryMb}M,share=true`,
      "-object",
      "tdx-guest,id=tdx0",
    );
  }
  argv.push("-bios", i.firmwarePath);
  if (i.kernelPath) argv.push("-kernel", i.kernelPath);
  if (i.initrdPath) argv.push("-initrd", i.initrdPath);
  if (i.append !== undefined) argv.push("-append", i.append);
  if (i.diskPath) argv.push("-drive", `file=${i.diskPath},if=virtio,format=qcow2`);
  if (i.seedIsoPath) argv.push("-drive", `file=${i.seedIsoPath},if=virtio,format=raw,readonly=on`);
  if (i.dataDiskPath) {
    // Virtio disks are named in the order they are attached: boot disk vda, seed vdb, data vdc.
    if (!i.diskPath || !i.seedIsoPath)
      throw new Error("qemuGuestArgv: dataDiskPath needs diskPath and seedIsoPath (the data disk must be /dev/vdc)");
    argv.push("-drive", `file=${i.dataDiskPath},if=virtio,format=${i.dataDiskFormat ?? "qcow2"}`);
  }
  argv.push("-netdev", ["user", "id=n0", ...(i.userNetOptions ?? [])].join(","), "-device", "virtio-net-pci,netdev=n0");
  return argv;
}

/** An argv as one command line (provider/shell.ts). */
export { shellJoin };
