// The verifier's side of attested TLS against a real runtime (HTTPS, simulated SNP evidence): accepted only
// for the expected measurement, on the very connection whose key the evidence binds, for a fresh nonce.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AttestedRuntimes,
  RuntimeAttestationError,
  connectPinned,
  runtimeExpectation,
  verifyReplicas,
  verifyRuntime,
} from "../../../runtime/client/attested-tls.js";
import type { RunningServer } from "../../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../../runtime/sim/snp.js";
import { createSnpSimulator } from "../../../runtime/sim/snp.js";
import {
  MEASUREMENT,
  OTHER_MEASUREMENT,
  expectationFor,
  insecureGet,
  startAttestedRuntime,
  startRelay,
} from "../attested-runtime-support.js";

let server: RunningServer;
let replica: RunningServer;
let sim: SnpSimulator;

beforeAll(async () => {
  ({ server, sim } = await startAttestedRuntime());
  ({ server: replica } = await startAttestedRuntime());
});
afterAll(async () => {
  await server?.close();
  await replica?.close();
});

const expected = (m = [MEASUREMENT]) => runtimeExpectation(expectationFor(sim, m));

describe("verifyRuntime", () => {
  it("accepts the expected measurement and returns the SPKI of the connection as the pin", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expected() });
    expect(v.reason).toBeUndefined();
    expect(v.ok).toBe(true);
    expect(v.simulated).toBe(true);
    expect(v.measurement).toBe(MEASUREMENT);
    expect(v.spkiSha256).toBe(server.attestedSpkiSha256);
    const ids = v.checks.map((c) => c.id);
    for (const id of ["runtime.expected-measurement", "tls.connect", "runtime.evidence", "policy.measurement"])
      expect(ids).toContain(id);
    expect(v.checks.filter((c) => c.id.startsWith("binding.")).every((c) => c.ok)).toBe(true);
  });

  it("refuses a runtime running another measurement, naming it", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expected([OTHER_MEASUREMENT]) });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^policy\.measurement:/);
  });

  it("refuses without an expected measurement (no trust on first use)", async () => {
    const e = runtimeExpectation({ ...expectationFor(sim), snpMeasurements: undefined });
    const v = await verifyRuntime({ url: server.url, expected: e });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^runtime\.expected-measurement: .*first use/);
  });

  it("refuses evidence from an untrusted platform (another simulated chip)", async () => {
    const other = await createSnpSimulator({ product: "Milan", rsaBits: 2048 });
    const v = await verifyRuntime({
      url: server.url,
      expected: runtimeExpectation(expectationFor(other)),
    });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^snp\./);
  });

  it("refuses a man in the middle that relays genuine evidence but presents its own TLS key", async () => {
    const mitm = await startRelay(server.url);
    try {
      const v = await verifyRuntime({ url: mitm.url, expected: expected() });
      expect(v.ok).toBe(false);
      // The relayed evidence is genuine and fresh: only the key binding fails, and the reason says so.
      expect(v.checks.find((c) => c.id === "snp.signature" || c.id === "snp.vek-signature")?.ok ?? true).toBe(true);
      expect(v.checks.find((c) => c.id === "binding.nonce-fresh")?.ok).toBe(true);
      expect(v.reason).toMatch(/^binding\.tls-key: .*man in the middle/);
      expect(mitm.requests.some((r) => r.startsWith("GET /v1/sys/attestation"))).toBe(true);
    } finally {
      await mitm.close();
    }
  });

  it("refuses replayed evidence (an old nonce)", async () => {
    const old = await insecureGet(server.url, `/v1/sys/attestation?nonce=${"44".repeat(32)}`);
    const replay = await startRelay(server.url, { replay: JSON.stringify(old.body) });
    try {
      const v = await verifyRuntime({ url: replay.url, expected: expected() });
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/^binding\.nonce-fresh: .*replayed evidence/);
    } finally {
      await replay.close();
    }
  });

  it("refuses a server that is not an attested runtime, naming why", async () => {
    const plain = await startRelay("https://127.0.0.1:1", { replay: "{}" });
    try {
      const v = await verifyRuntime({ url: plain.url, expected: expected() });
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/^runtime\.evidence:/);
    } finally {
      await plain.close();
    }
    const http = await verifyRuntime({ url: server.url.replace("https:", "http:"), expected: expected() });
    expect(http.reason).toMatch(/https/);
  });

  it("verifies every replica of a set; one impostor refuses the set", async () => {
    const ok = await verifyReplicas([server.url, replica.url], { expected: expected() });
    expect(ok.map((v) => v.ok)).toEqual([true, true]);
    expect(ok[0].spkiSha256).not.toBe(ok[1].spkiSha256); // each replica has its own in-memory key
    const mitm = await startRelay(replica.url);
    try {
      const mixed = await verifyReplicas([server.url, mitm.url], { expected: expected() });
      expect(mixed.map((v) => v.ok)).toEqual([true, false]);
    } finally {
      await mitm.close();
    }
  });
});

describe("instance binding (HOST_DATA)", () => {
  it("a genuine runtime of the same image but another deployment's HOST_DATA is refused", async () => {
    const mine = "a1".repeat(32);
    const { server: deployed } = await startAttestedRuntime({ hostData: mine });
    try {
      const ok = await verifyRuntime({
        url: deployed.url,
        expected: runtimeExpectation({ ...expectationFor(sim), snpHostData: mine }),
      });
      expect(ok.reason).toBeUndefined();
      // `server` runs the same measurement (same public image) but was launched by someone else.
      const other = await verifyRuntime({
        url: server.url,
        expected: runtimeExpectation({ ...expectationFor(sim), snpHostData: mine }),
      });
      expect(other.ok).toBe(false);
      expect(other.reason).toMatch(/^policy\.host-data:/);
      expect(() => runtimeExpectation({ ...expectationFor(sim), snpHostData: "12" })).toThrow(/snpHostData/);
    } finally {
      await deployed.close();
    }
  });

  it("an SEV-SNP expectation against real roots must pin HOST_DATA (or say allowAnyInstance): refused before contact", async () => {
    // No simulated anchor: the evidence could only verify to AMD's roots, so the instance must be named.
    const real = { snpMeasurements: [MEASUREMENT], kds: "offline" };
    const unbound = await verifyRuntime({ url: "https://127.0.0.1:1", expected: runtimeExpectation(real) });
    expect(unbound.ok).toBe(false);
    expect(unbound.reason).toMatch(/^runtime\.instance-binding: no HOST_DATA \(snpHostData\) given/);
    expect(unbound.checks.map((c) => c.id)).not.toContain("tls.connect");
    // Named, or explicitly waived: past that check (and then refused for the unreachable URL).
    for (const e of [
      { ...real, snpHostData: "a1".repeat(32) },
      { ...real, allowAnyInstance: true },
    ]) {
      const v = await verifyRuntime({ url: "https://127.0.0.1:1", expected: runtimeExpectation(e), timeoutMs: 2000 });
      expect(v.checks.find((c) => c.id === "runtime.instance-binding")?.ok).toBe(true);
      expect(v.reason).toMatch(/^tls\.connect:/);
    }
    expect(() => runtimeExpectation({ ...real, allowAnyInstance: "yes" as unknown as boolean })).toThrow(
      /attestation\.allowAnyInstance: must be true or false/,
    );
    // Simulated evidence (tests, the local stack): HOST_DATA stays optional, and the check says why.
    const sim1 = await verifyRuntime({ url: server.url, expected: expected() });
    expect(sim1.ok).toBe(true);
    expect(sim1.checks.find((c) => c.id === "runtime.instance-binding")?.detail).toMatch(/simulated evidence/);
  });
});

describe("TDX runtime expectations", () => {
  // MRTD measures the TD firmware only; the kernel (RTMR1) and its command line with the verity root and the initrd
  // (RTMR2) are what name the runtime's code. MRCONFIGID/MROWNER/MROWNERCONFIG, set by whoever launches the TD, are
  // the instance (HOST_DATA's role on SEV-SNP).
  const MRTD = "71".repeat(48);
  const url = "https://127.0.0.1:1";
  const tdxPolicy = (tdx: Record<string, unknown>) => JSON.stringify({ tdx });

  it("MRTD alone names no runtime code: refused before contact (runtime.expected-measurement)", async () => {
    for (const a of [
      { tdxMrTd: [MRTD], allowAnyInstance: true },
      { tdxMrTd: [MRTD], policy: tdxPolicy({ rtmr1: ["11".repeat(48)] }), allowAnyInstance: true },
    ]) {
      const v = await verifyRuntime({ url, expected: runtimeExpectation(a) });
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/^runtime\.expected-measurement: .*RTMR2/);
      expect(v.checks.map((c) => c.id)).not.toContain("tls.connect");
    }
  });

  it("a TDX expectation against real roots must pin the instance (MRCONFIGID/MROWNER/MROWNERCONFIG) or say allowAnyInstance", async () => {
    const code = { rtmr1: ["11".repeat(48)], rtmr2: ["12".repeat(48)] };
    const unbound = await verifyRuntime({
      url,
      expected: runtimeExpectation({ tdxMrTd: [MRTD], policy: tdxPolicy(code) }),
    });
    expect(unbound.ok).toBe(false);
    expect(unbound.reason).toMatch(/^runtime\.instance-binding: .*MRCONFIGID/);
    expect(unbound.checks.map((c) => c.id)).not.toContain("tls.connect");
    for (const a of [
      { tdxMrTd: [MRTD], policy: tdxPolicy({ ...code, mrConfigId: "a1".repeat(48) }) },
      { tdxMrTd: [MRTD], policy: tdxPolicy(code), allowAnyInstance: true },
    ]) {
      const v = await verifyRuntime({ url, expected: runtimeExpectation(a), timeoutMs: 2000 });
      expect(v.checks.find((c) => c.id === "runtime.expected-measurement")?.ok).toBe(true);
      expect(v.checks.find((c) => c.id === "runtime.instance-binding")?.ok).toBe(true);
      expect(v.reason).toMatch(/^tls\.connect:/);
    }
  });
});

describe("pinned connections", () => {
  it("connectPinned refuses a server presenting another key", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expected() });
    const s = await connectPinned(server.url, v.spkiSha256!);
    s.destroy();
    await expect(connectPinned(replica.url, v.spkiSha256!)).rejects.toThrow(/tls\.pinned-key/);
  });

  it("AttestedRuntimes verifies once per key and refuses an impostor before sending anything", async () => {
    const rt = new AttestedRuntimes();
    const a = await rt.ensure(server.url, expected());
    const b = await rt.ensure(server.url, expected());
    expect(b).toBe(a); // cached verdict for this SPKI
    const mitm = await startRelay(server.url);
    try {
      await expect(rt.connect(mitm.url, expected())).rejects.toThrow(RuntimeAttestationError);
      // The relay saw only the attestation request, never anything else.
      expect(mitm.requests.every((r) => r.startsWith("GET /v1/sys/attestation"))).toBe(true);
    } finally {
      await mitm.close();
    }
  });

  it("runtimeExpectation names bad fields", () => {
    expect(() => runtimeExpectation({ snpMeasurements: ["xy"] })).toThrow(/attestation\.snpMeasurements\[0\]/);
    expect(() => runtimeExpectation({ snpMeasurements: [MEASUREMENT], kds: "maybe" })).toThrow(/attestation\.kds/);
    expect(() => runtimeExpectation({ policy: "{" })).toThrow(/attestation\.policy/);
    expect(() =>
      runtimeExpectation({
        snpMeasurements: [MEASUREMENT],
        policy: JSON.stringify({ snp: { measurements: [MEASUREMENT] } }),
      }),
    ).toThrow(/give one/);
  });
});
