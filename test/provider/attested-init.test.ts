// The trust bootstrap of a runtime that proves what it runs (provider/attested-init.ts, what the VhsmGuest
// resource does after booting the runtime's guest): verified first — a wrong measurement or a man in the middle
// is refused and the runtime stays uninitialised (nothing but the evidence request reached it) — then
// initialised and bootstrapped over connections pinned to the attested key: the deployer credential works, the
// root token is revoked, the one recovery share opens only with the local recovery key, and no root token or
// unseal key is in the outputs. A real HTTPS runtime with attested TLS; simulated SNP evidence.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  initAttestedRuntime,
  reattestRuntime,
  verifyBeforeSending,
  type AttestedInitInputs,
} from "../../provider/attested-init.js";
import { instanceExpectation } from "../../provider/vhsm-guest-handlers.js";
import { instanceHostData, newInstanceId } from "../../provider/vhsm-instance.js";
import { runtimeRequest } from "../../provider/client.js";
import { RuntimeAttestationError } from "../../runtime/client/attested-tls.js";
import { decryptShare } from "../../runtime/client/recovery-share.js";
import { forgetDeployerTokens } from "../../runtime/client/deployer.js";
import type { RunningServer } from "../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../runtime/sim/snp.js";
import {
  MEASUREMENT,
  OTHER_MEASUREMENT,
  expectationFor,
  startAttestedRuntime,
  startRelay,
} from "../runtime/attested-runtime-support.js";

let server: RunningServer;
let sim: SnpSimulator;
let dir: string;

beforeAll(async () => {
  ({ server, sim } = await startAttestedRuntime());
  dir = mkdtempSync(path.join(os.tmpdir(), "bk-attested-init-"));
});
afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const inputs = (o: Partial<AttestedInitInputs> = {}): AttestedInitInputs => ({
  url: server.url,
  attestation: expectationFor(sim),
  keyShares: 1,
  keyThreshold: 1,
  deployerKeyFile: path.join(dir, "deployer.pem"),
  localRecoveryKeyFile: path.join(dir, "recovery.jwk"),
  rootWrites: [{ path: "nitride/config", body: { kds: "off" } }],
  timeoutMs: 30_000,
  ...o,
});

/** Asked over a verified connection: has anyone initialised it? */
async function initialized(): Promise<boolean> {
  const r = await runtimeRequest({ url: server.url, token: "-", attestation: expectationFor(sim) }, "GET", "sys/init");
  return (r.body as { initialized: boolean }).initialized;
}

describe("the attested trust bootstrap", () => {
  it("refuses a runtime whose measurement is not the expected one: nothing sent, nothing written here", async () => {
    const e = await initAttestedRuntime(inputs({ attestation: expectationFor(sim, [OTHER_MEASUREMENT]) })).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(RuntimeAttestationError);
    expect((e as RuntimeAttestationError).reason).toMatch(/^policy\.measurement:/);
    expect(await initialized()).toBe(false);
    expect(existsSync(path.join(dir, "deployer.pem"))).toBe(false);
    expect(existsSync(path.join(dir, "recovery.jwk"))).toBe(false);
  });

  it("refuses a man in the middle relaying the genuine evidence: only the evidence request went through", async () => {
    const mitm = await startRelay(server.url);
    try {
      const e = await initAttestedRuntime(inputs({ url: mitm.url })).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(RuntimeAttestationError);
      expect((e as RuntimeAttestationError).reason).toMatch(/^binding\.tls-key: .*man in the middle/);
      expect(mitm.requests.length).toBeGreaterThan(0);
      expect(mitm.requests.every((r) => r.startsWith("GET /v1/sys/attestation?nonce="))).toBe(true);
    } finally {
      await mitm.close();
    }
    expect(await initialized()).toBe(false);
  });

  it("no expected measurement: refused before connecting (no trust on first use)", async () => {
    const a = { ...expectationFor(sim), snpMeasurements: undefined };
    await expect(initAttestedRuntime(inputs({ attestation: a }))).rejects.toThrow(/runtime\.expected-measurement/);
    expect(await initialized()).toBe(false);
  });

  it("verified, then initialised and bootstrapped over the attested key; no root token or unseal key out", async () => {
    const out = await initAttestedRuntime(inputs());
    expect(out.measurement).toBe(MEASUREMENT);
    expect(out.tlsKeySha256).toMatch(/^[0-9a-f]{64}$/);
    expect(out.simulated).toBe(true);
    expect(out.verifiedBy).toMatch(/simulated SEV-SNP platform/);
    expect(out.checks.some((c) => c.startsWith("binding.tls-key:"))).toBe(true);
    // Learnt after init, over the same key: the instance id the unsealed runtime's evidence binds.
    expect(out.runtimeInstanceId).toBe(server.core.instanceId!.toString("hex"));
    expect(out.rootToken).toBeUndefined();
    expect(out.unsealKeys).toBeUndefined();
    expect(JSON.stringify(out)).not.toMatch(/"(root_token|keys_base64)"/);
    expect(await initialized()).toBe(true);
    // The deployer credential works over attested TLS; its key file is 0600.
    expect(statSync(path.join(dir, "deployer.pem")).mode & 0o777).toBe(0o600);
    forgetDeployerTokens();
    const who = await runtimeRequest(
      { url: server.url, deployer: out.deployer!, attestation: expectationFor(sim) },
      "GET",
      "auth/token/lookup-self",
    );
    expect(JSON.stringify(who.body)).toMatch(/bk-deployer/);
    // The one share is a JWE that the local recovery key opens.
    expect(out.recoveryShares).toHaveLength(1);
    expect(out.recoveryShares![0].split(".")).toHaveLength(5);
    const jwk = JSON.parse(readFileSync(path.join(dir, "recovery.jwk"), "utf8"));
    expect((await decryptShare(out.recoveryShares![0], jwk)).threshold).toBe(1);
    // A second bootstrap of the same runtime is refused by the runtime (already initialised).
    await expect(initAttestedRuntime(inputs({ deployerKeyFile: path.join(dir, "other.pem") }))).rejects.toThrow(
      /sys\/init|already/,
    );
    // After a restart the deployer verifies again and checks the seal: this one is unsealed.
    const again = await reattestRuntime({ ...inputs(), recoveryShares: out.recoveryShares });
    expect(again.autoUnsealed).toBe(true);
    expect(again.tlsKeySha256).toBe(out.tlsKeySha256);
    expect(again.runtimeInstanceId).toBe(out.runtimeInstanceId);
    const pinned = await reattestRuntime({ ...inputs(), runtimeInstanceId: out.runtimeInstanceId });
    expect(pinned.runtimeInstanceId).toBe(out.runtimeInstanceId);
  });
});

// Instance binding: the VhsmGuest resource launches its runtime with HOST_DATA = SHA-256 of its instance identity
// (provider/vhsm-instance.ts) and requires exactly that in every verification. Here the runtime's simulated PSP
// is given HOST_DATA the way QEMU's host-data= gives it; another instance of the same image (same measurement,
// same platform) or one launched without HOST_DATA is refused with policy.host-data before init.
describe("instance binding: the runtime guest's HOST_DATA", () => {
  const name = "buckypaper-test/dev/vhsm";
  const mine = instanceHostData(name, newInstanceId());
  const other = instanceHostData(name, newInstanceId());
  let launched: RunningServer;
  let idir: string;
  const keys = () => ({
    deployerKeyFile: path.join(idir, "deployer.pem"),
    localRecoveryKeyFile: path.join(idir, "recovery.jwk"),
  });
  beforeAll(async () => {
    ({ server: launched } = await startAttestedRuntime({ hostData: mine }));
    idir = mkdtempSync(path.join(os.tmpdir(), "bk-attested-instance-"));
  });
  afterAll(async () => {
    await launched?.close();
    if (idir) rmSync(idir, { recursive: true, force: true });
  });
  const initializedAt = async (url: string, hostData: string) =>
    (
      (
        await runtimeRequest(
          { url, token: "-", attestation: instanceExpectation(expectationFor(sim), hostData) },
          "GET",
          "sys/init",
        )
      ).body as { initialized: boolean }
    ).initialized;

  it("refuses the same image launched as another instance: policy.host-data, nothing sent", async () => {
    const e2 = await initAttestedRuntime(
      inputs({ ...keys(), url: launched.url, attestation: instanceExpectation(expectationFor(sim), other) }),
    ).catch((x: unknown) => x);
    expect(e2).toBeInstanceOf(RuntimeAttestationError);
    expect((e2 as RuntimeAttestationError).reason).toMatch(/^policy\.host-data: HOST_DATA [0-9a-f]{64} differs/);
    // Nothing but the evidence request was sent: still uninitialised, no credential or recovery key made here.
    expect(await initializedAt(launched.url, mine)).toBe(false);
    expect(existsSync(keys().deployerKeyFile)).toBe(false);
    expect(existsSync(keys().localRecoveryKeyFile)).toBe(false);
  });

  it("refuses a launch without HOST_DATA (all zeros) where this instance's is required", async () => {
    // `server` (the file's runtime) was launched without HOST_DATA.
    const e = await initAttestedRuntime(
      inputs({ ...keys(), attestation: instanceExpectation(expectationFor(sim), mine) }),
    ).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RuntimeAttestationError);
    expect((e as RuntimeAttestationError).reason).toMatch(
      new RegExp(`^policy\\.host-data: HOST_DATA ${"0".repeat(64)}`),
    );
  });

  it("accepts exactly this instance and reports the HOST_DATA its report carried", async () => {
    const s = await verifyBeforeSending(launched.url, instanceExpectation(expectationFor(sim), mine), 30_000);
    expect(s.hostData).toBe(mine);
    expect(s.checks).toContain("policy.host-data: HOST_DATA matches");
    expect(await initializedAt(launched.url, mine)).toBe(false);
  });
});
