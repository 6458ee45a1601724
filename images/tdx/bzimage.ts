// QEMU's x86_load_linux() writes into the kernel's setup header before handing it to the firmware via
// fw_cfg, and OVMF measures those patched bytes. QEMU ≥ 10 also exposes the unpatched kernel
// (fw_cfg "etc/boot/kernel"), which firmware that knows the file measures instead.
// Only the "high and recent" kernel layout (boot protocol ≥ 2.02, LOADED_HIGH) is modelled — every
// EFI-stub kernel has it.
import { TdxInputError } from "./errors.js";
import { q35RamSplit } from "./memory.js";

const REAL_ADDR = 0x10000;
const CMDLINE_ADDR = 0x20000;
/** pcmc->acpi_data_size for current pc/q35 machine types: RAM QEMU keeps below the initrd for ACPI. */
export const QEMU_ACPI_DATA_SIZE = 0x20000 + 0x8000;
const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;

/** Returns a copy of the bzImage with QEMU's setup-header writes applied. */
export function qemuPatchKernel(kernel: Buffer, initrdSize: number, memory: number | undefined): Buffer {
  if (kernel.length < 0x1000 || kernel.toString("latin1", 0x202, 0x206) !== "HdrS") {
    throw new TdxInputError("kernel", "not a Linux bzImage (no 'HdrS' setup header)");
  }
  const protocol = kernel.readUInt16LE(0x206);
  if (protocol < 0x202 || (kernel[0x211] & 0x01) === 0) {
    throw new TdxInputError("kernel", `boot protocol 0x${protocol.toString(16)} without LOADED_HIGH is not modelled`);
  }
  const k = Buffer.from(kernel);
  k[0x210] = 0xb0; // type_of_loader: QEMU
  k[0x211] |= 0x80; // loadflags |= CAN_USE_HEAP
  k.writeUInt16LE(CMDLINE_ADDR - REAL_ADDR - 0x200, 0x224); // heap_end_ptr
  k.writeUInt32LE(CMDLINE_ADDR, 0x228); // cmd_line_ptr
  if (initrdSize > 0) {
    if (memory === undefined)
      throw new TdxInputError(
        "memory",
        "needed: QEMU places the initrd below the top of low RAM, and the address is written into the measured kernel",
      );
    let initrdMax: number;
    if (protocol >= 0x20c && (k.readUInt16LE(0x236) & XLF_CAN_BE_LOADED_ABOVE_4G) !== 0) initrdMax = 0xffff_ffff;
    else if (protocol >= 0x203) initrdMax = k.readUInt32LE(0x22c);
    else initrdMax = 0x37ff_ffff;
    const lowTop = q35RamSplit(memory).below4g - QEMU_ACPI_DATA_SIZE;
    if (initrdMax >= lowTop) initrdMax = lowTop - 1;
    if (initrdSize >= initrdMax)
      throw new TdxInputError(
        "initrd",
        `${initrdSize} bytes do not fit below 0x${initrdMax.toString(16)} with this memory size`,
      );
    k.writeUInt32LE(Number(BigInt(initrdMax - initrdSize) & ~4095n), 0x218); // ramdisk_image
    k.writeUInt32LE(initrdSize, 0x21c); // ramdisk_size
  }
  return k;
}
