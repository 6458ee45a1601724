// The recovery shares a Vhsm's runtime resource keeps in Pulumi state (AttestedRuntime: hardware and cloud guests;
// VhsmGuest shares the code) after an operator rekeyed the runtime (Vault's sys/rekey, `buckypaper runtime rekey`):
// the runtime reports the check value of its unseal key in sys/seal-status while unsealed; the resource records the
// one its shares belong to, and a refresh (the provider's read, what `pulumi refresh` calls) that finds another
// moves the shares into retiredRecoveryShares — kept for data from before the rekey, no longer presented as the way
// in. A sealed runtime, an unreachable one or an impostor teaches nothing: the state stays as it is. A real HTTPS
// runtime with attested TLS (simulated SNP), the provider's own handlers, a real rekey over HTTP.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { check, create, read, update } from "../../provider/attested-runtime-handlers.js";
import { runtimeRequest } from "../../provider/client.js";
import { retireIfRekeyed } from "../../provider/recovery-freshness.js";
import {
  createService,
  deleteService,
  ensureRunning,
  readService,
  type ServiceInputs,
} from "../../provider/service.js";
import { renderRuntimeConfig } from "../../runtime/server/http/config-render.js";
import { freePort } from "../support/net.js";
import { repoRoot } from "../support/shared.js";
import { decryptShare } from "../../runtime/client/recovery-share.js";
import type { RunningServer } from "../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../runtime/sim/snp.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import { OTHER_MEASUREMENT, expectationFor, startAttestedRuntime } from "../runtime/attested-runtime-support.js";

const HOST_DATA = "1d".repeat(32);
let server: RunningServer;
let sim: SnpSimulator;
let dir: string;

beforeAll(async () => {
  ({ server, sim } = await startAttestedRuntime({ hostData: HOST_DATA }));
  dir = mkdtempSync(path.join(os.tmpdir(), "bk-rekey-state-"));
});
afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const expectation = (o: Partial<RuntimeAttestation> = {}): RuntimeAttestation => ({
  ...expectationFor(sim),
  snpHostData: HOST_DATA,
  ...o,
});
/** Requests as an operator's CLI sends them: verified, no token (sys/rekey and sys/unseal need none). */
const operator = (method: "GET" | "PUT" | "POST", p: string, body?: unknown) =>
  runtimeRequest({ url: server.url, token: "-", attestation: expectation() }, method, p, body);
const sealStatus = async () =>
  (await operator("GET", "sys/seal-status")).body as { sealed: boolean; unseal_key_check: string | null };

describe("a Vhsm's recovery shares in state after a rekey", () => {
  it("bootstrap records the key the shares split; refresh retires them once the runtime was rekeyed, and only then", async () => {
    const { inputs, failures } = check("attested-runtime", {
      url: server.url,
      attestation: expectation(),
      launch: "launch-1",
      deployerKeyFile: path.join(dir, "deployer.pem"),
      localRecoveryKeyFile: path.join(dir, "recovery.jwk"),
      rootWrites: [{ path: "nitride/config", body: { kds: "off" } }],
      timeoutSeconds: 10,
    });
    expect(failures).toEqual([]);
    const { id, outs } = await create("attested-runtime", inputs);
    const initCheck = outs.unsealKeyCheck as string;
    expect(initCheck).toMatch(/^[0-9a-f]{32}$/);
    expect((await sealStatus()).unseal_key_check).toBe(initCheck);
    const shares = outs.recoveryShares as string[];
    expect(shares).toHaveLength(1);

    // Nothing changed: refresh keeps everything as it is.
    expect((await read("attested-runtime", id, outs)).props).toEqual(outs);

    // Sealed, the runtime names no key (null): refresh judges nothing.
    await server.core.seal();
    expect(await sealStatus()).toMatchObject({ sealed: true, unseal_key_check: null });
    expect((await read("attested-runtime", id, outs)).props).toEqual(outs);
    // `pulumi up` with the runtime sealed: the shares from state unseal it (they are still the key's).
    const jwk = JSON.parse(readFileSync(path.join(dir, "recovery.jwk"), "utf8"));
    const up = await update("attested-runtime", id, outs, { ...inputs });
    expect(up.outs.recoveryShares).toEqual(shares);
    expect(up.outs.unsealKeyCheck).toBe(initCheck);
    expect((await sealStatus()).sealed).toBe(false);

    // An operator rekeys (1 share → 1 share): the new share goes to the operator, not to Pulumi.
    const old = (await decryptShare(shares[0], jwk)).key;
    const started = (await operator("PUT", "sys/rekey/init", { secret_shares: 1, secret_threshold: 1 })).body as {
      nonce: string;
    };
    const done = (await operator("PUT", "sys/rekey/update", { key: old, nonce: started.nonce })).body as {
      complete: boolean;
      keys_base64: string[];
    };
    expect(done.complete).toBe(true);
    const rekeyedCheck = (await sealStatus()).unseal_key_check!;
    expect(rekeyedCheck).toMatch(/^[0-9a-f]{32}$/);
    expect(rekeyedCheck).not.toBe(initCheck);

    // What is not verified as this runtime is not believed: an expectation of another measurement (an impostor at
    // the address), or of another instance (a twin), leaves the state as it is although the key did change.
    for (const o of [
      { attestation: expectation({ snpMeasurements: [OTHER_MEASUREMENT] }) },
      { runtimeInstanceId: "2e".repeat(32) },
    ]) {
      const p = { ...up.outs, ...o };
      expect((await read("attested-runtime", id, p)).props).toEqual(p);
    }
    // Refresh: the shares are init's key's — retired, with the check of their key; nothing deleted.
    const refreshed = (await read("attested-runtime", id, up.outs)).props;
    expect(refreshed.recoveryShares).toEqual([]);
    expect(refreshed.unsealKeyCheck).toBe(rekeyedCheck);
    const retired = refreshed.retiredRecoveryShares as {
      unsealKeyCheck: string;
      recoveryShares: string[];
      reason: string;
    }[];
    expect(retired).toHaveLength(1);
    expect(retired[0]).toMatchObject({ unsealKeyCheck: initCheck, recoveryShares: shares });
    expect(retired[0].reason).toMatch(/rekeyed, and the new shares went to the operators/);
    for (const k of ["deployer", "runtimeInstanceId", "tlsKeySha256"]) expect(refreshed[k]).toEqual(up.outs[k]);
    // Idempotent: a second refresh changes nothing.
    expect((await read("attested-runtime", id, refreshed)).props).toEqual(refreshed);
    // The retired share really is dead: sealed, it does not unseal; the operator's new one does.
    await server.core.seal();
    await expect(operator("POST", "sys/unseal", { key: old })).rejects.toThrow(
      /HTTP 400: unseal failed: invalid key shares/,
    );
    // `pulumi up` from state that was never refreshed tries init's shares and says why they fail.
    await expect(update("attested-runtime", id, up.outs, { ...inputs })).rejects.toThrow(
      /The shares this resource holds are from init \(key check [0-9a-f]{8}…\): if the runtime was rekeyed since, they no longer unseal it/,
    );
    await operator("POST", "sys/unseal", { key: done.keys_base64[0] });
    expect((await sealStatus()).sealed).toBe(false);
    // `pulumi up` from the refreshed state keeps the retirement (and the unsealed runtime needs no share).
    const after = await update("attested-runtime", id, refreshed, { ...inputs });
    expect(after.outs.recoveryShares).toEqual([]);
    expect(after.outs.retiredRecoveryShares).toEqual(retired);
    expect(after.outs.unsealKeyCheck).toBe(rekeyedCheck);
  }, 120_000);

  it("retireIfRekeyed judges only two known check values that differ", () => {
    const p = { unsealKeyCheck: "aa".repeat(16), recoveryShares: ["jwe"] };
    expect(retireIfRekeyed(p, null)).toBe(p);
    expect(retireIfRekeyed(p, undefined)).toBe(p);
    expect(retireIfRekeyed(p, "not hex")).toBe(p);
    expect(retireIfRekeyed(p, "aa".repeat(16))).toBe(p);
    expect(retireIfRekeyed({ recoveryShares: ["jwe"] }, "bb".repeat(16))).toEqual({ recoveryShares: ["jwe"] });
    // The insecure opt-out's plain unseal keys are retired too (the output is secret).
    const insecure = retireIfRekeyed({ unsealKeyCheck: "aa".repeat(16), unsealKeys: ["k"] }, "bb".repeat(16));
    expect(insecure.unsealKeys).toBeUndefined();
    expect(insecure.retiredRecoveryShares).toMatchObject([{ unsealKeyCheck: "aa".repeat(16), unsealKeys: ["k"] }]);
  });
});

// The process mode (RuntimeService: a `Vhsm` without a guest) the same way: a real `runtime server` process (dist),
// its CA pinned; refresh (readService) and an up (ensureRunning) retire the init-time share once it was rekeyed.
describe("a process-mode Vhsm's recovery shares in state after a rekey", () => {
  it("refresh retires them after `sys/rekey`, not before", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-svc-rekey-"));
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const stateDir = path.join(tmp, "vhsm");
    const i: ServiceInputs = {
      stateDir,
      serverCommand: [
        process.execPath,
        path.join(repoRoot, "bin", "buckypaper.js"),
        "runtime",
        "server",
        "--config",
        "{config}",
      ],
      config: renderRuntimeConfig({
        stateDir,
        listenAddress: "127.0.0.1",
        port,
        tls: true,
        publicHost: "127.0.0.1",
        publicUrl: url,
      }),
      url,
      keyShares: 1,
      keyThreshold: 1,
      deployerKeyFile: path.join(tmp, "cfg", "deployer.pem"),
      localRecoveryKeyFile: path.join(tmp, "cfg", "recovery.jwk"),
    };
    try {
      const out = await createService(i);
      expect(out.unsealKeyCheck).toMatch(/^[0-9a-f]{32}$/);
      const props = out as unknown as Record<string, unknown>;
      expect((await readService("svc", props)).props).toEqual({ ...props, running: true });
      const op = (method: "PUT" | "GET", p: string, body?: unknown) =>
        runtimeRequest({ url, token: "-", caFingerprint: out.caFingerprint }, method, p, body);
      const jwk = JSON.parse(readFileSync(i.localRecoveryKeyFile!, "utf8"));
      const old = (await decryptShare(out.recoveryShares![0], jwk)).key;
      const { nonce } = (await op("PUT", "sys/rekey/init", { secret_shares: 1, secret_threshold: 1 })).body as {
        nonce: string;
      };
      expect(((await op("PUT", "sys/rekey/update", { key: old, nonce })).body as { complete: boolean }).complete).toBe(
        true,
      );
      const refreshed = (await readService("svc", props)).props;
      expect(refreshed.recoveryShares).toEqual([]);
      expect(refreshed.unsealKeyCheck).not.toBe(out.unsealKeyCheck);
      expect(refreshed.retiredRecoveryShares).toMatchObject([
        { unsealKeyCheck: out.unsealKeyCheck, recoveryShares: out.recoveryShares },
      ]);
      // An up from state that was not refreshed retires them too (the runtime is up and unsealed).
      const up = await ensureRunning(out, i);
      expect(up.recoveryShares).toEqual([]);
      expect(up.retiredRecoveryShares).toMatchObject([
        { unsealKeyCheck: out.unsealKeyCheck, recoveryShares: out.recoveryShares },
      ]);
      expect(up.unsealKeyCheck).toBe(refreshed.unsealKeyCheck);
    } finally {
      await deleteService(i).catch(() => undefined);
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);
});
