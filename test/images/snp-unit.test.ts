// Unit behaviour of the SNP engine's parts: vCPU signatures, GUIDs, firmware parsing, the hashes table,
// typed errors naming their field, and the per-vCPU table against single computations.
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  MeasurementInputError,
  PADDED_TABLE_SIZE,
  VCPU_TYPES,
  VMSA_GPA,
  buildVmsa,
  parseFirmwareDescription,
  parseOvmf,
  resolveVcpuSignature,
  sevEsDigest,
  sevEsDigestTable,
  sevHashesTable,
  snpLaunchDigest,
  snpLaunchDigestTable,
  snpOvmfHash,
  vcpuSignature,
  type SnpMeasureInput,
} from "../../images/snp/index.js";
import { guidBytesLe, guidFromBytesLe } from "../../images/snp/guid.js";
import { noteIfSharedMissing, sharedPath } from "../support/shared.js";

const enabled = noteIfSharedMissing("SNP unit tests on vector firmware");
const vec = (n: string) => readFileSync(sharedPath("vectors", n));

function inputError(fn: () => unknown): MeasurementInputError {
  try {
    fn();
  } catch (e) {
    if (e instanceof MeasurementInputError) return e;
    throw new Error(`expected MeasurementInputError, got ${String(e)}`, { cause: e });
  }
  throw new Error("expected MeasurementInputError, nothing was thrown");
}

describe("vCPU signatures", () => {
  it("match CPUID Fn0000_0001_EAX of the named models", () => {
    const sig = (n: string) => resolveVcpuSignature(n).toString(16);
    expect(sig("EPYC")).toBe("800f12");
    expect(sig("EPYC-v4")).toBe("800f12");
    expect(sig("EPYC-Rome")).toBe("830f10");
    expect(sig("EPYC-Milan")).toBe("a00f11");
    expect(sig("EPYC-Genoa")).toBe("a10f10");
    expect(sig("EPYC-Genoa-v2")).toBe("a10f10");
    expect(sig("EPYC-Turin")).toBe("b00f00");
    expect(sig("EPYC-Turin-v1")).toBe("b00f00");
    expect(sig("epyc-milan")).toBe("a00f11");
  });
  it("encodes extended family and model (a real Genoa 9004 host is stepping 1)", () => {
    expect(vcpuSignature(25, 17, 1)).toBe(0xa10f11);
    expect(vcpuSignature(6, 0x8f, 8)).toBe(0x806f8); // family <= 0xF: no extended family
    expect(vcpuSignature(0x10e, 0xff, 0xf)).toBe(0xfff0fff);
    expect(resolveVcpuSignature({ family: 26, model: 0x11, stepping: 0 })).toBe(0xb10f10);
  });
  it("rejects unknown names (listing valid ones) and out-of-range parts, naming the field", () => {
    const e = inputError(() => resolveVcpuSignature("EPYC-Zen7"));
    expect(e.field).toBe("vcpu");
    expect(e.message).toContain(Object.keys(VCPU_TYPES).join(", "));
    expect(inputError(() => vcpuSignature(25, 256, 0)).field).toBe("vcpu.model");
    expect(inputError(() => vcpuSignature(25, 1, 16)).field).toBe("vcpu.stepping");
    expect(inputError(() => resolveVcpuSignature(2 ** 32)).field).toBe("vcpu");
  });
});

describe("GUIDs and the kernel hashes table", () => {
  it("stores GUIDs in EFI (mixed-endian) order", () => {
    const g = "96b582de-1fb2-45f7-baea-a366c55a082d";
    expect(guidBytesLe(g).toString("hex")).toBe("de82b596b21ff745baeaa366c55a082d");
    expect(guidFromBytesLe(guidBytesLe(g))).toBe(g);
  });
  it("lays out the padded table as QEMU does: header, cmdline, initrd, kernel, 8 bytes padding", () => {
    const t = sevHashesTable({ kernel: Buffer.from("K") });
    expect(t.length).toBe(PADDED_TABLE_SIZE);
    expect(PADDED_TABLE_SIZE).toBe(176);
    expect(guidFromBytesLe(t.subarray(0, 16))).toBe("9438d606-4f22-4cc9-b479-a793d411fd21");
    expect(t.readUInt16LE(16)).toBe(168);
    const sha = (b: string | Buffer) => createHash("sha256").update(b).digest();
    expect(guidFromBytesLe(t.subarray(18, 34))).toBe("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");
    expect(t.readUInt16LE(34)).toBe(50);
    expect(t.subarray(36, 68)).toEqual(sha(Buffer.from([0]))); // no cmdline: a lone NUL
    expect(t.subarray(86, 118)).toEqual(sha("")); // no initrd: empty
    expect(t.subarray(136, 168)).toEqual(sha("K"));
    expect(t.subarray(168)).toEqual(Buffer.alloc(8));
    expect(sevHashesTable({ kernel: Buffer.from("K"), append: "ro quiet" }).subarray(36, 68)).toEqual(
      sha("ro quiet\0"),
    );
  });
});

describe("VMSA layout", () => {
  it("puts the reset vector, RDX and SEV_FEATURES where the save area has them", () => {
    const p = buildVmsa({ eip: 0x80b004, vmm: "qemu", vcpuSig: 0xa00f11, sevFeatures: 0x21n });
    expect(p.length).toBe(4096);
    expect(p.readBigUInt64LE(0x10 + 8)).toBe(0x800000n); // cs.base
    expect(p.readBigUInt64LE(0x178)).toBe(0xb004n); // rip
    expect(p.readBigUInt64LE(0x310)).toBe(0xa00f11n); // rdx
    expect(p.readBigUInt64LE(0x3b0)).toBe(0x21n); // sev_features
    expect(p.readUInt32LE(0x408)).toBe(0x1f80); // mxcsr (KVM_SEV_INIT2)
    const bsp = buildVmsa({ eip: 0xfffffff0, vmm: "ec2", vcpuSig: 0xa00f11, sevFeatures: 1n });
    expect(bsp.readBigUInt64LE(0x10 + 8)).toBe(0xffff0000n);
    expect(bsp.readUInt16LE(0x10 + 2)).toBe(0x9a);
    expect(bsp.readBigUInt64LE(0x310)).toBe(0x600n);
    expect(buildVmsa({ eip: 0xfffffff0, vmm: "ec2-legacy", vcpuSig: 1, sevFeatures: 1n }).readBigUInt64LE(0x310)).toBe(
      0n,
    );
    expect(buildVmsa({ eip: 0xfffffff0, vmm: "gce", vcpuSig: 1, sevFeatures: 1n }).readBigUInt64LE(0x268)).toBe(
      0x70106n,
    );
  });
});

describe.skipIf(!enabled)("firmware parsing", () => {
  it("reads Debian bookworm's OVMF.fd: 5 SEV sections, AP reset EIP, no kernel-hashes table", () => {
    const img = parseOvmf(vec("debian-bookworm-ovmf/OVMF.fd"));
    expect(img.gpa).toBe(0xffe00000);
    expect(img.sevMetadata).toEqual([
      { gpa: 0x800000, size: 0x9000, type: 1 },
      { gpa: 0x80a000, size: 0x3000, type: 1 },
      { gpa: 0x80d000, size: 0x1000, type: 2 },
      { gpa: 0x80e000, size: 0x1000, type: 3 },
      { gpa: 0x80f000, size: 0x11000, type: 1 },
    ]);
    expect(img.resetEip).toBe(0x80b004);
    expect(img.hashTableGpa).toBeNull();
  });
  it("reads OVMF_CODE_4M.fd as having no SEV metadata (usable for SEV/SEV-ES, not SNP)", () => {
    const img = parseOvmf(vec("debian-bookworm-ovmf/OVMF_CODE_4M.fd"));
    expect(img.sevMetadata).toBeNull();
    expect(img.resetEip).not.toBeNull();
    expect(inputError(() => snpOvmfHash(img)).field).toBe("ovmf");
    expect(inputError(() => snpLaunchDigest({ ovmf: img, vcpus: 1, vcpu: "EPYC" })).message).toContain(
      "no SEV metadata",
    );
    expect(sevEsDigest({ ovmf: img, vcpus: 2, vcpu: "EPYC" })).toHaveLength(32);
  });
  it("reads the AmdSev build's kernel-hashes section and table address", () => {
    const img = parseOvmf(vec("ovmf_AmdSev_suffix.bin"));
    expect(img.sevMetadata!.find((s) => s.type === 0x10)).toEqual({ gpa: 0x810000, size: 0x1000, type: 0x10 });
    expect(img.hashTableGpa).toBe(0x810c00);
  });
  it("accepts a plain Uint8Array and a parsed image alike", () => {
    const bytes = vec("ovmf_OvmfX64_suffix.bin");
    const a = snpLaunchDigest({ ovmf: new Uint8Array(bytes), vcpus: 2, vcpu: "EPYC" });
    const img = parseOvmf(bytes);
    expect(snpLaunchDigest({ ovmf: img, vcpus: 2, vcpu: "EPYC" })).toEqual(a);
    expect(snpLaunchDigest({ ovmf: img, vcpus: 2, vcpu: "EPYC" })).toEqual(a); // second call: cached firmware hash
  });
});

describe.skipIf(!enabled)("typed input errors name the field", () => {
  const ovmf = () => vec("ovmf_AmdSev_suffix.bin");
  const cases: Array<[string, () => SnpMeasureInput, string]> = [
    ["vcpus 0", () => ({ ovmf: ovmf(), vcpus: 0, vcpu: "EPYC" }), "vcpus"],
    ["vcpus fractional", () => ({ ovmf: ovmf(), vcpus: 1.5, vcpu: "EPYC" }), "vcpus"],
    ["vcpus above the maximum", () => ({ ovmf: ovmf(), vcpus: 4097, vcpu: "EPYC" }), "vcpus"],
    ["no firmware", () => ({ vcpus: 1, vcpu: "EPYC" }), "ovmf"],
    [
      "both firmware forms",
      () => ({
        ovmf: ovmf(),
        firmware: parseFirmwareDescription({ MetadataItems: [{ GPA: 0, Size: 4096, SectionTypeInt: 2 }], ResetEIP: 0 }),
        vcpus: 1,
        vcpu: "EPYC",
      }),
      "ovmf",
    ],
    [
      "seed of the wrong size",
      () => ({ ovmf: ovmf(), ovmfHash: Buffer.alloc(47), vcpus: 1, vcpu: "EPYC" }),
      "ovmfHash",
    ],
    ["initrd without kernel", () => ({ ovmf: ovmf(), initrd: Buffer.alloc(1), vcpus: 1, vcpu: "EPYC" }), "initrd"],
    ["unknown vmm", () => ({ ovmf: ovmf(), vcpus: 1, vcpu: "EPYC", vmm: "azure" as never }), "vmm"],
    [
      "features above 64 bits",
      () => ({ ovmf: ovmf(), vcpus: 1, vcpu: "EPYC", guestFeatures: 1n << 64n }),
      "guestFeatures",
    ],
    ["unaligned VMSA GPA", () => ({ ovmf: ovmf(), vcpus: 1, vcpu: "EPYC", vmsaGpa: 0x1234 }), "vmsaGpa"],
    [
      "hand-built description with an unknown section type",
      () => ({
        firmware: { resetEip: 0x80b004, sections: [{ gpa: 0, size: 4096, type: 9 }], ovmfHash: Buffer.alloc(48) },
        vcpus: 1,
        vcpu: "EPYC",
      }),
      "firmware",
    ],
    [
      "hand-built description with a short seed",
      () => ({
        firmware: { resetEip: 0x80b004, sections: [{ gpa: 0, size: 4096, type: 2 }], ovmfHash: Buffer.alloc(4) },
        vcpus: 1,
        vcpu: "EPYC",
      }),
      "firmware.OVMFHash",
    ],
    ["truncated firmware", () => ({ ovmf: ovmf().subarray(0, 4000), vcpus: 1, vcpu: "EPYC" }), "ovmf"],
  ];
  for (const [name, input, field] of cases) {
    it(name, () => {
      expect(inputError(() => snpLaunchDigest(input())).field).toBe(field);
    });
  }
  it("description JSON errors point into the document", () => {
    expect(
      inputError(() => parseFirmwareDescription('{"MetadataItems":[{"GPA":"0x0","Size":"0x1000"}],"ResetEIP":"0x0"}'))
        .field,
    ).toBe("firmware.MetadataItems[0].SectionTypeInt");
    expect(
      inputError(() =>
        parseFirmwareDescription(
          '{"MetadataItems":[{"GPA":"0x1001","Size":"0x1000","SectionTypeInt":2}],"ResetEIP":"0x0"}',
        ),
      ).message,
    ).toContain("not 4 KiB aligned");
    expect(inputError(() => parseFirmwareDescription('{"MetadataItems":[],"ResetEIP":"0x0"}')).field).toBe(
      "firmware.MetadataItems",
    );
    // KVM populates a page once: overlapping sections cannot launch
    expect(
      inputError(() =>
        parseFirmwareDescription(
          '{"MetadataItems":[{"GPA":"0x800000","Size":"0x9000","SectionTypeInt":1},{"GPA":"0x808000","Size":"0x1000","SectionTypeInt":2}],"ResetEIP":"0x0"}',
        ),
      ).message,
    ).toContain("sections 0 and 1 overlap");
    expect(
      inputError(() =>
        parseFirmwareDescription(
          '{"MetadataItems":[{"GPA":"0x800000","Size":"0x2000","SectionTypeInt":3}],"ResetEIP":"0x0"}',
        ),
      ).message,
    ).toContain("only one-page sections");
    expect(
      inputError(() =>
        parseFirmwareDescription(
          '{"MetadataItems":[{"GPA":"0x0","Size":"0x1000","SectionTypeInt":1}],"ResetEIP":"0x100000000"}',
        ),
      ).field,
    ).toBe("firmware.ResetEIP");
  });
});

describe.skipIf(!enabled)("per-vCPU tables", () => {
  it("1..256 equals 256 single computations for every VMM layout, SVSM and SEV-ES", () => {
    const counts = Array.from({ length: 256 }, (_, i) => i + 1);
    const ovmf = parseOvmf(vec("ovmf_AmdSev_suffix.bin"));
    for (const vmm of ["qemu", "ec2", "ec2-legacy", "gce"] as const) {
      const input = { ovmf, vmm, vcpu: "EPYC-Genoa", guestFeatures: 0x21, kernel: Buffer.from("k"), append: "x" };
      const table = snpLaunchDigestTable(input, counts);
      expect(table.size).toBe(256);
      for (const n of counts) expect(table.get(n), `${vmm} ${n}`).toEqual(snpLaunchDigest({ ...input, vcpus: n }));
    }
    const svsm = { ovmf: parseOvmf(vec("svsm_ovmf.fd")), svsm: vec("svsm.bin"), varsSize: 540672, vcpu: "EPYC-v4" };
    const st = snpLaunchDigestTable(svsm, [1, 2, 4, 64]);
    for (const n of [1, 2, 4, 64]) expect(st.get(n)).toEqual(snpLaunchDigest({ ...svsm, vcpus: n }));
    const es = { ovmf, vcpu: "EPYC-Milan" };
    const et = sevEsDigestTable(es, [1, 3, 100]);
    for (const n of [1, 3, 100]) expect(et.get(n)).toEqual(sevEsDigest({ ...es, vcpus: n }));
  });
  it("the VMSA GPA is part of the digest (default: KVM's 0xFFFFFFFFF000)", () => {
    const base = { ovmf: vec("ovmf_AmdSev_suffix.bin"), vcpus: 2, vmm: "gce" as const };
    expect(VMSA_GPA).toBe(0xffff_ffff_f000);
    expect(snpLaunchDigest({ ...base, vmsaGpa: VMSA_GPA })).toEqual(snpLaunchDigest(base));
    expect(snpLaunchDigest({ ...base, vmsaGpa: 0xf_ffff_ffff_f000 })).not.toEqual(snpLaunchDigest(base));
  });
});

describe.skipIf(!enabled)("corrupted input never crashes: a digest or a MeasurementInputError", () => {
  it("random byte corruption of the footer table and SEV metadata", async () => {
    const fc = await import("fast-check");
    const base = vec("ovmf_AmdSev_suffix.bin");
    const asev =
      base.length - base.readUInt32LE(base.lastIndexOf(Buffer.from("666588dc4a989847a75e5585a7bf67cc", "hex")) - 6);
    const hot = fc.oneof(
      fc.integer({ min: base.length - 256, max: base.length - 1 }),
      fc.integer({ min: asev, max: asev + 16 + 7 * 12 - 1 }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(hot, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        (edits, withKernel) => {
          const b = Buffer.from(base);
          for (const [at, v] of edits) b[at] = v;
          try {
            const d = snpLaunchDigest({
              ovmf: b,
              vcpus: 3,
              vcpu: "EPYC",
              ...(withKernel ? { kernel: Buffer.from("k") } : {}),
            });
            expect(d).toHaveLength(48);
          } catch (e) {
            if (!(e instanceof MeasurementInputError)) throw e;
          }
        },
      ),
      { numRuns: 300, seed: 4242 },
    );
  }, 180_000); // corrupted sizes can legitimately describe up to 4 GiB of pages
  it("arbitrary JSON as a firmware description", async () => {
    const fc = await import("fast-check");
    fc.assert(
      fc.property(fc.oneof(fc.json(), fc.string()), (text) => {
        try {
          snpLaunchDigest({
            firmware: parseFirmwareDescription(text),
            ovmfHash: Buffer.alloc(48),
            vcpus: 2,
            vcpu: "EPYC",
          });
        } catch (e) {
          if (!(e instanceof MeasurementInputError)) throw e;
        }
      }),
      { numRuns: 400, seed: 4243 },
    );
  });
});
