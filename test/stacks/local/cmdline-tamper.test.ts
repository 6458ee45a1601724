// Measured direct boot, end to end without the Pulumi engine: a firmware with an SNP kernel-hashes table
// puts kernel, initrd and command line into the launch digest. A VM registered with one command line
// and started with another is refused by a real runtime (HTTPS, Nitride, JWT auth) and receives nothing;
// started with the registered one it attests and gets its secret. The VM is the real local-VM code
// (bootLocalVm: simulated PSP on the actual inputs + the enclaivelet) on a persistent simulated platform.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { bootLocalVm, initPlatform, measureLaunch, type BootInputs } from "../../../runtime/sim/localvm/index.js";
import { startEnclaiveletStack, type EnclaiveletStack } from "../../runtime/guest/stack.js";
import { hasShared, noteIfSharedMissing, sharedPath } from "../../support/shared.js";

describe.skipIf(!hasShared)("cmdline tamper with a kernel-hashes firmware", () => {
  noteIfSharedMissing("AmdSev OVMF suffix");
  let tmp: string;
  let stack: EnclaiveletStack;
  let registered: BootInputs;
  let platformDir: string;

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "bk-cmdline-"));
    // The tail of edk2's OvmfPkg/AmdSev build (footer table with SNP_KERNEL_HASHES) at the end of a 2 MiB image.
    const suffix = readFileSync(sharedPath("vectors", "ovmf_AmdSev_suffix.bin"));
    const img = Buffer.alloc(2 * 1024 * 1024);
    suffix.copy(img, img.length - suffix.length);
    writeFileSync(path.join(tmp, "amdsev.fd"), img);
    writeFileSync(path.join(tmp, "vmlinuz"), Buffer.alloc(16384, 5));
    registered = {
      firmware: path.join(tmp, "amdsev.fd"),
      kernel: path.join(tmp, "vmlinuz"),
      append: "console=ttyS0 ro",
      vcpus: 2,
      vcpuType: "EPYC-v4",
    };

    platformDir = path.join(tmp, "platform");
    const { anchor } = await initPlatform(platformDir);
    stack = await startEnclaiveletStack();
    const a = stack.sim.trustAnchor;
    await stack.admin("PUT", "nitride/config", {
      kds: "off",
      accept_simulated: true,
      simulated_snp_anchors: [
        {
          product: a.product,
          ark_sha256: a.arkSha256,
          ca_certs: a.caCerts.map((c) => Buffer.from(c).toString("base64")),
        },
        anchor,
      ],
    });
    const expected = measureLaunch(registered);
    expect(expected.kernelMeasured).toBe(true);
    await stack.admin("PUT", "nitride/workloads/direct-boot", {
      platforms: ["snp"],
      reference_values: { snp_measurements: [expected.measurement] },
      secrets: { kv: ["secret/data/web/db"] },
    });
    writeFileSync(
      path.join(tmp, "agent.json"),
      JSON.stringify({
        runtimeUrl: stack.rt.url,
        runtimeCaSha256: stack.caSha256,
        workloadId: "direct-boot",
        files: [{ path: "/etc/app/db-password", secret: "web/db", field: "password" }],
      }),
    );
  }, 120_000);

  afterAll(async () => {
    await stack?.rt.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  const boot = (name: string, inputs: BootInputs) =>
    bootLocalVm(
      {
        name,
        platformDir,
        boot: inputs,
        agentConfigFile: path.join(tmp, "agent.json"),
        root: path.join(tmp, name, "root"),
        stateDir: path.join(tmp, name),
      },
      () => {},
    );

  it("started with a different kernel command line than registered: refused, nothing delivered", async () => {
    const s = await boot("tampered", { ...registered, append: "console=ttyS0 ro init=/bin/sh" });
    expect(s.boot?.kernelMeasured).toBe(true);
    expect(s.boot?.measurement).not.toBe(measureLaunch(registered).measurement);
    expect(s.attestation).toMatchObject({ verdict: "refused", reason: "refused", simulated: true });
    expect(s.attestation?.detail).toMatch(/policy\.measurement/);
    expect(s.delivered).toEqual([]);
    expect(existsSync(path.join(tmp, "tampered", "root", "etc"))).toBe(false);
  }, 60_000);

  it("started with the registered inputs: accepted, the secret is in its private root", async () => {
    const s = await boot("good", registered);
    expect(s.attestation).toMatchObject({ verdict: "accepted", simulated: true });
    expect(s.delivered).toEqual(["/etc/app/db-password"]);
    expect(readFileSync(path.join(tmp, "good", "root", "etc/app/db-password"), "utf8")).toBe("web-db-s3cret");
    expect(JSON.parse(readFileSync(path.join(tmp, "good", "status.json"), "utf8")).delivered).toEqual([
      "/etc/app/db-password",
    ]);
    expect(readFileSync(path.join(tmp, "good", "status.json"), "utf8")).not.toContain("web-db-s3cret");
  }, 60_000);
});
