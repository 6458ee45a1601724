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
import { initAttestedRuntime, reattestRuntime, type AttestedInitInputs } from "../../provider/attested-init.js";
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
  });
});
