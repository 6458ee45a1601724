// The launcher's stand-in for QEMU's kernel-hashes table (runtime/sim/qemu/launch.ts): which setup-header
// fields QEMU without SEV patches, and that the table is only placed when the firmware verifies kernels.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { kernelHashesLoader, qemuServedKernel, snpLaunchParamsOf } from "../../../runtime/sim/qemu/launch.js";
import { qemuGuestArgv } from "../../../components/qemu/settings.js";
import { Tee } from "../../../components/common/types.js";
import { LocalVmError } from "../../../runtime/sim/localvm/errors.js";
import type { LaunchMeasurement } from "../../../runtime/sim/localvm/psp.js";

const dir = mkdtempSync(path.join(tmpdir(), "bk-qemu-launch-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A minimal bzImage header: protocol 2.15, LOADED_HIGH, initrd allowed above 4 GiB, 1 setup sector. */
function bzImage(): Buffer {
  const k = Buffer.alloc(8192, 0x5a);
  k[0x1f1] = 1;
  k.writeUInt32LE(0x53726448, 0x202);
  k.writeUInt16LE(0x20f, 0x206);
  k[0x210] = 0;
  k[0x211] = 0x01;
  k.writeUInt32LE(0, 0x218);
  k.writeUInt32LE(0, 0x21c);
  k.writeUInt16LE(0, 0x224);
  k.writeUInt32LE(0, 0x228);
  k.writeUInt32LE(0x7fffffff, 0x22c);
  k.writeUInt16LE(1 << 3, 0x236);
  return k;
}

describe("QEMU's setup-header patch without SEV", () => {
  it("writes loader type, heap, command line and initrd fields, and nothing else", () => {
    const k = bzImage();
    const served = qemuServedKernel(k, 4096 * 3 + 1, 1024 * 2 ** 20);
    expect(served[0x210]).toBe(0xb0);
    expect(served[0x211]).toBe(0x81);
    expect(served.readUInt16LE(0x224)).toBe(0x20000 - 0x10000 - 0x200);
    expect(served.readUInt32LE(0x228)).toBe(0x20000);
    // Below 4 GiB minus the 0x28000 bytes of ACPI data, page aligned.
    expect(served.readUInt32LE(0x218)).toBe(Math.floor((0x40000000 - 0x28000 - 1 - (4096 * 3 + 1)) / 4096) * 4096);
    expect(served.readUInt32LE(0x21c)).toBe(4096 * 3 + 1);
    const changed = [...served.keys()].filter((i) => served[i] !== k[i]);
    expect(changed.every((i) => i >= 0x210 && i < 0x22c)).toBe(true);
    expect(k[0x210]).toBe(0); // the input is not modified
  });

  it("refuses what is not a relocatable protocol >= 2.12 bzImage", () => {
    const old = bzImage();
    old.writeUInt16LE(0x20b, 0x206);
    expect(() => qemuServedKernel(old, undefined, 2 ** 30)).toThrow(LocalVmError);
    expect(() => qemuServedKernel(Buffer.alloc(8192), undefined, 2 ** 30)).toThrow(/bzImage/);
  });

  it("places no table for a firmware that does not verify kernels", () => {
    const launch = { kernelMeasured: false } as LaunchMeasurement;
    writeFileSync(path.join(dir, "k"), bzImage());
    expect(kernelHashesLoader(["qemu", "-bios", "/nonexistent", "-kernel", path.join(dir, "k")], launch, dir)).toEqual(
      [],
    );
    expect(() => readFileSync(path.join(dir, "sev-hashes.bin"))).toThrow();
  });
});

describe("the SNP launch parameters on the command line (what the PSP puts in reports)", () => {
  const argv = (o: { snpPolicy?: number; snpHostData?: string; sevObject?: boolean }) =>
    qemuGuestArgv({
      name: "g",
      tee: Tee.SevSnp,
      vcpus: 1,
      memoryMb: 512,
      cpuModel: "EPYC-Milan",
      firmwarePath: "/fw",
      kernelPath: "/k",
      ...o,
    });

  it("reads POLICY and HOST_DATA from the sev-snp-guest object the component renders", () => {
    const hd = "5a".repeat(32);
    const a = argv({ snpPolicy: 0x130000, snpHostData: hd });
    expect(a.find((x) => x.startsWith("sev-snp-guest,"))).toContain(
      `host-data=${Buffer.from(hd, "hex").toString("base64")}`,
    );
    const p = snpLaunchParamsOf(a);
    expect(p.policy).toBe(0x130000n);
    expect(Buffer.from(p.hostData!).toString("hex")).toBe(hd);
    // Without the object (the local stack's TCG guests) the argv says nothing: the launcher's options do.
    expect(snpLaunchParamsOf(argv({ sevObject: false }))).toEqual({});
    expect(() => argv({ snpHostData: "12" })).toThrow(/snpHostData must be 64 hex digits/);
    expect(() => snpLaunchParamsOf(["qemu", "-object", "sev-snp-guest,id=s,host-data=AAAA"])).toThrow(
      /32 bytes, base64/,
    );
  });
});
