// Differential tests against the reference implementation from PyPI (`sev-snp-measure`, installed by
// scripts/ci-deps.sh): its CLI on the shared fixtures and on Debian's OVMF, and its library API on
// 240 seeded random configurations computed in one Python process (snp-reference-driver.py).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  VCPU_TYPES,
  sevDigest,
  sevEsDigest,
  snpLaunchDigest,
  snpLaunchDigestTable,
  snpOvmfHash,
  type VcpuSpec,
  type VmmType,
} from "../../images/snp/index.js";
import { haveCommand, requireTool } from "../support/prereq.js";
import { noteIfSharedMissing, repoRoot, sharedPath } from "../support/shared.js";

const python = process.env.BK_PYTHON ?? "python3";
const haveReference =
  haveCommand("sev-snp-measure", ["--version"]) && haveCommand(python, ["-c", "import sevsnpmeasure.guest"]);
const enabled =
  noteIfSharedMissing("SNP differential tests") &&
  requireTool("sev-snp-measure (PyPI reference implementation)", haveReference);
const bin = path.join(repoRoot, "bin/buckypaper.js");
const vec = (name: string) => sharedPath("vectors", name);

/**
 * Debian bookworm's `ovmf` package, version 2022.11-6+deb12u2: SHA-256 of /usr/share/ovmf/OVMF.fd. Pinned so
 * the differential test knows which firmware it measured; a different package version fails loudly here
 * (update the pin after checking the new file with this test's other cases).
 */
const DEBIAN_OVMF_SHA256 = "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773";

let work = "";
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), "bk-snp-ref-"));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function ours(args: string[]) {
  return spawnSync(process.execPath, [bin, "measure", ...args], { encoding: "utf8" });
}
function reference(args: string[]) {
  return spawnSync("sev-snp-measure", args, { encoding: "utf8" });
}

/** Debian's OVMF.fd: the installed `ovmf` package (scripts/ci-deps.sh), else fetched with `apt-get download`. */
function debianOvmf(): string {
  const installed = "/usr/share/ovmf/OVMF.fd";
  if (existsSync(installed)) return installed;
  const dir = path.join(work, "deb");
  mkdirSync(dir, { recursive: true });
  execFileSync("apt-get", ["download", "ovmf"], { cwd: dir, stdio: "pipe" });
  const deb = readdirSync(dir).find((f) => f.startsWith("ovmf_") && f.endsWith(".deb"));
  if (!deb) throw new Error("apt-get download ovmf produced no package");
  execFileSync("dpkg-deb", ["-x", path.join(dir, deb), path.join(dir, "root")]);
  return path.join(dir, "root/usr/share/ovmf/OVMF.fd");
}

describe.skipIf(!enabled)("differential: the sev-snp-measure CLI on the shared fixtures", () => {
  const cases: Array<{ name: string; args: string[] }> = [
    {
      name: "AmdSev, kernel+initrd+append, 4 vCPUs, Milan",
      args: [
        "--mode",
        "snp",
        "--ovmf",
        vec("ovmf_AmdSev_suffix.bin"),
        "--kernel",
        vec("svsm.bin"),
        "--initrd",
        vec("ovmf_OvmfX64_suffix.bin"),
        "--append",
        "console=ttyS0 root=/dev/vda1 ünïcode",
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-Milan",
      ],
    },
    {
      name: "AmdSev with a precomputed OVMF hash, features 0x21",
      args: [
        "--mode",
        "snp",
        "--ovmf",
        vec("ovmf_AmdSev_suffix.bin"),
        "--snp-ovmf-hash",
        "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74",
        "--vcpus",
        "3",
        "--vcpu-sig",
        "0xa10f11",
        "--guest-features",
        "0x21",
      ],
    },
    {
      name: "OvmfX64, family/model/stepping, base64",
      args: [
        "--mode",
        "snp",
        "--ovmf",
        vec("ovmf_OvmfX64_suffix.bin"),
        "--vcpus",
        "7",
        "--vcpu-family",
        "25",
        "--vcpu-model",
        "17",
        "--vcpu-stepping",
        "1",
        "--output-format",
        "base64",
      ],
    },
    {
      name: "EC2, 16 vCPUs",
      args: ["--mode", "snp", "--ovmf", vec("svsm_ovmf.fd"), "--vcpus", "16", "--vmm-type", "ec2"],
    },
    {
      name: "GCE, 24 vCPUs",
      args: ["--mode", "snp", "--ovmf", vec("svsm_ovmf.fd"), "--vcpus", "24", "--vmm-type", "gce"],
    },
    {
      name: "SVSM, 8 vCPUs",
      args: [
        "--mode",
        "snp:svsm",
        "--ovmf",
        vec("svsm_ovmf.fd"),
        "--svsm",
        vec("svsm.bin"),
        "--vars-size",
        "540672",
        "--vcpus",
        "8",
        "--vcpu-type",
        "EPYC-Genoa",
      ],
    },
    {
      name: "SEV-ES with kernel, 2 vCPUs",
      args: [
        "--mode",
        "seves",
        "--ovmf",
        vec("ovmf_AmdSev_suffix.bin"),
        "--kernel",
        vec("svsm.bin"),
        "--append",
        "quiet",
        "--vcpus",
        "2",
        "--vcpu-type",
        "EPYC-Rome",
      ],
    },
    {
      name: "SEV with kernel",
      args: [
        "--mode",
        "sev",
        "--ovmf",
        vec("ovmf_AmdSev_suffix.bin"),
        "--kernel",
        vec("svsm.bin"),
        "--initrd",
        vec("ovmf_AmdSev_suffix.bin"),
      ],
    },
    { name: "snp:ovmf-hash of the SVSM OVMF", args: ["--mode", "snp:ovmf-hash", "--ovmf", vec("svsm_ovmf.fd")] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = reference(c.args);
      expect(r.status, r.stderr).toBe(0);
      const o = ours(c.args); // the reference's own flags, --mode form
      expect(o.stderr).toBe("");
      expect(o.status).toBe(0);
      expect(o.stdout.trim()).toBe(r.stdout.trim());
      expect(o.stdout.trim()).toMatch(/^[0-9a-f]{64,96}$|^[A-Za-z0-9+/=]{64}$/);
    });
  }
});

describe.skipIf(!enabled)("differential: Debian bookworm OVMF (apt package `ovmf`)", () => {
  let ovmf = "";
  beforeAll(() => {
    ovmf = debianOvmf();
  });
  it("is the pinned package build", () => {
    const sum = createHash("sha256").update(readFileSync(ovmf)).digest("hex");
    expect(sum, `${ovmf} is not ovmf 2022.11-6+deb12u2's OVMF.fd; check and update DEBIAN_OVMF_SHA256`).toBe(
      DEBIAN_OVMF_SHA256,
    );
  });
  for (const [vmm, extra] of [
    ["QEMU", ["--vcpu-type", "EPYC-Genoa"]],
    ["ec2", []],
    ["gce", []],
  ] as const) {
    for (const vcpus of ["1", "64"]) {
      it(`${vmm}, ${vcpus} vCPUs: identical digest`, () => {
        const args = ["--mode", "snp", "--ovmf", ovmf, "--vcpus", vcpus, "--vmm-type", vmm, ...extra];
        const r = reference(args);
        expect(r.status, r.stderr).toBe(0);
        expect(ours(args).stdout.trim()).toBe(r.stdout.trim());
      });
    }
  }
  it("snp:ovmf-hash, sev and seves agree", () => {
    for (const args of [
      ["--mode", "snp:ovmf-hash", "--ovmf", ovmf],
      ["--mode", "sev", "--ovmf", ovmf],
      ["--mode", "seves", "--ovmf", ovmf, "--vcpus", "5", "--vcpu-type", "EPYC"],
    ]) {
      const r = reference(args);
      expect(r.status, r.stderr).toBe(0);
      expect(ours(args).stdout.trim()).toBe(r.stdout.trim());
    }
  });
  it("the reference prints a digest for OVMF_CODE_4M.fd (no SEV metadata); we refuse with exit 2", () => {
    const args = [
      "--mode",
      "snp",
      "--ovmf",
      sharedPath("vectors/debian-bookworm-ovmf/OVMF_CODE_4M.fd"),
      "--vcpus",
      "1",
      "--vcpu-type",
      "EPYC-v4",
    ];
    const r = reference(args);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^[0-9a-f]{96}$/); // the trap this kit avoids
    const o = ours(args);
    expect(o.status).toBe(2);
    expect(o.stdout).toBe("");
    expect(o.stderr).toContain("no SEV metadata");
  });
});

// ---- randomized configurations, one Python process ----

/** mulberry32: small seeded PRNG so a failure names a reproducible seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)];
  const bytes = (n: number) => {
    const b = Buffer.alloc(n + 3);
    for (let i = 0; i < n; i += 4) b.writeUInt32LE(Math.floor(next() * 4294967296), i);
    return b.subarray(0, n);
  };
  return { next, int, pick, bytes };
}

interface Job {
  mode: "snp" | "seves" | "sev" | "svsm" | "ovmf-hash";
  ovmf: string;
  vcpus?: number;
  vcpu_type?: string;
  vcpu_sig?: number;
  vcpu_fms?: [number, number, number];
  vmm?: VmmType;
  guest_features?: string;
  ovmf_hash?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  svsm?: string;
  vars_size?: number;
}

// The reference's own vCPU names (ours adds EPYC-Genoa-v2 and EPYC-Turin-v1, checked in the unit tests).
const REFERENCE_VCPU_TYPES = Object.keys(VCPU_TYPES).filter((n) => n !== "EPYC-Genoa-v2" && n !== "EPYC-Turin-v1");
const APPEND_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 =/.,-_:\"'äöüßé€🙂\t";

function randomJobs(seed: number, count: number, dir: string): Job[] {
  const r = prng(seed);
  const firmwares = [
    vec("ovmf_AmdSev_suffix.bin"),
    vec("ovmf_OvmfX64_suffix.bin"),
    vec("debian-bookworm-ovmf/OVMF.fd"),
    vec("svsm_ovmf.fd"),
  ];
  const kernelCapable = firmwares[0];
  const jobs: Job[] = [];
  const file = (tag: string, len: number) => {
    const f = path.join(dir, `${tag}-${jobs.length}`);
    writeFileSync(f, r.bytes(len));
    return f;
  };
  for (let i = 0; i < count; i++) {
    const roll = r.next();
    const mode: Job["mode"] =
      roll < 0.68 ? "snp" : roll < 0.8 ? "seves" : roll < 0.88 ? "sev" : roll < 0.95 ? "svsm" : "ovmf-hash";
    const job: Job = { mode, ovmf: r.next() < 0.55 ? kernelCapable : r.pick(firmwares) };
    if (mode === "ovmf-hash") {
      jobs.push(job);
      continue;
    }
    if (mode !== "sev") {
      const v = r.next();
      job.vcpus = v < 0.5 ? r.int(1, 16) : v < 0.85 ? r.int(17, 128) : r.int(129, 300);
      const how = r.int(0, 2);
      if (how === 0) job.vcpu_type = r.pick(REFERENCE_VCPU_TYPES);
      else if (how === 1) job.vcpu_fms = [r.int(0, 0x10e), r.int(0, 255), r.int(0, 15)];
      else job.vcpu_sig = r.int(0, 0xffffffff);
    }
    if (mode === "snp" || mode === "seves") job.vmm = r.pick(["qemu", "ec2", "ec2-legacy", "gce"] as const);
    if (mode === "snp") {
      const f = r.next();
      job.guest_features =
        f < 0.4
          ? "0x1"
          : f < 0.7
            ? "0x21"
            : "0x" + ((BigInt(r.int(0, 0xffffffff)) << 32n) | BigInt(r.int(0, 0xffffffff)) | 1n).toString(16);
      if (r.next() < 0.25) job.ovmf_hash = r.bytes(48).toString("hex");
    }
    if (mode === "svsm") {
      job.ovmf = vec("svsm_ovmf.fd");
      job.svsm = vec("svsm.bin");
      job.vars_size = r.pick([0, 540672, r.int(0, 256) * 4096]);
      job.vcpus = r.int(1, 32);
    } else if (job.ovmf === kernelCapable && r.next() < 0.7) {
      job.kernel = file("kernel", r.pick([0, 1, 4096, r.int(0, 200_000)]));
      if (r.next() < 0.6) job.initrd = file("initrd", r.int(0, 300_000));
      if (r.next() < 0.7) job.append = Array.from({ length: r.int(0, 120) }, () => r.pick([...APPEND_CHARS])).join("");
    }
    jobs.push(job);
  }
  return jobs;
}

function ourDigest(job: Job): string {
  const read = (f?: string) => (f === undefined ? undefined : readFileSync(f));
  const vcpu: VcpuSpec | undefined =
    job.vcpu_type ??
    job.vcpu_sig ??
    (job.vcpu_fms ? { family: job.vcpu_fms[0], model: job.vcpu_fms[1], stepping: job.vcpu_fms[2] } : undefined);
  const ovmf = readFileSync(job.ovmf);
  // Like the reference CLI: an empty --append is no --append.
  const k = job.kernel ? { kernel: read(job.kernel)!, initrd: read(job.initrd), append: job.append || undefined } : {};
  switch (job.mode) {
    case "ovmf-hash":
      return snpOvmfHash(ovmf).toString("hex");
    case "sev":
      return sevDigest({ ovmf, ...k }).toString("hex");
    case "seves":
      return sevEsDigest({ ovmf, vcpus: job.vcpus!, vcpu, vmm: job.vmm, ...k }).toString("hex");
    case "svsm":
      return snpLaunchDigest({
        ovmf,
        svsm: readFileSync(job.svsm!),
        varsSize: job.vars_size,
        vcpus: job.vcpus!,
        vcpu,
      }).toString("hex");
    case "snp":
      return snpLaunchDigest({
        ovmf,
        vcpus: job.vcpus!,
        vcpu,
        vmm: job.vmm,
        guestFeatures: BigInt(job.guest_features!),
        ovmfHash: job.ovmf_hash ? Buffer.from(job.ovmf_hash, "hex") : undefined,
        ...k,
      }).toString("hex");
  }
}

function referenceBatch(jobs: object[]): Array<{ digest?: string; error?: string }> {
  const r = spawnSync(python, [path.join(repoRoot, "test/images/snp-reference-driver.py")], {
    input: JSON.stringify(jobs),
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`reference driver failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Array<{ digest?: string; error?: string }>;
}

describe.skipIf(!enabled)("differential: 240 random configurations vs the reference library (one batch)", () => {
  const seed = Number(process.env.BK_SNP_SEED ?? 20261122);
  it(`identical digests for every configuration (seed ${seed})`, () => {
    const jobs = randomJobs(seed, 240, work);
    const expected = referenceBatch(jobs);
    expect(expected).toHaveLength(jobs.length);
    const modes = new Map<string, number>();
    for (const [i, job] of jobs.entries()) {
      const ref = expected[i];
      expect(ref.error, `reference failed on job ${i}: ${JSON.stringify(job)}`).toBeUndefined();
      expect(ourDigest(job), `job ${i}: ${JSON.stringify(job)}`).toBe(ref.digest);
      const key = `${job.mode}/${job.vmm ?? "-"}${job.kernel ? "/kernel" : ""}`;
      modes.set(key, (modes.get(key) ?? 0) + 1);
    }
    // The mix really covers every layout and flow (a generator bug must not silently narrow it).
    for (const key of [
      "snp/qemu",
      "snp/ec2",
      "snp/ec2-legacy",
      "snp/gce",
      "snp/qemu/kernel",
      "seves/qemu",
      "sev/-",
      "svsm/-",
      "ovmf-hash/-",
    ]) {
      expect(modes.get(key) ?? 0, `coverage of ${key}: ${JSON.stringify([...modes])}`).toBeGreaterThan(0);
    }
  });

  it("a vCPU table equals the reference's single computations per count", () => {
    const counts = [...Array.from({ length: 40 }, (_, i) => i + 1), 63, 64, 65, 127, 128, 200, 255, 256];
    for (const vmm of ["qemu", "ec2", "gce"] as const) {
      const base = {
        ovmf: vec("ovmf_AmdSev_suffix.bin"),
        vmm,
        vcpu_type: "EPYC-Milan",
        guest_features: "0x21",
        mode: "snp" as const,
      };
      const ref = referenceBatch(counts.map((vcpus) => ({ ...base, vcpus })));
      const table = snpLaunchDigestTable(
        { ovmf: readFileSync(base.ovmf), vmm, vcpu: "EPYC-Milan", guestFeatures: 0x21 },
        counts,
      );
      counts.forEach((n, i) => expect(table.get(n)!.toString("hex"), `${vmm} ${n} vCPUs`).toBe(ref[i].digest));
    }
  });

  it("both refuse a kernel for firmware without a kernel-hashes section", () => {
    const kernel = path.join(work, "k-refuse");
    writeFileSync(kernel, "kernel");
    const ref = referenceBatch([
      { mode: "snp", ovmf: vec("ovmf_OvmfX64_suffix.bin"), vcpus: 1, vcpu_type: "EPYC", kernel },
      { mode: "seves", ovmf: vec("ovmf_OvmfX64_suffix.bin"), vcpus: 1, vcpu_type: "EPYC", kernel },
    ]);
    expect(ref.map((x) => x.error !== undefined)).toEqual([true, true]);
    expect(() =>
      snpLaunchDigest({
        ovmf: readFileSync(vec("ovmf_OvmfX64_suffix.bin")),
        vcpus: 1,
        vcpu: "EPYC",
        kernel: Buffer.from("kernel"),
      }),
    ).toThrow(/SNP_KERNEL_HASHES/);
    expect(() =>
      sevEsDigest({
        ovmf: readFileSync(vec("ovmf_OvmfX64_suffix.bin")),
        vcpus: 1,
        vcpu: "EPYC",
        kernel: Buffer.from("kernel"),
      }),
    ).toThrow(/hashes table/);
  });
});
