// Every SNP / SNP-SVSM / SEV / SEV-ES vector of ../shared/vectors/vectors.json, through the library and
// through the CLI (in-process), plus the firmware-description round trip on the vector firmwares.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { main } from "../../cli/main.js";
import {
  describeOvmf,
  firmwareDescriptionJson,
  parseFirmwareDescription,
  parseOvmf,
  sevDigest,
  sevEsDigest,
  snpLaunchDigest,
  snpOvmfHash,
  type SnpMeasureInput,
} from "../../images/snp/index.js";
import { hasShared, noteIfSharedMissing, sharedPath } from "../support/shared.js";

interface Vector {
  id: string;
  kind: string;
  inputs: Record<string, string | number | undefined>;
  params?: { vcpus?: number; vcpu_type?: string | null; guest_features?: string; vmm?: string };
  expected: string;
}

const KINDS = ["snp", "snp-ovmf-hash", "snp-svsm", "sev", "seves"];
const vectors: Vector[] = hasShared
  ? (JSON.parse(readFileSync(sharedPath("vectors/vectors.json"), "utf8")) as Vector[]).filter((v) =>
      KINDS.includes(v.kind),
    )
  : [];
// "" names an empty file (like /dev/null) in vectors.json.
const vecFile = (name: string | number | undefined) =>
  name === "" ? "/dev/null" : sharedPath("vectors", String(name));
const read = (name: string | number | undefined) => (name === "" ? Buffer.alloc(0) : readFileSync(vecFile(name)));

function libraryDigest(v: Vector): Buffer {
  const i = v.inputs,
    p = v.params ?? {};
  const ovmf = read(i.ovmf);
  const k =
    i.kernel !== undefined
      ? {
          kernel: read(i.kernel),
          initrd: i.initrd !== undefined ? read(i.initrd) : undefined,
          append: i.append as string | undefined,
        }
      : {};
  switch (v.kind) {
    case "snp-ovmf-hash":
      return snpOvmfHash(ovmf);
    case "snp":
      return snpLaunchDigest({
        ovmf,
        ovmfHash: i.ovmf_hash_seed ? Buffer.from(String(i.ovmf_hash_seed), "hex") : undefined,
        vcpus: p.vcpus!,
        vcpu: p.vcpu_type ?? undefined,
        vmm: p.vmm as SnpMeasureInput["vmm"],
        guestFeatures: BigInt(p.guest_features!),
        ...k,
      });
    case "snp-svsm":
      return snpLaunchDigest({
        ovmf,
        svsm: read(i.svsm),
        varsSize: Number(i.vars_size),
        vcpus: p.vcpus!,
        vcpu: p.vcpu_type!,
      });
    case "sev":
      return sevDigest({ ovmf, ...k });
    case "seves":
      return sevEsDigest({ ovmf, vcpus: p.vcpus!, vcpu: p.vcpu_type!, vmm: p.vmm as SnpMeasureInput["vmm"], ...k });
  }
  throw new Error(`unhandled kind ${v.kind}`);
}

function cliArgs(v: Vector): string[] {
  const i = v.inputs,
    p = v.params ?? {};
  const sub = { snp: "snp", "snp-svsm": "snp", "snp-ovmf-hash": "snp-ovmf-hash", sev: "sev", seves: "seves" }[v.kind]!;
  const a = [sub, "--ovmf", vecFile(i.ovmf)];
  if (i.kernel !== undefined) a.push("--kernel", vecFile(i.kernel));
  if (i.initrd !== undefined) a.push("--initrd", vecFile(i.initrd));
  // The reference CLI treats an empty --append like none; so does ours (cmdline hash of a lone NUL).
  if (i.append !== undefined) a.push("--append", String(i.append));
  if (i.ovmf_hash_seed) a.push("--snp-ovmf-hash", String(i.ovmf_hash_seed));
  if (i.svsm) a.push("--svsm", vecFile(i.svsm), "--vars-size", String(i.vars_size));
  if (p.vcpus !== undefined && v.kind !== "sev") a.push("--vcpus", String(p.vcpus));
  if (p.vcpu_type && v.kind !== "sev") a.push("--vcpu-type", p.vcpu_type);
  if (p.vmm && v.kind !== "sev") a.push("--vmm-type", p.vmm);
  if (p.guest_features && v.kind === "snp") a.push("--guest-features", p.guest_features);
  return a;
}

async function cli(argv: string[]) {
  const out: string[] = [],
    err: string[] = [];
  const code = await main(["measure", ...argv], { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out: out.join("").trim(), err: err.join("") };
}

describe.skipIf(!noteIfSharedMissing("SNP vectors"))(
  "SEV/SNP launch digest vectors (../shared/vectors/vectors.json)",
  () => {
    it("has vectors of every kind this engine owns", () => {
      expect(new Set(vectors.map((v) => v.kind))).toEqual(new Set(KINDS));
      expect(vectors.length).toBeGreaterThanOrEqual(26);
    });

    for (const v of vectors) {
      it(`${v.id} (${v.kind}): library`, () => {
        expect(libraryDigest(v).toString("hex")).toBe(v.expected);
      });
      it(`${v.id} (${v.kind}): CLI`, async () => {
        const r = await cli(cliArgs(v));
        expect(r.err).toBe("");
        expect(r.code).toBe(0);
        expect(r.out).toBe(v.expected);
      });
    }

    it("a firmware description extracted from a binary measures like the binary (all VMM layouts, 1..8 vCPUs)", () => {
      for (const name of ["debian-bookworm-ovmf/OVMF.fd", "ovmf_AmdSev_suffix.bin", "ovmf_OvmfX64_suffix.bin"]) {
        const img = parseOvmf(readFileSync(sharedPath("vectors", name)));
        const json = JSON.stringify(firmwareDescriptionJson(describeOvmf(img, snpOvmfHash(img))));
        const firmware = parseFirmwareDescription(json);
        for (const vmm of ["qemu", "ec2", "ec2-legacy", "gce"] as const) {
          for (const vcpus of [1, 2, 8]) {
            const base = { vcpus, vmm, vcpu: "EPYC-Milan", guestFeatures: 0x21 };
            expect(snpLaunchDigest({ ...base, firmware }).toString("hex"), `${name} ${vmm} ${vcpus}`).toBe(
              snpLaunchDigest({ ...base, ovmf: img }).toString("hex"),
            );
          }
        }
      }
    });

    it("measured direct boot works from a description too (SevHashTableGPA extension)", () => {
      const img = parseOvmf(read("ovmf_AmdSev_suffix.bin"));
      const firmware = parseFirmwareDescription(firmwareDescriptionJson(describeOvmf(img, snpOvmfHash(img))));
      expect(firmware.hashTableGpa).toBe(0x810c00);
      const k = { kernel: Buffer.from("kernel"), initrd: Buffer.from("initrd"), append: "console=ttyS0" };
      expect(snpLaunchDigest({ firmware, vcpus: 2, vcpu: "EPYC-v4", ...k })).toEqual(
        snpLaunchDigest({ ovmf: img, vcpus: 2, vcpu: "EPYC-v4", ...k }),
      );
    });

    it("reads the sev-snp-measure-go MetadataWrapper shape (aws/uefi layout, its testdata) with a given OVMF hash", () => {
      // guest/testdata/ovmf_img_2.json of virtee/sev-snp-measure-go: the same layout as Debian bookworm's OVMF.fd,
      // so with Debian's OVMF hash it must give Debian's digest.
      const goJson = {
        MetadataItems: [
          { GPA: "0x800000", SectionTypeInt: 1, Size: "0x9000" },
          { GPA: "0x80a000", SectionTypeInt: 1, Size: "0x3000" },
          { GPA: "0x80d000", SectionTypeInt: 2, Size: "0x1000" },
          { GPA: "0x80e000", SectionTypeInt: 3, Size: "0x1000" },
          { GPA: "0x80f000", SectionTypeInt: 1, Size: "0x11000" },
        ],
        ResetEIP: "0x80b004",
      };
      const deb = vectors.find((v) => v.id === "deb-qemu-1vcpu-epycv4")!;
      const debHash = vectors.find((v) => v.id === "deb-ovmf-hash")!.expected;
      const digest = snpLaunchDigest({
        firmware: parseFirmwareDescription(JSON.stringify(goJson)),
        ovmfHash: Buffer.from(debHash, "hex"),
        vcpus: 1,
        vcpu: "EPYC-v4",
      });
      expect(digest.toString("hex")).toBe(deb.expected);
    });
  },
);
