// `buckypaper measure` for SNP/SEV/SEV-ES: every bad input exits 2 with a message and prints no digest;
// tables equal per-count single computations; output formats; the real process exit code.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { main } from "../../cli/main.js";
import { noteIfSharedMissing, repoRoot, sharedPath } from "../support/shared.js";

const enabled = noteIfSharedMissing("measure CLI tests");
const vec = (n: string) => sharedPath("vectors", n);
const DEB = () => vec("debian-bookworm-ovmf/OVMF.fd");
const AMDSEV = () => vec("ovmf_AmdSev_suffix.bin");

async function cli(...argv: string[]) {
  const out: string[] = [],
    err: string[] = [];
  const code = await main(["measure", ...argv], { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out: out.join(""), err: err.join("") };
}

let work = "";
const tmp = (name: string, data: string | Buffer) => {
  const f = path.join(work, name);
  writeFileSync(f, data);
  return f;
};
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), "bk-snp-cli-"));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A copy of Debian's OVMF.fd with `patch` applied. */
function patchedDebian(name: string, patch: (b: Buffer) => Buffer | void): string {
  const b = Buffer.from(readFileSync(DEB()));
  return tmp(name, patch(b) ?? b);
}

describe.skipIf(!enabled)("buckypaper measure: bad input → exit 2, no digest", () => {
  const goodJson = () =>
    JSON.stringify({
      MetadataItems: [
        { GPA: "0x800000", Size: "0x9000", SectionTypeInt: 1 },
        { GPA: "0x80d000", Size: "0x1000", SectionTypeInt: 2 },
        { GPA: "0x80e000", Size: "0x1000", SectionTypeInt: 3 },
      ],
      ResetEIP: "0x80b004",
      OVMFHash: "ba2c811512ef868474f239a21f7d7057d65a20de87a003c4f116e4fb1573183bfbcd75c3e99b2f558575a5d0094f73c6",
    });
  const withJson = (name: string, text: string) => [
    "snp",
    "--ovmf-metadata",
    tmp(name, text),
    "--vcpus",
    "2",
    "--vcpu-type",
    "EPYC-v4",
  ];
  const snp = (...extra: string[]) => ["snp", "--ovmf", DEB(), "--vcpus", "2", "--vcpu-type", "EPYC-v4", ...extra];

  const cases: Array<[string, () => string[], RegExp]> = [
    // firmware without SEV metadata (the reference tool prints a digest for it)
    [
      "Debian OVMF_CODE_4M.fd (no SEV metadata)",
      () => ["snp", "--ovmf", vec("debian-bookworm-ovmf/OVMF_CODE_4M.fd"), "--vcpus", "1", "--vcpu-type", "EPYC-v4"],
      /no SEV metadata/,
    ],
    [
      "snp-ovmf-hash of OVMF_CODE_4M.fd",
      () => ["snp-ovmf-hash", "--ovmf", vec("debian-bookworm-ovmf/OVMF_CODE_4M.fd")],
      /no SEV metadata/,
    ],
    // kernel hashes requested but no hashes section
    ["kernel with Debian OVMF.fd (no SNP_KERNEL_HASHES)", () => snp("--kernel", DEB()), /SNP_KERNEL_HASHES/],
    [
      "kernel with a description lacking the section",
      () => [...withJson("nohash.json", goodJson()), "--kernel", DEB()],
      /SNP_KERNEL_HASHES/,
    ],
    [
      "SEV-ES kernel with Debian OVMF.fd (hash table GPA 0)",
      () => ["seves", "--ovmf", DEB(), "--vcpus", "1", "--vcpu-type", "EPYC", "--kernel", DEB()],
      /hashes table/,
    ],
    ["SEV kernel with Debian OVMF.fd", () => ["sev", "--ovmf", DEB(), "--kernel", DEB()], /hashes table/],
    // vCPU type / count
    [
      "unknown vCPU type lists the valid ones",
      () => ["snp", "--ovmf", DEB(), "--vcpus", "1", "--vcpu-type", "EPYC-Zen9"],
      /unknown vCPU type 'EPYC-Zen9'; valid types: EPYC, .*EPYC-Genoa.*EPYC-Turin/,
    ],
    ["missing vCPU type for QEMU", () => ["snp", "--ovmf", DEB(), "--vcpus", "1"], /vCPU type/],
    ["--vcpus 0", () => snp().map((a) => (a === "2" ? "0" : a)), /below 1/],
    [
      "--vcpus above the platform maximum",
      () => snp().map((a) => (a === "2" ? "4097" : a)),
      /platform maximum of 4096/,
    ],
    ["--vcpus range above the maximum", () => snp().map((a) => (a === "2" ? "1-5000" : a)), /platform maximum/],
    ["--vcpus not a number", () => snp().map((a) => (a === "2" ? "four" : a)), /not a count/],
    ["--vcpus -1", () => ["snp", "--ovmf", DEB(), "--vcpus=-1", "--vcpu-type", "EPYC"], /not a count/],
    ["--vcpus empty range", () => snp().map((a) => (a === "2" ? "8-4" : a)), /empty/],
    ["missing --vcpus", () => ["snp", "--ovmf", DEB(), "--vcpu-type", "EPYC"], /--vcpus is required/],
    ["seves --vcpus 0", () => ["seves", "--ovmf", DEB(), "--vcpus", "0", "--vcpu-type", "EPYC"], /below 1/],
    // malformed / truncated firmware
    [
      "empty firmware file",
      () => ["snp", "--ovmf", tmp("empty.fd", ""), "--vcpus", "1", "--vcpu-type", "EPYC"],
      /too short/,
    ],
    [
      "firmware truncated mid-page",
      () => [
        "snp",
        "--ovmf",
        patchedDebian("cut.fd", (b) => b.subarray(0, b.length - 100)),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
      ],
      /not a multiple of 4 KiB/,
    ],
    [
      "firmware truncated to its first MiB (footer gone)",
      () => [
        "snp",
        "--ovmf",
        patchedDebian("half.fd", (b) => b.subarray(0, 1 << 20)),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
      ],
      /no SEV metadata/,
    ],
    [
      "footer table entry with a bad size",
      () => [
        "snp",
        "--ovmf",
        patchedDebian("badentry.fd", (b) => {
          b.writeUInt16LE(3, b.length - 50 - 18);
        }),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
      ],
      /invalid size|overruns/,
    ],
    [
      "footer table size past the image start",
      () => [
        "snp",
        "--ovmf",
        patchedDebian("badtable.fd", (b) => {
          const t = Buffer.from(b.subarray(b.length - 4096));
          t.writeUInt16LE(0xffff, t.length - 50);
          return t;
        }),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
      ],
      /runs past the start/,
    ],
    [
      "SEV metadata with a wrong signature",
      () => [
        "snp",
        "--ovmf",
        patchedDebian("badsig.fd", (b) => {
          const off = b.length - asevOffset(b);
          b.write("XSEV", off, "latin1");
        }),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
      ],
      /signature/,
    ],
    [
      "SEV metadata with an unknown section type",
      () => [
        "snp",
        "--ovmf",
        patchedDebian("badtype.fd", (b) => {
          const off = b.length - asevOffset(b);
          b.writeUInt32LE(7, off + 16 + 8);
        }),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
      ],
      /unknown type 7/,
    ],
    [
      "SEV metadata offset outside the image",
      () => [
        "snp",
        "--ovmf",
        patchedDebian("badoff.fd", (b) => {
          setAsevOffset(b, 0x7fffffff);
        }),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
      ],
      /outside the image/,
    ],
    [
      "nonexistent firmware",
      () => ["snp", "--ovmf", path.join(work, "nope.fd"), "--vcpus", "1", "--vcpu-type", "EPYC"],
      /ENOENT/,
    ],
    // malformed / truncated JSON
    ["not JSON", () => withJson("bad.json", '{"MetadataItems": ['), /not valid JSON/],
    ["JSON without MetadataItems", () => withJson("noitems.json", '{"ResetEIP":"0x80b004"}'), /MetadataItems/],
    [
      "JSON with a non-hex GPA",
      () => withJson("badgpa.json", goodJson().replace("0x800000", "zz")),
      /MetadataItems\[0\]\.GPA/,
    ],
    ["JSON without ResetEIP", () => withJson("noeip.json", goodJson().replace("ResetEIP", "Reset")), /ResetEIP/],
    ["JSON with a short OVMFHash", () => withJson("shorthash.json", goodJson().replace("ba2c8115", "")), /OVMFHash/],
    [
      "JSON without OVMFHash and no --snp-ovmf-hash",
      () => withJson("nohash2.json", goodJson().replace(/"OVMFHash":"[0-9a-f]+"/, '"x":1')),
      /OVMFHash/,
    ],
    [
      "JSON with an unknown section type",
      () => withJson("badtype.json", goodJson().replace('"SectionTypeInt":1', '"SectionTypeInt":9')),
      /unknown type 9/,
    ],
    ["JSON that is an array", () => withJson("arr.json", "[]"), /JSON object/],
    // conflicting flags
    [
      "--ovmf and --ovmf-metadata",
      () => [
        "snp",
        "--ovmf",
        DEB(),
        "--ovmf-metadata",
        tmp("c1.json", goodJson()),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
      ],
      /alternatives/,
    ],
    ["--vcpu-type and --vcpu-sig", () => snp("--vcpu-sig", "0xa00f11"), /alternatives/],
    [
      "--vcpu-family without model/stepping",
      () => ["snp", "--ovmf", DEB(), "--vcpus", "1", "--vcpu-family", "25"],
      /together/,
    ],
    ["--initrd without --kernel", () => snp("--initrd", DEB()), /--initrd requires --kernel/],
    ["--append without --kernel", () => snp("--append", "quiet"), /--append requires --kernel/],
    ["several counts without json output", () => snp().map((a) => (a === "2" ? "1-4" : a)), /--output-format json/],
    [
      "--snp-ovmf-hash differing from the description's OVMFHash",
      () => [...withJson("c2.json", goodJson()), "--snp-ovmf-hash", "00".repeat(48)],
      /differs/,
    ],
    [
      "--svsm with --snp-ovmf-hash",
      () => [
        "snp",
        "--ovmf",
        vec("svsm_ovmf.fd"),
        "--svsm",
        vec("svsm.bin"),
        "--vars-size",
        "540672",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
        "--snp-ovmf-hash",
        "00".repeat(48),
      ],
      /SVSM/,
    ],
    [
      "--svsm on EC2",
      () => [
        "snp",
        "--ovmf",
        vec("svsm_ovmf.fd"),
        "--svsm",
        vec("svsm.bin"),
        "--vars-size",
        "540672",
        "--vcpus",
        "1",
        "--vmm-type",
        "ec2",
      ],
      /only defined for QEMU/,
    ],
    [
      "--svsm without a vars size",
      () => ["snp", "--ovmf", vec("svsm_ovmf.fd"), "--svsm", vec("svsm.bin"), "--vcpus", "1", "--vcpu-type", "EPYC"],
      /vars store size/,
    ],
    [
      "--vars-size and --vars-file",
      () => [
        "snp",
        "--ovmf",
        vec("svsm_ovmf.fd"),
        "--svsm",
        vec("svsm.bin"),
        "--vars-size",
        "4096",
        "--vars-file",
        DEB(),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
      ],
      /alternatives/,
    ],
    ["--vars-size without --svsm", () => snp("--vars-size", "4096"), /only apply with --svsm/],
    ["guest features without SNPActive", () => snp("--guest-features", "0x20"), /SNPActive/],
    ["guest features not a number", () => snp("--guest-features", "lots"), /not an integer/],
    ["unknown --vmm-type", () => snp("--vmm-type", "azure"), /not one of qemu, ec2, ec2-legacy, gce/],
    ["unknown --output-format", () => snp("--output-format", "yaml"), /not one of hex, base64, json/],
    ["a bad --snp-ovmf-hash", () => snp("--snp-ovmf-hash", "abcd"), /96 hex digits/],
    ["an unknown flag", () => snp("--frobnicate"), /frobnicate/],
    ["a flag of another mode (sev has no vCPUs)", () => ["sev", "--ovmf", DEB(), "--vcpus", "2"], /vcpus/],
    ["unknown measurement", () => ["sgx", "--ovmf", DEB()], /unknown measurement 'sgx'/],
    ["--mode with an unknown value", () => ["--mode", "tdx-ish", "--ovmf", DEB()], /--mode/],
  ];
  for (const [name, argv, message] of cases) {
    it(name, async () => {
      const r = await cli(...argv());
      expect(r.code).toBe(2);
      expect(r.out).toBe("");
      expect(r.err).toMatch(message);
      expect(r.err).not.toMatch(/[0-9a-f]{96}/); // no digest leaks through the error path either
    });
  }

  it("the real process exits 2 and prints only the error", () => {
    const r = spawnSync(
      process.execPath,
      [
        path.join(repoRoot, "bin/buckypaper.js"),
        "measure",
        "snp",
        "--ovmf",
        vec("debian-bookworm-ovmf/OVMF_CODE_4M.fd"),
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-Milan",
      ],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^buckypaper measure: --ovmf: firmware has no SEV metadata/);
  });
});

describe.skipIf(!enabled)("buckypaper measure: tables and formats", () => {
  it("a --vcpus range as JSON equals one invocation per count (qemu, ec2, ec2-legacy, gce)", async () => {
    for (const vmm of ["qemu", "ec2", "ec2-legacy", "gce"]) {
      const t = await cli(
        "snp",
        "--ovmf",
        DEB(),
        "--vcpus",
        "1-6,16,64",
        "--vcpu-type",
        "EPYC-Genoa",
        "--vmm-type",
        vmm,
        "--output-format",
        "json",
      );
      expect(t.code).toBe(0);
      const table = JSON.parse(t.out) as { mode: string; vmm: string; measurements: Record<string, string> };
      expect(table.mode).toBe("snp");
      expect(table.vmm).toBe(vmm);
      expect(Object.keys(table.measurements)).toEqual(["1", "2", "3", "4", "5", "6", "16", "64"]);
      expect(new Set(Object.values(table.measurements)).size).toBe(8);
      for (const [n, digest] of Object.entries(table.measurements)) {
        const one = await cli("snp", "--ovmf", DEB(), "--vcpus", n, "--vcpu-type", "EPYC-Genoa", "--vmm-type", vmm);
        expect(one.out.trim(), `${vmm} ${n}`).toBe(digest);
      }
    }
  });

  it("SVSM and SEV-ES tables equal single computations", async () => {
    const svsm = [
      "snp",
      "--ovmf",
      vec("svsm_ovmf.fd"),
      "--svsm",
      vec("svsm.bin"),
      "--vars-size",
      "540672",
      "--vcpu-type",
      "EPYC-v4",
    ];
    const t = JSON.parse((await cli(...svsm, "--vcpus", "1-4", "--output-format", "json")).out) as {
      measurements: Record<string, string>;
    };
    // the shared vectors for 2 and 4 vCPUs (taken on hardware by the reference's authors)
    expect(t.measurements["2"]).toMatch(/^9b94745036aafddf/);
    expect(t.measurements["4"]).toMatch(/^27d154c27b7b359c/);
    for (const n of ["1", "3"]) expect((await cli(...svsm, "--vcpus", n)).out.trim()).toBe(t.measurements[n]);
    const es = ["seves", "--ovmf", AMDSEV(), "--vcpu-type", "EPYC-v4"];
    const e = JSON.parse((await cli(...es, "--vcpus", "1,4,9", "--output-format", "json")).out) as {
      mode: string;
      measurements: Record<string, string>;
    };
    expect(e.mode).toBe("seves");
    for (const n of ["1", "4", "9"]) expect((await cli(...es, "--vcpus", n)).out.trim()).toBe(e.measurements[n]);
  });

  it("hex (lowercase) by default, base64 and verbose like the reference", async () => {
    const args = ["snp", "--ovmf", DEB(), "--vcpus", "1", "--vcpu-type", "EPYC-v4"];
    const hex = (await cli(...args)).out.trim();
    expect(hex).toBe(
      "11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3",
    );
    expect((await cli(...args, "--output-format", "base64")).out.trim()).toBe(
      Buffer.from(hex, "hex").toString("base64"),
    );
    expect((await cli(...args, "-v")).out.trim()).toBe(`Calculated SEV_SNP guest measurement: ${hex}`);
    // the reference's --mode form and QEMU spelling
    expect((await cli("--mode", "snp", "--vmm-type", "QEMU", ...args.slice(1))).out.trim()).toBe(hex);
    expect((await cli("--mode=snp", ...args.slice(1))).out.trim()).toBe(hex);
  });

  it("snp-ovmf-hash --output-format json writes a description that --ovmf-metadata measures identically", async () => {
    const desc = await cli("snp-ovmf-hash", "--ovmf", AMDSEV(), "--output-format", "json");
    expect(desc.code).toBe(0);
    const parsed = JSON.parse(desc.out) as Record<string, unknown>;
    expect(parsed.ResetEIP).toBe("0x80b004");
    expect(parsed.OVMFHash).toBe(
      "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74",
    );
    expect(parsed.SevHashTableGPA).toBe("0x810c00");
    const json = tmp("amdsev.json", desc.out);
    const kernel = tmp("vmlinuz", "not really a kernel");
    const common = [
      "--vcpus",
      "3",
      "--vcpu-sig",
      "0xa10f11",
      "--kernel",
      kernel,
      "--append",
      "console=ttyS0",
      "--guest-features",
      "0x21",
    ];
    const fromJson = await cli("snp", "--ovmf-metadata", json, ...common);
    const fromBinary = await cli("snp", "--ovmf", AMDSEV(), ...common);
    expect(fromJson.code).toBe(0);
    expect(fromJson.out).toBe(fromBinary.out);
  });

  it("the vCPU may be named by type, signature or family/model/stepping with the same result", async () => {
    const base = ["snp", "--ovmf", DEB(), "--vcpus", "2"];
    const byName = (await cli(...base, "--vcpu-type", "EPYC-Milan")).out;
    expect((await cli(...base, "--vcpu-sig", "0xa00f11")).out).toBe(byName);
    expect((await cli(...base, "--vcpu-family", "25", "--vcpu-model", "1", "--vcpu-stepping", "1")).out).toBe(byName);
    expect((await cli(...base, "--vcpu-type", "EPYC-Genoa")).out).not.toBe(byName);
  });
});

// Offset (from the end) of the ASEV header, read from the OVMF_SEV_METADATA footer entry, and its setter.
function asevEntry(b: Buffer): number {
  const guid = Buffer.from("666588dc4a989847a75e5585a7bf67cc", "hex"); // dc886566-984a-4798-a75e-5585a7bf67cc, on-disk order
  const at = b.lastIndexOf(guid);
  if (at < 0) throw new Error("fixture has no SEV metadata entry");
  return at - 2 - 4; // [u32 offset][u16 size][GUID]
}
function asevOffset(b: Buffer): number {
  return b.readUInt32LE(asevEntry(b));
}
function setAsevOffset(b: Buffer, v: number): void {
  b.writeUInt32LE(v, asevEntry(b));
}
