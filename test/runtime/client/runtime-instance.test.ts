// Which runtime, not only which image: a twin of the runtime — the same image (measurement) launched with the
// same public HOST_DATA, on genuine hardware, but initialised by someone else — has another instance id, and a
// verifier holding the original's id refuses it (runtime.instance-id). Real runtimes over HTTPS, simulated SNP.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runtimeExpectation, verifyRuntime } from "../../../runtime/client/attested-tls.js";
import { createAttestedListener } from "../../../runtime/server/http/attested-tls.js";
import type { RunningServer } from "../../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../../runtime/sim/snp.js";
import {
  expectationFor,
  initUnseal,
  insecureGet,
  startAttestedRuntime,
  startRelay,
} from "../attested-runtime-support.js";

const HOST_DATA = "5a".repeat(32);
let original: RunningServer;
let twin: RunningServer;
let sealed: RunningServer;
let sim: SnpSimulator;
let originalId: string;
let twinListener: Awaited<ReturnType<typeof createAttestedListener>>;

beforeAll(async () => {
  ({ server: original, sim } = await startAttestedRuntime({ hostData: HOST_DATA }));
  twinListener = await createAttestedListener(["127.0.0.1"]);
  ({ server: twin } = await startAttestedRuntime({ hostData: HOST_DATA, listener: twinListener }));
  ({ server: sealed } = await startAttestedRuntime({ hostData: HOST_DATA }));
  await initUnseal(original);
  await initUnseal(twin);
  originalId = original.core.instanceId!.toString("hex");
});
afterAll(async () => {
  await original?.close();
  await twin?.close();
  await sealed?.close();
});

const expectInstance = (runtimeInstanceId?: string) =>
  runtimeExpectation({
    ...expectationFor(sim),
    snpHostData: HOST_DATA,
    ...(runtimeInstanceId ? { runtimeInstanceId } : {}),
  });

describe("runtime instance binding", () => {
  it("the original is accepted and its evidence binds its instance id", async () => {
    const v = await verifyRuntime({ url: original.url, expected: expectInstance(originalId) });
    expect(v.reason).toBeUndefined();
    expect(v.ok).toBe(true);
    expect(v.instanceId).toBe(originalId);
    expect(v.checks.find((c) => c.id === "runtime.instance-id")?.ok).toBe(true);
  });

  it("a twin (same measurement, same HOST_DATA, initialised by someone else) is refused: runtime.instance-id", async () => {
    // Without the instance id the twin passes everything: that is the gap this closes.
    const loose = await verifyRuntime({ url: twin.url, expected: expectInstance() });
    expect(loose.ok).toBe(true);
    expect(loose.instanceId).toBeDefined();
    expect(loose.instanceId).not.toBe(originalId);
    const v = await verifyRuntime({ url: twin.url, expected: expectInstance(originalId) });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^runtime\.instance-id: the runtime is instance [0-9a-f]{16}…, not the expected/);
    // Everything else about it is genuine: only the instance differs.
    expect(v.checks.filter((c) => !c.ok).map((c) => c.id)).toEqual(["runtime.instance-id"]);
  });

  it("a sealed (or uninitialised) runtime reports no instance and is refused when one is expected", async () => {
    const r = await insecureGet(sealed.url, `/v1/sys/attestation?nonce=${"33".repeat(32)}`);
    expect(r.body.data.instance_id).toBe(null);
    const loose = await verifyRuntime({ url: sealed.url, expected: expectInstance() });
    expect(loose.ok).toBe(true);
    expect(loose.instanceId).toBeUndefined();
    const v = await verifyRuntime({ url: sealed.url, expected: expectInstance(originalId) });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^runtime\.instance-id: .*reports none/);
  });

  it("the instance id an answer claims counts only when REPORT_DATA binds it (forged instance_id, same TLS key)", async () => {
    // In front of the twin, with the twin's own key (so the TLS binding holds), claiming the original's id.
    const forger = await startRelay(twin.url, {
      listener: twinListener,
      rewrite: (t) => {
        const j = JSON.parse(t) as { data: { instance_id: string } };
        j.data.instance_id = originalId;
        return JSON.stringify(j);
      },
    });
    try {
      const v = await verifyRuntime({ url: forger.url, expected: expectInstance(originalId) });
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/^binding\.instance-id: .*forged instance_id/);
      expect(v.instanceId).toBeUndefined();
    } finally {
      await forger.close();
    }
  });

  it("replayed evidence of the original (an old nonce) is still refused, in front of the twin", async () => {
    const old = await insecureGet(original.url, `/v1/sys/attestation?nonce=${"44".repeat(32)}`);
    expect(old.body.data.instance_id).toBe(originalId);
    const replay = await startRelay(twin.url, { replay: JSON.stringify(old.body) });
    try {
      const v = await verifyRuntime({ url: replay.url, expected: expectInstance(originalId) });
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/^binding\.nonce-fresh: .*replayed evidence/);
    } finally {
      await replay.close();
    }
  });

  it("runtimeExpectation names a malformed runtimeInstanceId", () => {
    expect(() => runtimeExpectation({ ...expectationFor(sim), runtimeInstanceId: "AB".repeat(32) })).toThrow(
      /attestation\.runtimeInstanceId: must be 64 lower-case hex digits/,
    );
    expect(() => runtimeExpectation({ ...expectationFor(sim), runtimeInstanceId: "ab" })).toThrow(/runtimeInstanceId/);
  });
});
