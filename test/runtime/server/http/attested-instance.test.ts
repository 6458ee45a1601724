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
import type { Storage } from "../../../../runtime/server/storage/types.js";
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

  it("storage initialised before instance ids gets one at its next unseal (a new process), and keeps it", async () => {
    await a.core.barrier.delete("core/instance-secret");
    await a.core.seal();
    // The process that served `id` refuses the storage now that it holds no secret (see below); the upgraded
    // runtime is a new process with a new key.
    expect((await call(a, "PUT", "sys/unseal", { key: unsealKey })).status).toBe(409);
    await a.close();
    ({ server: a } = await startAttestedRuntime({ storage }));
    await call(a, "PUT", "sys/unseal", { key: unsealKey });
    const fresh = await attest(a);
    expect(fresh).toMatch(/^[0-9a-f]{64}$/);
    expect(fresh).not.toBe(id);
    await a.core.seal();
    await call(a, "PUT", "sys/unseal", { key: unsealKey });
    expect(await attest(a)).toBe(fresh);
  });
});

/** Every key of a storage, depth first (list gives the immediate children of a prefix). */
async function allKeys(st: Storage, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const k of await st.list(prefix))
    if (k.endsWith("/")) out.push(...(await allKeys(st, prefix + k)));
    else out.push(prefix + k);
  return out;
}

/** The host rewrites the storage under a running process (it is the host's disk or database). */
async function replaceStorage(target: RunningServer, from: RunningServer | undefined): Promise<void> {
  const dst = target.core.opts.physical;
  for (const k of await allKeys(dst)) await dst.delete(k);
  if (from)
    for (const k of await allKeys(from.core.opts.physical)) await dst.put(k, (await from.core.opts.physical.get(k))!);
}

// Verifiers cache a verdict per attested key (the provider, the enclaivelet: AttestedRuntimes), with the instance
// id that evidence bound. The host owns the storage: once an operator seals the runtime (an incident, a
// maintenance), it can put a twin's barrier under the running process and unseal it with the twin's shares, or
// wipe it and call sys/init itself. The process must then not serve another instance under the verified key.
describe("one attested key, one instance: storage swapped or wiped under a running process", () => {
  let victim: RunningServer;
  let twin: RunningServer;
  let victimId: string;
  let root: string;
  let twinKey: string;
  let twinRoot: string;

  beforeAll(async () => {
    ({ server: victim } = await startAttestedRuntime());
    ({ server: twin } = await startAttestedRuntime());
    root = await initUnseal(victim);
    victimId = (await attest(victim))!;
    const init = (await call(twin, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 })).body as {
      keys: string[];
      root_token: string;
    };
    twinKey = init.keys[0];
    twinRoot = init.root_token;
    expect((await call(twin, "PUT", "sys/unseal", { key: twinKey })).status).toBeLessThan(300);
  });
  afterAll(async () => {
    await victim?.close();
    await twin?.close();
  });

  it("a twin's barrier put under the sealed process does not unseal: 409 naming both instances, nothing served", async () => {
    expect((await call(victim, "PUT", "sys/seal", undefined, root)).status).toBeLessThan(300);
    await replaceStorage(victim, twin);
    const r = await call(victim, "PUT", "sys/unseal", { key: twinKey });
    expect(r.status).toBe(409);
    const msg = JSON.stringify(r.body);
    expect(msg).toContain(`served instance ${victimId}`);
    expect(msg).toContain(`instance ${twin.core.instanceId!.toString("hex")}`);
    expect(msg).toMatch(/restart the runtime/);
    expect(msg).not.toContain(twinKey);
    expect(victim.core.sealed).toBe(true);
    expect(victim.core.instanceId).toBeUndefined();
    expect(await attest(victim)).toBe(null);
    // The twin's root token opens nothing through the process: it stays sealed.
    expect((await call(victim, "GET", "sys/mounts", undefined, twinRoot)).status).toBe(503);
    // Without the fix the same key would now bind the twin's id (the control: the key unseals the barrier).
    expect(victim.core.barrier.sealed).toBe(true);
    // Asking again changes nothing (the progress was reset, no partial unseal kept).
    expect((await call(victim, "PUT", "sys/unseal", { key: twinKey })).status).toBe(409);
    expect(victim.core.sealed).toBe(true);
  });

  it("a wiped storage cannot be initialised through the process (409), and is left uninitialised", async () => {
    await replaceStorage(victim, undefined);
    const r = await call(victim, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 });
    expect(r.status).toBe(409);
    expect(JSON.stringify(r.body)).toMatch(/uninitialised storage/);
    expect(r.body).not.toHaveProperty("root_token");
    expect(await victim.core.opts.physical.list("")).toEqual([]);
    expect(await attest(victim)).toBe(null);
  });
});
