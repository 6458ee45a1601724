// The pieces of a local confidential VM without the Pulumi engine: the persistent simulated platform
// (same chip and keys in every process, private keys only in platform.json), the simulated PSP (the
// digest follows the boot inputs exactly as hardware would), and `buckypaper simulate platform init`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { appraise } from "../../../runtime/attestation/appraise.js";
import { snpLaunchDigest } from "../../../images/index.js";
import { initPlatform, loadPlatform, measureLaunch, LocalVmError } from "../../../runtime/sim/localvm/index.js";
import { requireTool } from "../../support/prereq.js";
import { hasShared, noteIfSharedMissing, sharedPath } from "../../support/shared.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const OVMF = "/usr/share/ovmf/OVMF.fd";
const HAVE_OVMF = requireTool("Debian OVMF firmware (apt-get install ovmf)", existsSync(OVMF));
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bk-localvm-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("persistent simulated platform", () => {
  it("is the same chip in another process: evidence of a reloaded platform verifies against the saved anchor only", async () => {
    const dir = path.join(tmp, "platform");
    const { anchor, created } = await initPlatform(dir);
    expect(created).toBe(true);
    expect(statSync(dir).mode & 0o077).toBe(0);
    expect(statSync(path.join(dir, "platform.json")).mode & 0o777).toBe(0o600);
    const anchorText = readFileSync(path.join(dir, "anchor.json"), "utf8");
    expect(anchorText).not.toMatch(/PRIVATE|"keys"/);
    expect(JSON.parse(anchorText)).toEqual(anchor);

    const again = await initPlatform(dir);
    expect(again).toEqual({ anchor, created: false }); // kept, not regenerated

    const sim = await loadPlatform(dir);
    const sim2 = await loadPlatform(dir);
    const M = "ab".repeat(48);
    const reportData = Buffer.alloc(64, 7);
    const r = await sim.report({ measurement: M, reportData });
    const r2 = await sim2.report({ measurement: M, reportData });
    expect(Buffer.from(r.vek)).toEqual(Buffer.from(r2.vek)); // the VCEK is persisted, not re-issued per process
    const trust = {
      snp: {
        simulated: [
          {
            simulated: true as const,
            product: anchor.product,
            arkSha256: anchor.ark_sha256,
            caCerts: anchor.ca_certs.map((c) => new Uint8Array(Buffer.from(c, "base64"))),
          },
        ],
      },
    };
    const v = await appraise(
      { kind: "snp", report: r.report, certTable: r.certTable },
      { snp: { measurements: [M] } },
      { trust, expectedReportData: reportData },
    );
    expect(v).toMatchObject({ accepted: true, simulated: true });
    // A different platform's evidence does not chain to this anchor.
    await initPlatform(path.join(tmp, "other"));
    const other = await loadPlatform(path.join(tmp, "other"));
    const foreign = await other.report({ measurement: M, reportData });
    const refused = await appraise(
      { kind: "snp", report: foreign.report, certTable: foreign.certTable },
      { snp: { measurements: [M] } },
      { trust, expectedReportData: reportData },
    );
    expect(refused.accepted).toBe(false);
  }, 60_000);

  it("a missing or damaged platform is a named error", async () => {
    await expect(loadPlatform(path.join(tmp, "nowhere"))).rejects.toThrow(
      /platform: cannot read .*platform\.json \(ENOENT\)/,
    );
    const bad = path.join(tmp, "bad");
    await initPlatform(bad);
    const st = JSON.parse(readFileSync(path.join(bad, "platform.json"), "utf8"));
    st.keys.ark = Buffer.from("not a key").toString("base64");
    writeFileSync(path.join(bad, "platform.json"), JSON.stringify(st));
    const e = await loadPlatform(bad).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(LocalVmError);
    expect((e as Error).message).toMatch(/state\.keys\.ark/);
    expect((e as Error).message).not.toContain(st.keys.ask);
  }, 60_000);
});

describe.skipIf(!HAVE_OVMF)("simulated PSP", () => {
  const fw = () => readFileSync(OVMF);
  const kernel = () => path.join(tmp, "vmlinuz");
  beforeAll(() => writeFileSync(path.join(tmp, "vmlinuz"), Buffer.alloc(4096, 1)));

  it("measures firmware and vCPUs as the engine does; without a kernel-hashes table the kernel and cmdline are not in the digest", () => {
    const m = measureLaunch({
      firmware: OVMF,
      kernel: kernel(),
      append: "console=ttyS0",
      vcpus: 2,
      vcpuType: "EPYC-v4",
    });
    expect(m.kernelMeasured).toBe(false);
    expect(m.measurement).toBe(snpLaunchDigest({ ovmf: fw(), vcpus: 2, vcpu: "EPYC-v4", vmm: "qemu" }).toString("hex"));
    expect(
      measureLaunch({ firmware: OVMF, kernel: kernel(), append: "init=/bin/sh", vcpus: 2, vcpuType: "EPYC-v4" })
        .measurement,
    ).toBe(m.measurement);
    expect(m.inputs).toMatchObject({ vcpus: 2, vcpuType: "EPYC-v4", append: "console=ttyS0" });
    expect(m.inputs.firmwareSha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("any change of what is measured changes the digest: vCPU count, vCPU type, one firmware byte", () => {
    const base = measureLaunch({ firmware: OVMF, vcpus: 2, vcpuType: "EPYC-v4" }).measurement;
    expect(measureLaunch({ firmware: OVMF, vcpus: 3, vcpuType: "EPYC-v4" }).measurement).not.toBe(base);
    expect(measureLaunch({ firmware: OVMF, vcpus: 2, vcpuType: "EPYC-Milan" }).measurement).not.toBe(base);
    const flipped = path.join(tmp, "OVMF-flipped.fd");
    copyFileSync(OVMF, flipped);
    const b = readFileSync(flipped);
    b[b.length >> 1] ^= 1;
    writeFileSync(flipped, b);
    expect(measureLaunch({ firmware: flipped, vcpus: 2, vcpuType: "EPYC-v4" }).measurement).not.toBe(base);
  });

  it("bad boot inputs are errors naming the input", () => {
    expect(() => measureLaunch({ firmware: path.join(tmp, "nope.fd"), vcpus: 2, vcpuType: "EPYC-v4" })).toThrow(
      /^firmware: '.*nope\.fd' cannot be read \(ENOENT\)/,
    );
    expect(() => measureLaunch({ firmware: OVMF, vcpus: 0, vcpuType: "EPYC-v4" })).toThrow(/^vcpus:/);
    expect(() => measureLaunch({ firmware: OVMF, append: "x", vcpus: 1, vcpuType: "EPYC-v4" })).toThrow(
      /^kernel: is required/,
    );
    expect(() => measureLaunch({ firmware: OVMF, vcpus: 1, vcpuType: "Pentium-II" })).toThrow(LocalVmError);
    const notFw = path.join(tmp, "not-firmware.fd");
    writeFileSync(notFw, Buffer.alloc(8192));
    expect(() => measureLaunch({ firmware: notFw, vcpus: 1, vcpuType: "EPYC-v4" })).toThrow(/^firmware:/);
  });
});

// A firmware with an SNP kernel-hashes table: the tail of edk2's OvmfPkg/AmdSev build (shared vectors)
// at the end of an otherwise empty 2 MiB image — measurable (not bootable), which is all the PSP needs.
describe.skipIf(!hasShared)("simulated PSP with kernel-hashes firmware (measured direct boot)", () => {
  noteIfSharedMissing("AmdSev OVMF suffix");
  let fw: string;
  let kernel: string;
  let initrd: string;
  beforeAll(() => {
    const suffix = readFileSync(sharedPath("vectors", "ovmf_AmdSev_suffix.bin"));
    const img = Buffer.alloc(2 * 1024 * 1024);
    suffix.copy(img, img.length - suffix.length);
    fw = path.join(tmp, "amdsev.fd");
    writeFileSync(fw, img);
    kernel = path.join(tmp, "k");
    initrd = path.join(tmp, "i");
    writeFileSync(kernel, Buffer.alloc(8192, 2));
    writeFileSync(initrd, Buffer.alloc(4096, 3));
  });

  it("kernel, initrd and command line are in the digest: a changed cmdline is a different measurement", () => {
    const m = measureLaunch({ firmware: fw, kernel, initrd, append: "console=ttyS0", vcpus: 1, vcpuType: "EPYC-v4" });
    expect(m.kernelMeasured).toBe(true);
    expect(m.measurement).toBe(
      snpLaunchDigest({
        ovmf: readFileSync(fw),
        kernel: readFileSync(kernel),
        initrd: readFileSync(initrd),
        append: "console=ttyS0",
        vcpus: 1,
        vcpu: "EPYC-v4",
        vmm: "qemu",
      }).toString("hex"),
    );
    expect(
      measureLaunch({
        firmware: fw,
        kernel,
        initrd,
        append: "console=ttyS0 init=/bin/sh",
        vcpus: 1,
        vcpuType: "EPYC-v4",
      }).measurement,
    ).not.toBe(m.measurement);
    writeFileSync(path.join(tmp, "k2"), Buffer.alloc(8192, 9));
    expect(
      measureLaunch({
        firmware: fw,
        kernel: path.join(tmp, "k2"),
        initrd,
        append: "console=ttyS0",
        vcpus: 1,
        vcpuType: "EPYC-v4",
      }).measurement,
    ).not.toBe(m.measurement);
  });
});

describe("buckypaper simulate platform init / vm", () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(ROOT, "bin/buckypaper.js"), "simulate", ...args], { encoding: "utf8" });

  it("init writes a private platform and a public anchor, and keeps them on a second run", () => {
    const dir = path.join(tmp, "cli-platform");
    const r = cli("platform", "init", "--dir", dir, "--product", "milan", "--json");
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ created: true, simulated: true, product: "Milan" });
    expect(statSync(path.join(dir, "platform.json")).mode & 0o777).toBe(0o600);
    const again = JSON.parse(cli("platform", "init", "--dir", dir, "--json").stdout);
    expect(again).toMatchObject({ created: false, arkSha256: out.arkSha256 });
  }, 60_000);

  it("usage errors exit 2 naming the flag", () => {
    expect(cli("platform", "init").status).toBe(2);
    expect(cli("platform", "init").stderr).toMatch(/--dir is required/);
    expect(cli("platform", "init", "--dir", path.join(tmp, "p2"), "--product", "rome").stderr).toMatch(
      /--product: 'rome'/,
    );
    const vm = cli("vm", "--platform", tmp);
    expect(vm.status).toBe(2);
    expect(vm.stderr).toMatch(/--firmware is required/);
  }, 60_000);

  it("a VM with an unreadable boot input does not boot: status says why, exit 2", () => {
    const dir = path.join(tmp, "cli-platform");
    const state = path.join(tmp, "vm-bad");
    writeFileSync(
      path.join(tmp, "agent.json"),
      JSON.stringify({ runtimeUrl: "https://127.0.0.1:1", runtimeCaSha256: "00".repeat(32), workloadId: "x" }),
    );
    const r = cli(
      "vm",
      "--platform",
      dir,
      "--firmware",
      path.join(tmp, "missing.fd"),
      "--vcpus",
      "1",
      "--vcpu-type",
      "EPYC-v4",
      "--agent-config",
      path.join(tmp, "agent.json"),
      "--root",
      path.join(state, "root"),
      "--state-dir",
      state,
    );
    expect(r.status).toBe(2);
    const status = JSON.parse(readFileSync(path.join(state, "status.json"), "utf8"));
    expect(status).toMatchObject({ state: "failed" });
    expect(status.error).toMatch(/^firmware: .*missing\.fd' cannot be read/);
    expect(existsSync(path.join(state, "vm.pid"))).toBe(false);
  }, 60_000);
});
