// The verifier memoises parsed certificates and verified chain signatures by DER digest (certs.ts) and
// checks the report signature on the thread pool (verify.ts). With a warm cache it must still judge
// every verification on its own: validity against that verification's time, a different VCEK on its own
// chain, and every report's own signature.
import { beforeAll, describe, expect, it } from "vitest";
import { appraise } from "../../../runtime/attestation/appraise.js";
import type { TrustConfig } from "../../../runtime/attestation/policy.js";
import type { Verdict } from "../../../runtime/attestation/types.js";
import { parseReport } from "../../../runtime/attestation/snp/abi.js";
import { parseVek } from "../../../runtime/attestation/snp/certs.js";
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import { reportSignatureValid, reportSignatureValidAsync } from "../../../runtime/attestation/snp/verify.js";

const failed = (v: Verdict) => v.checks.filter((c) => !c.ok).map((c) => c.id);
const YEAR_MS = 365 * 24 * 3600 * 1000;
let sim: SnpSimulator;
let trust: TrustConfig;

beforeAll(async () => {
  sim = await createSnpSimulator({ product: "Milan", rsaBits: 2048 });
  trust = { snp: { simulated: [sim.trustAnchor] } };
});

describe("SNP verification with a warm certificate cache", () => {
  it("a cached chain is still refused at a time outside the VCEK's validity, and accepted again inside it", async () => {
    const r = await sim.report({});
    const ev = { kind: "snp" as const, report: r.report, certTable: r.certTable };
    expect(failed(await appraise(ev, {}, { trust }))).toEqual([]);
    const later = await appraise(ev, {}, { trust, now: new Date(Date.now() + 8 * YEAR_MS) });
    expect(failed(later)).toEqual(["snp.chain.validity"]);
    expect(later.checks.find((c) => c.id === "snp.chain.validity")!.detail).toMatch(/SEV-VCEK is valid only .* not at/);
    const earlier = await appraise(ev, {}, { trust, now: new Date(Date.now() - 3 * 24 * 3600 * 1000) });
    expect(failed(earlier)).toEqual(expect.arrayContaining(["snp.chain.validity"]));
    // The refusals left nothing behind: the same evidence now is accepted.
    expect((await appraise(ev, {}, { trust })).accepted).toBe(true);
  });

  it("a different VCEK with the same names, chip and TCB is not served from the cache of the genuine one", async () => {
    const genuine = await sim.report({});
    expect(
      (await appraise({ kind: "snp", report: genuine.report, certTable: genuine.certTable }, {}, { trust })).accepted,
    ).toBe(true);
    // Another hierarchy issues a VCEK with identical subject/issuer names for the same chip.
    const rogue = await createSnpSimulator({ product: "Milan", rsaBits: 2048, chipId: sim.chipId });
    const fake = await rogue.report({});
    expect(parseVek(fake.vek).subject).toBe(parseVek(genuine.vek).subject);
    expect(parseVek(fake.vek).sha256).not.toBe(parseVek(genuine.vek).sha256);
    const v = await appraise(
      { kind: "snp", report: fake.report, vek: fake.vek, caChain: [sim.caCerts.ask, sim.caCerts.ark] },
      {},
      { trust },
    );
    expect(v.accepted).toBe(false);
    expect(failed(v)).toContain("snp.chain.vek");
    // The rogue report with the genuine (cached) VCEK: chain fine, signature not.
    const swapped = await appraise(
      { kind: "snp", report: fake.report, vek: genuine.vek, caChain: [sim.caCerts.ask, sim.caCerts.ark] },
      {},
      { trust },
    );
    expect(failed(swapped)).toEqual(["snp.signature"]);
  });

  it("every report's signature is checked even when its VCEK and chain are cached", async () => {
    const r = await sim.report({});
    const ev = { kind: "snp" as const, report: r.report, certTable: r.certTable };
    expect((await appraise(ev, {}, { trust })).accepted).toBe(true);
    for (const offset of [0x050 /* a signed field: REPORT_DATA */, 0x2a0 /* signature R */]) {
      const bad = new Uint8Array(r.report);
      bad[offset] ^= 1;
      const v = await appraise({ ...ev, report: bad }, {}, { trust });
      expect(failed(v)).toContain("snp.signature");
      expect(v.accepted).toBe(false);
    }
  });

  it("the thread-pool signature check agrees with the synchronous one and never throws", async () => {
    const r = await sim.report({});
    const report = parseReport(r.report);
    const vek = parseVek(r.vek);
    expect(await reportSignatureValidAsync(report, vek)).toBe(true);
    expect(reportSignatureValid(report, vek)).toBe(true);
    const zeroSig = { ...report, signatureR: new Uint8Array(48), signatureS: new Uint8Array(48) };
    expect(await reportSignatureValidAsync(zeroSig, vek)).toBe(false);
    expect(reportSignatureValid(zeroSig, vek)).toBe(false);
    const oversized = { ...report, signatureR: new Uint8Array(72), signatureS: new Uint8Array(72) };
    expect(await reportSignatureValidAsync(oversized, vek)).toBe(false);
    const otherKey = parseVek((await (await createSnpSimulator({ product: "Milan", rsaBits: 2048 })).report({})).vek);
    expect(await reportSignatureValidAsync(report, otherKey)).toBe(false);
  });
});
