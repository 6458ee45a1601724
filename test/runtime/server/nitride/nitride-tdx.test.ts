// TDX evidence through Nitride on the real server: MRTD + RTMR reference values, with the simulated
// Intel hierarchy trusted through nitride/config.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { decodeJwt } from "jose";
import { TdxSimulator } from "../../../../runtime/sim/tdx.js";
import { reportDataFor } from "../../../../runtime/attestation/binding.js";
import { startNitrideStack, type NitrideStack } from "./nitride-support.js";

const MRTD = Buffer.alloc(48, 0xc3);
const RTMRS = [0, 1, 2, 3].map((i) => Buffer.alloc(48, 0x10 + i));
const hex = (b: Buffer) => b.toString("hex");

let s: NitrideStack;
let tdx: TdxSimulator;
beforeAll(async () => {
  s = await startNitrideStack();
  tdx = await TdxSimulator.create();
  const r = await s.rt.api("PUT", "nitride/config", { simulated_tdx_roots: [tdx.rootFingerprint], intel_pcs: "off" });
  expect(r.status).toBe(200);
  const w = await s.rt.api("PUT", "nitride/workloads/tdx-app", {
    platforms: ["tdx"],
    reference_values: { tdx: [{ mrtd: hex(MRTD), rtmrs: RTMRS.map(hex) }] },
    secrets: { kv: [] },
  });
  expect(w.status, JSON.stringify(w.body)).toBe(200);
}, 60_000);
afterAll(async () => {
  await s?.rt.close();
});

async function attestTdx(rtmrs: Buffer[]) {
  const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: "tdx-app" }, "");
  const spki = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "der", type: "spki" });
  const quote = tdx.quote({
    mrTd: MRTD,
    rtmrs,
    reportData: reportDataFor(Buffer.from(ch.body.data.nonce, "base64url"), spki),
  });
  return s.rt.api(
    "POST",
    "nitride/attest",
    {
      workload_id: "tdx-app",
      nonce: ch.body.data.nonce,
      ephemeral_public_key: spki.toString("base64"),
      evidence: { kind: "tdx", quote: Buffer.from(quote).toString("base64") },
    },
    "",
  );
}

describe("Nitride with TDX evidence (simulated Intel hierarchy)", () => {
  it("accepts a quote whose MRTD and RTMRs match; the token carries them", async () => {
    const r = await attestTdx(RTMRS);
    expect(r.status, JSON.stringify(r.body.data?.verdict?.checks?.filter((c: { ok: boolean }) => !c.ok))).toBe(200);
    const claims = decodeJwt(r.body.data.token);
    expect(claims).toMatchObject({ sub: "tdx-app", platform: "tdx", measurement: hex(MRTD), simulated: true });
    expect(claims.rtmrs).toEqual(RTMRS.map(hex));
  });

  it("refuses a quote with a different RTMR (e.g. another kernel command line)", async () => {
    const r = await attestTdx([RTMRS[0], RTMRS[1], Buffer.alloc(48, 0xee), RTMRS[3]]);
    expect(r.status).toBe(403);
    const failed = r.body.data.verdict.checks.filter((c: { ok: boolean }) => !c.ok);
    expect(failed.map((c: { id: string }) => c.id)).toEqual(["nitride.reference-values"]);
  });

  it("refuses SNP-only workloads for TDX evidence (platform check)", async () => {
    const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: "web" }, "");
    const spki = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "der", type: "spki" });
    const quote = tdx.quote({
      mrTd: MRTD,
      rtmrs: RTMRS,
      reportData: reportDataFor(Buffer.from(ch.body.data.nonce, "base64url"), spki),
    });
    const r = await s.rt.api(
      "POST",
      "nitride/attest",
      {
        workload_id: "web",
        nonce: ch.body.data.nonce,
        ephemeral_public_key: spki.toString("base64"),
        evidence: { kind: "tdx", quote: Buffer.from(quote).toString("base64") },
      },
      "",
    );
    expect(r.status).toBe(403);
    const failed = r.body.data.verdict.checks.filter((c: { ok: boolean }) => !c.ok).map((c: { id: string }) => c.id);
    expect(failed).toContain("nitride.platform");
  });
});
