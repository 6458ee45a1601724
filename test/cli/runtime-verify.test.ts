// `buckypaper runtime verify` against a real attested runtime (HTTPS, simulated SNP evidence): every check is
// printed, exit 0 only when every URL passed, 1 naming the reason when one was refused, 2 on usage errors.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { main } from "../../cli/main.js";
import type { RunningServer } from "../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../runtime/sim/snp.js";
import {
  MEASUREMENT,
  OTHER_MEASUREMENT,
  expectationFor,
  initUnseal,
  startAttestedRuntime,
  startRelay,
} from "../runtime/attested-runtime-support.js";

let server: RunningServer;
let sim: SnpSimulator;
const dir = mkdtempSync(path.join(tmpdir(), "bk-rv-"));
const anchor = path.join(dir, "anchor.json");

beforeAll(async () => {
  ({ server, sim } = await startAttestedRuntime());
  writeFileSync(anchor, JSON.stringify(expectationFor(sim).simulatedAnchors![0]));
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function cli(...args: string[]) {
  const out: string[] = [],
    err: string[] = [];
  const code = await main(["runtime", "verify", ...args], {
    out: (t: string) => out.push(t),
    err: (t: string) => err.push(t),
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("buckypaper runtime verify", () => {
  it("exit 0 and every check printed for the expected measurement", async () => {
    const r = await cli("--url", server.url, "--measurement", MEASUREMENT, "--anchor", anchor, "--kds", "off");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    for (const id of [
      "runtime.expected-measurement",
      "tls.connect",
      "runtime.evidence",
      "policy.measurement",
      "binding.tls-key",
      "binding.nonce-fresh",
    ])
      expect(r.out).toMatch(new RegExp(`ok +${id.replace(".", "\\.")}`));
    expect(r.out).toContain(`SPKI SHA-256 ${server.attestedSpkiSha256}`);
    expect(r.out).toContain("SIMULATED");
  });

  it("exit 1 naming the reason for a wrong measurement, and for a man in the middle", async () => {
    const wrong = await cli(
      "--url",
      server.url,
      "--measurement",
      OTHER_MEASUREMENT,
      "--anchor",
      anchor,
      "--kds",
      "off",
    );
    expect(wrong.code).toBe(1);
    expect(wrong.out).toMatch(/FAIL policy\.measurement/);
    expect(wrong.out).toMatch(/REFUSED: policy\.measurement/);
    const mitm = await startRelay(server.url);
    try {
      const r = await cli(
        "--url",
        server.url,
        "--url",
        mitm.url,
        "--measurement",
        MEASUREMENT,
        "--anchor",
        anchor,
        "--kds",
        "off",
        "--format",
        "json",
      );
      expect(r.code).toBe(1);
      const j = JSON.parse(r.out);
      expect(j.ok).toBe(false);
      expect(j.runtimes.map((x: { ok: boolean }) => x.ok)).toEqual([true, false]);
      expect(j.runtimes[1].reason).toMatch(/man in the middle/);
    } finally {
      await mitm.close();
    }
  });

  it("--instance-id: exit 0 for the runtime bootstrapped, exit 1 for a twin (runtime.instance-id)", async () => {
    const { server: original } = await startAttestedRuntime();
    const { server: twin } = await startAttestedRuntime();
    try {
      await initUnseal(original);
      await initUnseal(twin);
      const id = original.core.instanceId!.toString("hex");
      const common = ["--measurement", MEASUREMENT, "--anchor", anchor, "--kds", "off", "--instance-id", id];
      const ok = await cli("--url", original.url, ...common);
      expect(ok.code).toBe(0);
      expect(ok.out).toMatch(/ok +runtime\.instance-id: REPORT_DATA binds the expected instance/);
      expect(ok.out).toContain(`instance ${id}`);
      const r = await cli("--url", twin.url, ...common, "--format", "json");
      expect(r.code).toBe(1);
      const j = JSON.parse(r.out);
      expect(j.runtimes[0].reason).toMatch(/^runtime\.instance-id: the runtime is instance/);
      expect(j.runtimes[0].instance_id).toBe(twin.core.instanceId!.toString("hex"));
      // The file's runtime is not initialised: it reports no instance and is refused too.
      const none = await cli("--url", server.url, ...common);
      expect(none.code).toBe(1);
      expect(none.out).toMatch(/REFUSED: runtime\.instance-id: .*reports none/);
      expect((await cli("--url", original.url, ...common.slice(0, -1), "zz")).err).toMatch(/--instance-id: must be 64/);
    } finally {
      await original.close();
      await twin.close();
    }
  });

  it("exit 1 without the platform's anchor (untrusted root)", async () => {
    // Against real roots the instance must be named (--host-data) or waived (--any-instance) first.
    const unbound = await cli("--url", server.url, "--measurement", MEASUREMENT, "--kds", "off");
    expect(unbound.code).toBe(1);
    expect(unbound.out).toMatch(/REFUSED: runtime\.instance-binding: no HOST_DATA/);
    const r = await cli("--url", server.url, "--measurement", MEASUREMENT, "--kds", "off", "--any-instance");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/REFUSED: snp\./);
  });

  it("exit 2 for usage errors: no URL, no expected measurement, bad values", async () => {
    expect((await cli("--measurement", MEASUREMENT)).code).toBe(2);
    const tofu = await cli("--url", server.url);
    expect(tofu.code).toBe(2);
    expect(tofu.err).toMatch(/no trust on first use/);
    const bad = await cli("--url", server.url, "--measurement", "abc");
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--measurement/);
    expect((await cli("--url", server.url, "--measurement", MEASUREMENT, "--kds", "maybe")).err).toMatch(/--kds/);
    expect((await cli("--url", server.url, "--manifest", "/nonexistent.json")).err).toMatch(/--vcpus/);
  });
});
