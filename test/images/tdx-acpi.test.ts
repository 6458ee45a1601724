// ACPI blobs read from a real QEMU (qtest, fw_cfg DMA and I/O ports) and RTMR[0] computed from them.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { haveCommand, requireTool } from "../support/prereq.js";
import { hasShared, sharedPath } from "../support/shared.js";
import { TdxInputError, dumpQemuAcpi, measureTdx, readFwCfgFiles, type QemuAcpiBlobs } from "../../images/tdx/index.js";
import { main } from "../../cli/main.js";

const QEMU = "qemu-system-x86_64";
const haveQemu = requireTool("QEMU (qemu-system-x86)", haveCommand(QEMU, ["--version"]));
const ARGS = ["-machine", "q35", "-smp", "2", "-m", "2G", "-nodefaults"];

/** ACPI table signatures found at 4-byte boundaries of the tables blob. */
function signatures(tables: Buffer): string[] {
  const found = new Set<string>();
  for (const sig of ["FACS", "DSDT", "FACP", "APIC", "HPET", "WAET"])
    if (tables.includes(Buffer.from(sig, "latin1"))) found.add(sig);
  return [...found];
}

describe.skipIf(!haveQemu)("QEMU ACPI blobs for RTMR[0]", () => {
  let blobs: QemuAcpiBlobs;

  it("reads etc/table-loader, etc/acpi/rsdp and etc/acpi/tables from a stopped q35 QEMU", async () => {
    blobs = await dumpQemuAcpi({ args: ARGS });
    expect(blobs.rsdp.toString("latin1", 0, 8)).toBe("RSD PTR ");
    expect(signatures(blobs.tables)).toEqual(expect.arrayContaining(["FACS", "DSDT", "FACP", "APIC"]));
    // BIOS linker/loader: 128-byte commands; the first ALLOCATEs (command 1) a named fw_cfg file.
    expect(blobs.tableLoader.length % 128).toBe(0);
    expect(blobs.tableLoader.readUInt32LE(0)).toBe(1);
    expect(blobs.tableLoader.toString("latin1", 4, 60).replace(/\0.*$/s, "")).toMatch(/^etc\/acpi\/(rsdp|tables)$/);
  });

  it("gets the same bytes through fw_cfg DMA and byte-wise I/O ports", async () => {
    // The 128 KiB tables blob byte by byte takes long; the loader script and RSDP exercise the same paths.
    const slow = await readFwCfgFiles({ args: ARGS, ioPortsOnly: true }, ["etc/table-loader", "etc/acpi/rsdp"]);
    expect(slow.get("etc/table-loader")!.equals(blobs.tableLoader)).toBe(true);
    expect(slow.get("etc/acpi/rsdp")!.equals(blobs.rsdp)).toBe(true);
  });

  it("yields tables (and RTMR[0]) that change with the vCPU count", async () => {
    const four = await dumpQemuAcpi({ args: ["-machine", "q35", "-smp", "4", "-m", "2G", "-nodefaults"] });
    expect(four.tables.equals(blobs.tables)).toBe(false);
    if (!hasShared) return;
    const fw = readFileSync(sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd"));
    const r2 = measureTdx({ firmware: fw, memory: 2 * 1024 ** 3, acpi: blobs });
    const r4 = measureTdx({ firmware: fw, memory: 2 * 1024 ** 3, acpi: four });
    expect(r2.rtmr0).toMatch(/^[0-9a-f]{96}$/);
    expect(r4.rtmr0).not.toBe(r2.rtmr0);
    expect(r2.registers.rtmr0.events.slice(0, 2).map((e) => e.event)).toEqual([
      "TD HOB",
      "CFV (configuration firmware volume)",
    ]);
  });

  it("refuses launch-only arguments and reports QEMU's own error", async () => {
    await expect(dumpQemuAcpi({ args: ["-machine", "q35", "-object", "tdx-guest,id=tdx"] })).rejects.toThrow(
      /'-object' is not accepted/,
    );
    await expect(dumpQemuAcpi({ args: ["-machine", "bogus"] })).rejects.toThrow(TdxInputError);
    await expect(dumpQemuAcpi({ args: ["-machine", "bogus"] })).rejects.toThrow(/unsupported machine type/);
    await expect(dumpQemuAcpi({ qemu: "/nonexistent/qemu", args: ARGS })).rejects.toThrow(/cannot start/);
  });

  it.skipIf(!hasShared)("is wired into `measure tdx --acpi-qemu-args`", async () => {
    const out: string[] = [],
      err: string[] = [];
    const io = { out: (t: string) => out.push(t), err: (t: string) => err.push(t) };
    const fw = sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd");
    expect(
      await main(
        ["measure", "tdx", "--firmware", fw, "--memory", "2G", "--acpi-qemu-args=-machine q35 -smp 2 -nodefaults"],
        io,
      ),
    ).toBe(0);
    const viaCli = JSON.parse(out.join("")).rtmr0;
    expect(viaCli).toBe(measureTdx({ firmware: readFileSync(fw), memory: 2 * 1024 ** 3, acpi: blobs }).rtmr0);
    expect(await main(["measure", "tdx", "--firmware", fw, "--acpi-qemu-args=-machine q35 -enable-kvm"], io)).toBe(2);
    expect(err.join("")).toMatch(/--acpi-qemu-args: '-enable-kvm' is not accepted/);
  });
});
