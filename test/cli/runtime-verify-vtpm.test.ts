// `buckypaper runtime verify --boot-policy` against a `buckypaper runtime server` process whose attested TLS carries
// the vTPM half (`attestation "simulated" { … vtpm { tcti event_log } }`, a real swtpm extended with a synthetic
// measured boot): exit 0 with the runtime's boot policy, 1 naming boot.kernel-cmdline for another, and 1 naming
// runtime.vtpm-missing for a runtime without a vTPM; 2 on usage errors, before anything is contacted.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { cli, startServerProc, type ServerProc } from "../runtime/server/core-procs.js";
import { initPlatform } from "../../runtime/sim/localvm/platform.js";
import { haveSwtpm } from "../support/swtpm.js";
import { EK_HANDLE } from "../../runtime/guest/evidence/vtpm.js";
import { MEASUREMENT, runtimeVerifyArgs } from "../runtime/attested-runtime-support.js";
import { DEFAULT_CMDLINE } from "../runtime/attestation/tpm-fixtures.js";
import { bootTpm, goodBootPolicy, type BootedTpm } from "../runtime/vtpm-runtime-support.js";

const run = haveSwtpm();

describe.runIf(run)("runtime verify --boot-policy against runtime server processes", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bk-rv-vtpm-"));
  const platformDir = path.join(dir, "platform");
  const anchor = path.join(platformDir, "anchor.json");
  const goodPolicy = path.join(dir, "boot-policy.json");
  const otherPolicy = path.join(dir, "other-boot-policy.json");
  let tpm: BootedTpm;
  let server: ServerProc;
  let plain: ServerProc;

  const config = (name: string, vtpm: string) => {
    const file = path.join(dir, `${name}.hcl`);
    writeFileSync(
      file,
      `storage "inmem" {}
       listener "tcp" { address = "127.0.0.1:0" }
       attestation "simulated" {
         platform_dir = "${platformDir}"
         measurement = "${MEASUREMENT}"
         ${vtpm}
       }`,
    );
    return file;
  };

  beforeAll(async () => {
    await initPlatform(platformDir);
    tpm = await bootTpm();
    writeFileSync(goodPolicy, JSON.stringify(goodBootPolicy()));
    const other = goodBootPolicy();
    other.kernelCmdline = { ...other.kernelCmdline!, allowed: [DEFAULT_CMDLINE + " quiet"] };
    writeFileSync(otherPolicy, JSON.stringify(other));
    server = await startServerProc(config("vtpm", tpm.stanza));
    plain = await startServerProc(config("plain", ""));
  }, 120_000);
  afterAll(async () => {
    await server?.kill();
    await plain?.kill();
    await tpm?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const verify = (url: string, ...extra: string[]) => cli(runtimeVerifyArgs(url, anchor, MEASUREMENT, ...extra));

  it("the server says it attests with a vTPM; verify exits 0 with the runtime's boot policy and its AK pinned", async () => {
    expect(server.output()).toMatch(/with a quote from vtpm \(swtpm:host=127\.0\.0\.1/);
    const r = await verify(server.url, "--boot-policy", goodPolicy, "--ak-pin", tpm.akSha256);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    for (const id of [
      "runtime.vtpm",
      "tpm.quote-signature",
      "tpm.event-log-replay",
      "boot.kernel-cmdline",
      "binding.vtpm-ak",
    ])
      expect(r.stdout).toMatch(new RegExp(`ok +${id.replace(/\./g, "\\.")}`));
  }, 60_000);

  it("exit 1 naming the check for another boot policy, an unpinned AK, and a runtime without a vTPM", async () => {
    const other = await verify(server.url, "--boot-policy", otherPolicy, "--ak-pin", tpm.akSha256);
    expect(other.code).toBe(1);
    expect(other.stdout).toMatch(/REFUSED: boot\.kernel-cmdline/);
    const unpinned = await verify(server.url, "--boot-policy", goodPolicy, "--ak-pin", "00".repeat(32));
    expect(unpinned.code).toBe(1);
    expect(unpinned.stdout).toMatch(/REFUSED: vtpm\.ak-authenticated/);
    const missing = await verify(plain.url, "--boot-policy", goodPolicy, "--ak-pin", tpm.akSha256);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toMatch(/REFUSED: runtime\.vtpm-missing/);
    // Without --boot-policy nothing changes: the vTPM runtime verifies on its measurement as before.
    const plainVerify = await verify(server.url);
    expect(plainVerify.code).toBe(0);
  }, 90_000);

  it("--ek-pub: exit 0 when the runtime's AK activates a credential for its TPM's EK, 1 naming vtpm.ek-credential for another TPM's EK", async () => {
    // As `aws ec2 get-instance-tpm-ek-pub --key-format tpmt --query KeyValue --output text` writes it (base64).
    const ekOf = (b: BootedTpm, name: string, form: "base64" | "raw") => {
      const f = path.join(dir, `${name}.tpmt`);
      const r = b.tpm.tool(["tpm2_readpublic", "-c", EK_HANDLE, "-f", "tpmt", "-o", f]);
      if (r.status !== 0) throw new Error(r.stderr.toString());
      if (form === "base64") writeFileSync(f, readFileSync(f).toString("base64") + "\n");
      return f;
    };
    const own = await verify(server.url, "--boot-policy", goodPolicy, "--ek-pub", ekOf(tpm, "own", "base64"));
    expect(own.stderr).toBe("");
    expect(own.code).toBe(0);
    expect(own.stdout).toMatch(/ok +vtpm\.ek-credential/);
    expect((await verify(server.url, "--boot-policy", goodPolicy, "--ek-pub", ekOf(tpm, "raw", "raw"))).code).toBe(0);
    const stranger = await bootTpm();
    try {
      const other = await verify(
        server.url,
        "--boot-policy",
        goodPolicy,
        "--ek-pub",
        ekOf(stranger, "other", "base64"),
      );
      expect(other.code).toBe(1);
      expect(other.stdout).toMatch(/REFUSED: vtpm\.ek-credential/);
    } finally {
      await stranger.stop();
    }
    const bad = path.join(dir, "bad-ek");
    writeFileSync(bad, "AAEC");
    const badEk = await verify(server.url, "--boot-policy", goodPolicy, "--ek-pub", bad);
    expect(badEk.code).toBe(2);
    expect(badEk.stderr).toMatch(/--ek-pub: /);
  }, 90_000);

  it("exit 2 on usage: no AK authentication said, an AK flag without a boot policy, a bad policy field", async () => {
    const noAk = await verify(server.url, "--boot-policy", goodPolicy);
    expect(noAk.code).toBe(2);
    expect(noAk.stderr).toMatch(/--boot-policy: say whose attestation key counts/);
    const alone = await verify(server.url, "--nitro-tpm");
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/--nitro-tpm needs --boot-policy FILE/);
    const bad = path.join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ kernelCmdline: { allowed: "x" } }));
    const badField = await verify(server.url, "--boot-policy", bad, "--allow-unauthenticated-ak");
    expect(badField.code).toBe(2);
    expect(badField.stderr).toMatch(/--boot-policy .*bad\.json: kernelCmdline\.allowed/);
    const badPin = await verify(server.url, "--boot-policy", goodPolicy, "--ak-pin", "abc");
    expect(badPin.code).toBe(2);
    expect(badPin.stderr).toMatch(/--ak-pin: /);
  }, 90_000);
});
