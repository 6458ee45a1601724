// The runtime's attested TLS with the vTPM half (AWS/GCE, where the launch digest names only the provider's
// firmware): real HTTPS, simulated SNP reports, a real software TPM per "VM" (swtpm) extended with a synthetic
// measured boot. The verifier must see the quote signed by the AK REPORT_DATA binds, over SHA-256(REPORT_DATA), the
// PCRs the event log replays to, and boot events meeting the boot policy; every refusal names its check.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { runtimeExpectation, verifyRuntime, type RuntimeExpectation } from "../../../runtime/client/attested-tls.js";
import { createAttestedListener, type AttestedListener } from "../../../runtime/server/http/attested-tls.js";
import type { RunningServer } from "../../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../../runtime/sim/snp.js";
import { wireVtpm } from "../../../runtime/guest/evidence/vtpm.js";
import type { VtpmPolicy } from "../../../runtime/attestation/tpm/policy.js";
import { haveSwtpm } from "../../support/swtpm.js";
import { DEFAULT_CMDLINE } from "../attestation/tpm-fixtures.js";
import { expectationFor, insecureGet, startAttestedRuntime, startRelay } from "../attested-runtime-support.js";
import { bootTpm, goodBootPolicy, type BootedTpm } from "../vtpm-runtime-support.js";

const run = haveSwtpm();

describe.runIf(run)("verifyRuntime with a measured-boot (vtpm) expectation", () => {
  let sim: SnpSimulator;
  let good: BootedTpm;
  let evil: BootedTpm;
  let other: BootedTpm;
  let listener: AttestedListener;
  let server: RunningServer;
  let evilServer: RunningServer;
  let plain: RunningServer;

  beforeAll(async () => {
    good = await bootTpm();
    // The same image's TPM, but booted with a root shell on the kernel command line.
    evil = await bootTpm({ cmdline: DEFAULT_CMDLINE + " init=/bin/sh" });
    // A second genuine-looking TPM with a clean boot: the source of a relayed quote.
    other = await bootTpm();
    listener = await createAttestedListener(["127.0.0.1"]);
    ({ server, sim } = await startAttestedRuntime({ attestationBody: good.stanza, listener }));
    ({ server: evilServer } = await startAttestedRuntime({ attestationBody: evil.stanza }));
    ({ server: plain } = await startAttestedRuntime());
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await evilServer?.close();
    await plain?.close();
    await good?.stop();
    await evil?.stop();
    await other?.stop();
  });

  const expecting = (vtpm?: VtpmPolicy): RuntimeExpectation => {
    const e = runtimeExpectation(expectationFor(sim));
    return vtpm ? { ...e, policy: { ...e.policy, vtpm } } : e;
  };
  /** The boot policy, with every test TPM's AK pinned (the cloud vTPMs the deployer registered). */
  const pinned = (measuredBoot = goodBootPolicy()): VtpmPolicy => ({
    measuredBoot,
    akPins: [good.akSha256, evil.akSha256, other.akSha256],
  });
  const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

  it("accepts the runtime booted as the boot policy says, listing every vTPM check", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expecting(pinned()) });
    expect(v.reason).toBeUndefined();
    expect(v.ok).toBe(true);
    expect(v.spkiSha256).toBe(server.attestedSpkiSha256);
    const ids = v.checks.map((c) => c.id);
    for (const id of [
      "runtime.vtpm-policy",
      "runtime.vtpm",
      "policy.report-data",
      "vtpm.ak-binding",
      "tpm.quote-signature",
      "tpm.nonce",
      "tpm.pcr-digest",
      "tpm.event-log-replay",
      "vtpm.ak-authenticated",
      "boot.applications",
      "boot.kernel-cmdline",
      "boot.initrd",
      "boot.secure-boot",
      "binding.nonce-fresh",
      "binding.tls-key",
      "binding.vtpm-ak",
    ])
      expect(ids).toContain(id);
    expect(v.checks.every((c) => c.ok)).toBe(true);
  }, 60_000);

  it("the endpoint says which binding it used and the quote's qualifying data is SHA-256(REPORT_DATA)", async () => {
    const nonce = "5a".repeat(32);
    const r = await insecureGet(server.url, `/v1/sys/attestation?nonce=${nonce}`);
    expect(r.status).toBe(200);
    expect(r.body.data.binding).toBe("buckypaper-runtime-tls-vtpm-v1");
    expect(r.body.data.ak_sha256).toBe(good.akSha256);
    const vt = r.body.data.evidence.vtpm;
    expect(Object.keys(vt).sort()).toEqual(["ak_public", "event_log", "pcrs", "quote", "signature"]);
    // TPMS_ATTEST: magic(4) type(2) TPM2B_NAME qualifiedSigner, then TPM2B_DATA extraData.
    const attest = Buffer.from(vt.quote, "base64");
    const signerLen = attest.readUInt16BE(6);
    const extraLen = attest.readUInt16BE(8 + signerLen);
    const extra = attest.subarray(10 + signerLen, 10 + signerLen + extraLen);
    const rd = Buffer.from(r.body.data.report_data, "hex");
    expect(extra.toString("hex")).toBe(createHash("sha256").update(rd).digest("hex"));
  }, 60_000);

  it("refuses another boot policy (another kernel command line), naming boot.kernel-cmdline", async () => {
    const p = goodBootPolicy();
    p.kernelCmdline = { ...p.kernelCmdline!, allowed: [DEFAULT_CMDLINE + " quiet"] };
    const v = await verifyRuntime({ url: server.url, expected: expecting(pinned(p)) });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^boot\.kernel-cmdline:/);
    expect(failed(v)).toEqual(["boot.kernel-cmdline"]);
  }, 60_000);

  it("refuses a runtime whose (genuine, pinned) vTPM measured another command line", async () => {
    const v = await verifyRuntime({ url: evilServer.url, expected: expecting(pinned()) });
    expect(v.ok).toBe(false);
    expect(failed(v)).toEqual(["boot.kernel-cmdline"]);
  }, 60_000);

  it("refuses a quote from a second TPM relayed with the genuine report (AK not the one REPORT_DATA binds)", async () => {
    // Same TLS key as the runtime: only the vTPM half is swapped, for a quote of a clean boot from another TPM
    // over the very qualifying data the genuine report's REPORT_DATA gives.
    const relay = await startRelay(server.url, {
      listener,
      rewrite: async (text) => {
        const body = JSON.parse(text);
        const q = createHash("sha256").update(Buffer.from(body.data.report_data, "hex")).digest();
        body.data.evidence.vtpm = wireVtpm(await other.vtpm.collect(q));
        return JSON.stringify(body);
      },
    });
    try {
      const v = await verifyRuntime({ url: relay.url, expected: expecting(pinned()) });
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/^binding\.vtpm-ak:.*another TPM/);
      expect(failed(v)).toEqual(
        expect.arrayContaining(["policy.report-data", "vtpm.ak-binding", "tpm.nonce", "binding.vtpm-ak"]),
      );
      // The nonce and the TLS key are right: only the AK half is named.
      expect(failed(v)).not.toContain("binding.tls-key");
      expect(failed(v)).not.toContain("binding.nonce-fresh");
    } finally {
      await relay.close();
    }
  }, 60_000);

  it("refuses a replayed answer (stale nonce) on the runtime's own key", async () => {
    const old = await insecureGet(server.url, `/v1/sys/attestation?nonce=${"77".repeat(32)}`);
    expect(old.status).toBe(200);
    const relay = await startRelay(server.url, { listener, replay: JSON.stringify(old.body) });
    try {
      const v = await verifyRuntime({ url: relay.url, expected: expecting(pinned()) });
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/^binding\.nonce-fresh:.*replayed/);
      expect(failed(v)).toContain("tpm.nonce");
    } finally {
      await relay.close();
    }
  }, 60_000);

  it("refuses a runtime that sends no vTPM part when the expectation requires one", async () => {
    const v = await verifyRuntime({ url: plain.url, expected: expecting(pinned()) });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^runtime\.vtpm-missing:/);
  }, 60_000);

  it("refuses the vTPM half stripped by a man in the middle (downgrade to a plain answer)", async () => {
    const relay = await startRelay(server.url, {
      listener,
      rewrite: (text) => {
        const body = JSON.parse(text);
        delete body.data.evidence.vtpm;
        delete body.data.ak_sha256;
        body.data.binding = "buckypaper-runtime-tls-v2";
        return JSON.stringify(body);
      },
    });
    try {
      const withPolicy = await verifyRuntime({ url: relay.url, expected: expecting(pinned()) });
      expect(withPolicy.reason).toMatch(/^runtime\.vtpm-missing:/);
      // Even a verifier without a boot policy is not fooled: REPORT_DATA is in the vTPM domain, not the plain one.
      const without = await verifyRuntime({ url: relay.url, expected: expecting() });
      expect(without.ok).toBe(false);
      expect(failed(without)).toContain("policy.report-data");
    } finally {
      await relay.close();
    }
  }, 60_000);

  it("refuses an AK that REPORT_DATA binds but nothing authenticates as the cloud's vTPM", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expecting({ measuredBoot: goodBootPolicy() }) });
    expect(v.ok).toBe(false);
    expect(failed(v)).toEqual(["vtpm.ak-authenticated"]);
    // The loud opt-out accepts it (the runtime path on a cloud whose AK cannot be authenticated yet).
    const loud = await verifyRuntime({
      url: server.url,
      expected: expecting({ measuredBoot: goodBootPolicy(), allowUnauthenticatedAk: true }),
    });
    expect(loud.reason).toBeUndefined();
    expect(loud.ok).toBe(true);
  }, 60_000);

  it("refuses a vtpm expectation without a boot policy", async () => {
    const none = await verifyRuntime({ url: server.url, expected: expecting({ akPins: [good.akSha256] }) });
    expect(none.reason).toMatch(/^runtime\.vtpm-policy:.*measuredBoot/);
  }, 60_000);

  it("the plain form (provider connections, the enclaivelet's runtimeAttestation) carries it in its policy JSON", async () => {
    const plainForm = (vtpm: VtpmPolicy) =>
      runtimeExpectation({ ...expectationFor(sim), policy: JSON.stringify({ vtpm }) });
    const ok = await verifyRuntime({ url: server.url, expected: plainForm(pinned()) });
    expect(ok.reason).toBeUndefined();
    expect(ok.ok).toBe(true);
    expect(ok.checks.map((c) => c.id)).toContain("boot.kernel-cmdline");
    const missing = await verifyRuntime({ url: plain.url, expected: plainForm(pinned()) });
    expect(missing.reason).toMatch(/^runtime\.vtpm-missing:/);
    expect(() =>
      runtimeExpectation({ ...expectationFor(sim), policy: JSON.stringify({ vtpm: { akPins: ["x"] } }) }),
    ).toThrow(/attestation\.policy: .*vtpm\.akPins\[0\]/);
  }, 60_000);

  it("without a boot policy in the expectation nothing changes: the vTPM runtime verifies as before", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expecting() });
    expect(v.reason).toBeUndefined();
    expect(v.ok).toBe(true);
    expect(v.checks.find((c) => c.id === "runtime.vtpm")?.detail).toMatch(/no vtpm policy/);
    expect(v.checks.some((c) => c.id.startsWith("boot."))).toBe(false);
    const p = await verifyRuntime({ url: plain.url, expected: expecting() });
    expect(p.ok).toBe(true);
  }, 60_000);
});
