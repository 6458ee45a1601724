// The provider's side of the runtime's instance binding: the deployer learns the runtime's instance id from its
// attested evidence right after initialising it (over the key it verified) and from then on every provider
// connection requires it. A twin — the same image launched with the same public HOST_DATA on genuine hardware,
// initialised by someone else, who holds its root token — is refused with runtime.instance-id: the deployer's
// credential never reaches it, nothing is written to it. Real HTTPS runtimes; simulated SNP evidence.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { initAttestedRuntime, reattestRuntime, type AttestedInitOutputs } from "../../provider/attested-init.js";
import { runtimeRequest } from "../../provider/client.js";
import { RuntimeAttestationError } from "../../runtime/client/attested-tls.js";
import { forgetDeployerTokens } from "../../runtime/client/deployer.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import { createAttestedListener } from "../../runtime/server/http/attested-tls.js";
import type { RunningServer } from "../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../runtime/sim/snp.js";
import {
  expectationFor,
  initUnseal,
  kvStatus,
  startAttestedRuntime,
  startRelay,
} from "../runtime/attested-runtime-support.js";

const HOST_DATA = "6b".repeat(32);
let original: RunningServer;
let twin: RunningServer;
let twinRoot: string;
let twinListener: Awaited<ReturnType<typeof createAttestedListener>>;
let sim: SnpSimulator;
let dir: string;
let out: AttestedInitOutputs;

const base = (): RuntimeAttestation => ({ ...expectationFor(sim), snpHostData: HOST_DATA });
const inputs = (url: string) => ({
  url,
  attestation: base(),
  keyShares: 1,
  keyThreshold: 1,
  deployerKeyFile: path.join(dir, "deployer.pem"),
  localRecoveryKeyFile: path.join(dir, "recovery.jwk"),
  rootWrites: [{ path: "sys/mounts/secret", body: { type: "kv", options: { version: "2" } } }],
  timeoutMs: 30_000,
});

beforeAll(async () => {
  ({ server: original, sim } = await startAttestedRuntime({ hostData: HOST_DATA }));
  twinListener = await createAttestedListener(["127.0.0.1"]);
  ({ server: twin } = await startAttestedRuntime({ hostData: HOST_DATA, listener: twinListener }));
  dir = mkdtempSync(path.join(os.tmpdir(), "bk-runtime-twin-"));
  out = await initAttestedRuntime(inputs(original.url));
  // The attacker's twin: initialised by the attacker (root token in hand), KV mounted like the original's.
  twinRoot = await initUnseal(twin);
});
afterAll(async () => {
  await original?.close();
  await twin?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a twin of the bootstrapped runtime", () => {
  it("the bootstrap learns the instance id its evidence binds, and returns it (public)", () => {
    expect(out.runtimeInstanceId).toBe(original.core.instanceId!.toString("hex"));
    expect(out.checks).toContain(
      `runtime.instance-id: instance ${out.runtimeInstanceId!.slice(0, 16)}… reported (no instance id expected)`,
    );
    expect(twin.core.instanceId!.toString("hex")).not.toBe(out.runtimeInstanceId);
  });

  it("a provider connection pinned to the instance writes to the original", async () => {
    forgetDeployerTokens();
    const conn = {
      url: original.url,
      deployer: out.deployer!,
      attestation: { ...base(), runtimeInstanceId: out.runtimeInstanceId },
    };
    await runtimeRequest(conn, "POST", "secret/data/app/db", { data: { password: "p" } });
    expect(original.core.instanceId).toBeDefined();
  });

  it("the same connection to the twin is refused (runtime.instance-id): no login, nothing written", async () => {
    forgetDeployerTokens();
    // A recorder in front of the twin with the twin's own key (so attested TLS holds): sees every request.
    const front = await startRelay(twin.url, { listener: twinListener });
    try {
      const conn = {
        url: front.url,
        deployer: out.deployer!,
        attestation: { ...base(), runtimeInstanceId: out.runtimeInstanceId },
      };
      const e = await runtimeRequest(conn, "POST", "secret/data/app/db", { data: { password: "p" } }).catch(
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(RuntimeAttestationError);
      expect((e as RuntimeAttestationError).reason).toMatch(/^runtime\.instance-id: the runtime is instance/);
      expect(front.requests.length).toBeGreaterThan(0);
      expect(front.requests.every((r) => r.startsWith("GET /v1/sys/attestation?nonce="))).toBe(true);
      expect(await kvStatus(twin, twinRoot, "app/db")).toBe(404);
      // Without the instance pin (before this change) the same request would have logged in there.
      const loose = await runtimeRequest(
        { url: front.url, token: twinRoot, attestation: base() },
        "GET",
        "sys/mounts",
      ).catch((x: unknown) => x);
      expect(loose).not.toBeInstanceOf(RuntimeAttestationError);
    } finally {
      await front.close();
    }
  });

  it("a later `pulumi up` (reattest) refuses the twin where the original stood", async () => {
    const e = await reattestRuntime({ ...inputs(twin.url), runtimeInstanceId: out.runtimeInstanceId }).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(RuntimeAttestationError);
    expect((e as RuntimeAttestationError).reason).toMatch(/^runtime\.instance-id:/);
    const again = await reattestRuntime({ ...inputs(original.url), runtimeInstanceId: out.runtimeInstanceId });
    expect(again.runtimeInstanceId).toBe(out.runtimeInstanceId);
  });
});
