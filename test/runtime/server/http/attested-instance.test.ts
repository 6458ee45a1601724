// The runtime's instance id in attested TLS: none while sealed or uninitialised (REPORT_DATA flag 0x00); once
// unsealed, the hash of the secret drawn at sys/init behind the barrier, bound into REPORT_DATA with the nonce and
// the listener key; the same after a seal/unseal and for a replica sharing the storage; another initialisation
// (a twin) has another one.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseReport } from "../../../../runtime/attestation/snp/abi.js";
import { runtimeInstanceId, runtimeTlsReportData } from "../../../../runtime/attestation/binding.js";
import type { RunningServer } from "../../../../runtime/server/http/server.js";
import { initUnseal, insecureGet, startAttestedRuntime } from "../../attested-runtime-support.js";

const dir = mkdtempSync(path.join(tmpdir(), "bk-instance-"));
const storage = `storage "sqlite" { path = "${path.join(dir, "runtime.db")}" }`;
let a: RunningServer;
let replica: RunningServer;
let other: RunningServer;

beforeAll(async () => {
  ({ server: a } = await startAttestedRuntime({ storage }));
  ({ server: other } = await startAttestedRuntime());
});
afterAll(async () => {
  await a?.close();
  await replica?.close();
  await other?.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** GET sys/attestation with a fresh nonce; checks REPORT_DATA against the answer's own fields. */
async function attest(s: RunningServer): Promise<string | null> {
  const nonce = Buffer.alloc(32, ++n);
  const r = await insecureGet(s.url, `/v1/sys/attestation?nonce=${nonce.toString("hex")}`);
  expect(r.status).toBe(200);
  const id = r.body.data.instance_id as string | null;
  const rd = Buffer.from(parseReport(Buffer.from(r.body.data.evidence.report, "base64")).reportData);
  const want = runtimeTlsReportData(
    nonce,
    Buffer.from(s.attestedSpkiSha256!, "hex"),
    id === null ? undefined : Buffer.from(id, "hex"),
  );
  expect(rd.equals(want)).toBe(true);
  expect(r.body.data.report_data).toBe(want.toString("hex"));
  return id;
}

async function call(s: RunningServer, method: string, p: string, body?: unknown, token?: string) {
  return s.core.handle({
    method,
    path: p,
    query: {},
    body,
    headers: token ? { "x-vault-token": token } : {},
    clientIp: "127.0.0.1",
  });
}

describe("runtime instance id", () => {
  let id: string;
  let unsealKey: string;

  it("none before init; bound once unsealed; none again when sealed; the same after unsealing again", async () => {
    expect(await attest(a)).toBe(null);
    expect(a.core.instanceId).toBeUndefined();
    const init = (await call(a, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 })).body as {
      keys: string[];
      root_token: string;
    };
    unsealKey = init.keys[0];
    // Initialised but sealed: still none (the secret is behind the barrier).
    expect(await attest(a)).toBe(null);
    await call(a, "PUT", "sys/unseal", { key: unsealKey });
    id = (await attest(a))!;
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(a.core.instanceId!.toString("hex")).toBe(id);
    // The id is the hash of the barrier's secret, not the secret: the secret is never served.
    const secret = await a.core.barrier.get("core/instance-secret");
    expect(secret?.length).toBe(32);
    expect(runtimeInstanceId(secret!).toString("hex")).toBe(id);
    expect(id).not.toBe(secret!.toString("hex"));
    expect((await call(a, "PUT", "sys/seal", undefined, init.root_token)).status).toBeLessThan(300);
    expect(await attest(a)).toBe(null);
    await call(a, "PUT", "sys/unseal", { key: unsealKey });
    expect(await attest(a)).toBe(id);
  });

  it("a replica sharing the storage reports the same instance; another initialisation another one", async () => {
    ({ server: replica } = await startAttestedRuntime({ storage }));
    expect(await attest(replica)).toBe(null);
    await call(replica, "PUT", "sys/unseal", { key: unsealKey });
    expect(await attest(replica)).toBe(id);
    await initUnseal(other);
    const twin = await attest(other);
    expect(twin).toMatch(/^[0-9a-f]{64}$/);
    expect(twin).not.toBe(id);
  });

  it("storage initialised before instance ids gets one at its next unseal, and keeps it", async () => {
    await a.core.barrier.delete("core/instance-secret");
    await a.core.seal();
    await call(a, "PUT", "sys/unseal", { key: unsealKey });
    const fresh = await attest(a);
    expect(fresh).toMatch(/^[0-9a-f]{64}$/);
    expect(fresh).not.toBe(id);
    await a.core.seal();
    await call(a, "PUT", "sys/unseal", { key: unsealKey });
    expect(await attest(a)).toBe(fresh);
  });
});
