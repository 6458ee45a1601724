// sys/rekey moves everything the old unseal key protected to the new one, atomically:
//  - over real HTTP, a replica set of attested runtimes on one PostgreSQL (SEV-SNP, simulated PSP derived keys,
//    peer_threshold 2): after a rekey through a replica that auto-unseals, a new replica on the same chip and
//    launch auto-unseals (the wrapping was renewed), a replica on another chip is unsealed by two peers (the
//    peer shares were re-split to the new key), the old shares are refused and the new ones unseal; a replica
//    that could not renew the wrapping (another chip, no seal stanza) refuses to rekey and changes nothing;
//  - on a real SQLite file, a write failure at each step of the rekey transaction, and a derived key that fails
//    at completion, lose nothing: the old shares, the old wrapping and the old peer shares keep working.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import https from "node:https";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import type { TrustConfig } from "../../../runtime/attestation/policy.js";
import type { RunningServer } from "../../../runtime/server/http/server.js";
import { SqliteStorage } from "../../../runtime/server/storage/sqlite.js";
import type { Storage, StorageWriter } from "../../../runtime/server/storage/types.js";
import { Core, type AutoUnsealProvider } from "../../../runtime/server/vault/core.js";
import { builtinRegistry } from "../../../runtime/server/engines.js";
import { AUTO_UNSEAL_KEY, KEYRING_KEY } from "../../../runtime/server/vault/barrier.js";
import { PEER_SHARES_KEY, peerThreshold } from "../../../runtime/server/vault/peer-shares.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import {
  call,
  replicaStarter,
  siblingChip,
  snpDerivedKey,
  snpSource,
  startTestPostgres,
  stopTestPostgres,
  type Logged,
} from "./peer-unseal-support.js";

const M = "ab".repeat(48);
const SECRET = "rekey-replicas-marker-91d2";

const have = haveCommand("bash", ["-c", "ls /usr/lib/postgresql/*/bin/initdb"]);
const ok = requireTool("PostgreSQL server (apt-get install postgresql)", have);

let pgDir = "";
let pgUrl = "";
let dir = "";
let chipA: SnpSimulator;
let chipB: SnpSimulator;
let chipC: SnpSimulator;
let trust: TrustConfig;
const servers: RunningServer[] = [];
const logs: Logged[] = [];
let r1: RunningServer, r2: RunningServer, rC: RunningServer;
let oldKeys: string[] = [];
let newKeys: string[] = [];
let root = "";

const pgStorage = () => `storage "postgresql" { connection_url = "${pgUrl}" }`;
const startOnSet = replicaStarter({ servers, logs, trust: () => trust });
const replica = (o: Omit<Parameters<typeof startOnSet>[0], "storage">) => startOnSet({ ...o, storage: pgStorage() });
const snp = (chip: SnpSimulator) => ({ source: snpSource(chip, M), autoUnseal: snpDerivedKey(chip, M) });

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "bk-rekey-"));
  chipA = await createSnpSimulator({ rsaBits: 2048 });
  if (!ok) return;
  ({ dir: pgDir, url: pgUrl } = startTestPostgres("bk-pg-rekey-"));
  chipB = await siblingChip(chipA, "5a".repeat(64));
  chipC = await siblingChip(chipA, "c3".repeat(64));
  trust = { snp: { simulated: [chipA.trustAnchor] } };
  r1 = await replica(snp(chipA));
  const init = await call(r1.url, "PUT", "sys/init", { secret_shares: 3, secret_threshold: 2, peer_threshold: 2 });
  expect(init.status, JSON.stringify(init.body)).toBe(200);
  oldKeys = init.body.keys_base64;
  root = init.body.root_token;
  for (const k of oldKeys.slice(0, 2)) await call(r1.url, "PUT", "sys/unseal", { key: k });
  expect(r1.core.sealed).toBe(false);
  r2 = await replica(snp(chipA));
  expect(r2.core.sealed).toBe(false);
  // A peer is a machine (r1 and r2 are one): rC runs on chip C, unsealed by its operators (its derived key opens nothing).
  rC = await replica(snp(chipC));
  for (const k of oldKeys.slice(0, 2)) await call(rC.url, "PUT", "sys/unseal", { key: k });
  expect(rC.core.sealed).toBe(false);
  expect(
    (await call(r1.url, "POST", "sys/mounts/secret", { type: "kv", options: { version: "2" } }, root)).status,
  ).toBe(204);
  expect((await call(r2.url, "POST", "secret/data/app", { data: { password: SECRET } }, root)).status).toBe(200);
}, 180_000);

afterAll(async () => {
  for (const s of servers) await s.close().catch(() => undefined);
  stopTestPostgres(pgDir);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** DELETE with a JSON body and its content-length (as the vault CLI sends it; Node sends none for DELETE). */
function deleteWithBody(url: string, p: string, body: unknown): Promise<{ status: number; body: string }> {
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(`/v1/${p}`, url),
      {
        method: "DELETE",
        rejectUnauthorized: false,
        headers: { "content-type": "application/json", "content-length": data.length },
      },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

const rekey = async (url: string, shares: number, threshold: number, keys: string[]) => {
  const st = await call(url, "PUT", "sys/rekey/init", { secret_shares: shares, secret_threshold: threshold });
  if (st.status !== 200) return st;
  let r = st;
  for (const key of keys) r = await call(url, "PUT", "sys/rekey/update", { key, nonce: st.body.nonce });
  return r;
};

describe.runIf(ok)("rekey of an attested replica set on shared PostgreSQL", () => {
  it("a replica that cannot renew the auto-unseal wrapping refuses to rekey, and changes nothing", async () => {
    // On chip B: sealed at start (its derived key does not open the wrapping), unsealed by two peers.
    const onB = await replica({ ...snp(chipB), peers: [r1.url, rC.url] });
    expect(onB.core.sealed).toBe(true);
    expect((await onB.peerUnseal!()).unsealed).toBe(true);
    const r = await call(onB.url, "PUT", "sys/rekey/init", { secret_shares: 2, secret_threshold: 2 });
    expect(r.status).toBe(400);
    expect(r.body.errors[0]).toMatch(
      /^rekey refused: the storage holds the unseal key wrapped for auto-unseal, and this replica's snp-derived-key key does not open it/,
    );
    // No seal stanza at all (unsealed with the shares): refused too.
    const plain = await replica({ source: snpSource(chipA, M) });
    for (const k of oldKeys.slice(1)) await call(plain.url, "PUT", "sys/unseal", { key: k });
    expect(plain.core.sealed).toBe(false);
    const p = await call(plain.url, "PUT", "sys/rekey/init", { secret_shares: 2, secret_threshold: 2 });
    expect(p.status).toBe(400);
    expect(p.body.errors[0]).toMatch(/this replica has no seal stanza to renew that wrapping/);
    expect((await call(r1.url, "GET", "sys/rekey/init")).body.started).toBe(false);
    expect((await call(r1.url, "GET", "sys/seal-status")).body).toMatchObject({ t: 2, n: 3 });
  });

  it("rekey through an auto-unsealing replica: 3/2 → 2/2, the configuration seen by every replica", async () => {
    const done = await rekey(r1.url, 2, 2, [oldKeys[2], oldKeys[0]]);
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(done.body.complete).toBe(true);
    newKeys = done.body.keys_base64;
    expect(newKeys).toHaveLength(2);
    // r2 (another process on the same storage) reads the new configuration and serves on
    expect((await call(r2.url, "GET", "sys/rekey/init")).body).toMatchObject({ started: false, required: 2 });
    expect((await call(r2.url, "GET", "sys/seal-status")).body).toMatchObject({ t: 2, n: 2, sealed: false });
    expect((await call(r2.url, "GET", "secret/data/app", undefined, root)).body.data.data.password).toBe(SECRET);
    // the peer shares were re-split with the same peer threshold
    expect(await peerThreshold(r1.core.barrier)).toBe(2);
    expect(r1.core.sealConfigPeerThreshold).toBe(2);
    expect(logs[0].lines.join("\n")).toMatch(
      /runtime rekeyed: 2 key shares, threshold 2; auto-unseal wrapping renewed; peer-unseal shares re-split \(threshold 2\)/,
    );
  });

  it("a new replica on the same chip and launch auto-unseals with the renewed wrapping", async () => {
    const r3 = await replica(snp(chipA));
    expect(r3.core.sealed).toBe(false);
    expect((await call(r3.url, "GET", "secret/data/app", undefined, root)).body.data.data.password).toBe(SECRET);
    // and it may rekey (its derived key opens the wrapping): started and cancelled with the nonce
    const st = await call(r3.url, "PUT", "sys/rekey/init", { secret_shares: 1, secret_threshold: 1 });
    expect(st.status).toBe(200);
    const del = await deleteWithBody(r3.url, "sys/rekey/init", { nonce: st.body.nonce });
    expect(del.status, JSON.stringify(del.body)).toBe(204);
  });

  it("a replica on another chip is unsealed by two peers (two machines) with the re-split shares", async () => {
    // rC was unsealed before the rekey (it holds the old key in memory): it releases its slot's share of the new split
    const onB = await replica({ ...snp(chipB), peers: [r1.url, rC.url] });
    expect(onB.core.sealed).toBe(true);
    const res = await onB.peerUnseal!();
    expect(res.unsealed, JSON.stringify(res)).toBe(true);
    expect((await call(onB.url, "GET", "secret/data/app", undefined, root)).body.data.data.password).toBe(SECRET);
  });

  it("the old shares no longer unseal a replica; the new ones do", async () => {
    const plain = await replica({ source: snpSource(chipA, M) });
    expect(plain.core.sealed).toBe(true);
    const a = await call(plain.url, "PUT", "sys/unseal", { key: oldKeys[0] });
    expect(a.body).toMatchObject({ sealed: true, t: 2, n: 2, progress: 1 });
    const b = await call(plain.url, "PUT", "sys/unseal", { key: oldKeys[1] });
    expect(b.status).toBe(400);
    expect(b.body.errors[0]).toMatch(/invalid key shares/);
    for (const k of newKeys) await call(plain.url, "PUT", "sys/unseal", { key: k });
    expect(plain.core.sealed).toBe(false);
    expect((await call(plain.url, "GET", "secret/data/app", undefined, root)).body.data.data.password).toBe(SECRET);
  });

  it("r2, unsealed before the rekey, serves on; once it needs the keyring it says to restart; restarted it auto-unseals", async () => {
    // the keyring's terms are unchanged: r2 reads and writes as before
    expect((await call(r2.url, "GET", "secret/data/app", undefined, root)).body.data.data.password).toBe(SECRET);
    const rot = await call(r2.url, "PUT", "sys/rotate", {}, root);
    expect(rot.status).toBe(503);
    expect(rot.body.errors[0]).toMatch(
      /^this replica's unseal key no longer opens the keyring .* restart this replica/,
    );
    // through r1 it works; a value under the new term is refused by r2 with the same reason (not "corruption")
    expect((await call(r1.url, "PUT", "sys/rotate", {}, root)).status).toBe(204);
    expect((await call(r1.url, "POST", "secret/data/late", { data: { v: SECRET } }, root)).status).toBe(200);
    const late = await call(r2.url, "GET", "secret/data/late", undefined, root);
    expect(late.status).toBe(503);
    expect(late.body.errors[0]).toMatch(/^this replica's unseal key no longer opens the keyring/);
    await r2.close();
    const again = await replica(snp(chipA));
    expect(again.core.sealed).toBe(false);
    expect((await call(again.url, "GET", "secret/data/late", undefined, root)).body.data.data.v).toBe(SECRET);
    expect((await call(again.url, "PUT", "sys/rotate", {}, root)).status).toBe(204);
    expect((await call(again.url, "POST", "secret/data/later", { data: { v: SECRET } }, root)).status).toBe(200);
    expect((await call(r1.url, "GET", "secret/data/later", undefined, root)).body.data.data.v).toBe(SECRET);
  });
});

describe.runIf(ok)("sys/rekey/* is rate-limited per client by default", () => {
  it("a flood of unauthenticated rekey calls gets 429 after the burst (5/s, burst 20)", async () => {
    const r = await replica(snp(chipA));
    const codes: number[] = [];
    for (let i = 0; i < 30; i++) codes.push((await call(r.url, "PUT", "sys/rekey/init", { secret_shares: 0 })).status);
    expect(codes.slice(0, 15).every((c) => c === 400)).toBe(true);
    expect(codes).toContain(429);
  });
});

/** SQLite under a storage that can be told to fail one write inside a transaction. */
class FailingStorage implements Storage {
  failOn: string | undefined;
  failOp: "put" | "delete" = "put";
  constructor(readonly inner: SqliteStorage) {}
  get(k: string) {
    return this.inner.get(k);
  }
  list(p: string) {
    return this.inner.list(p);
  }
  put(k: string, v: Buffer) {
    return this.inner.put(k, v);
  }
  delete(k: string) {
    return this.inner.delete(k);
  }
  transaction<T>(fn: (tx: StorageWriter) => Promise<T>): Promise<T> {
    return this.inner.transaction((tx) =>
      fn({
        get: (k) => tx.get(k),
        list: (p) => tx.list(p),
        put: async (k, v) => {
          if (k === this.failOn && this.failOp === "put") throw new Error(`injected write failure at ${k}`);
          return tx.put(k, v);
        },
        delete: async (k) => {
          if (k === this.failOn && this.failOp === "delete") throw new Error(`injected delete failure at ${k}`);
          return tx.delete(k);
        },
      }),
    );
  }
  close() {
    return this.inner.close();
  }
}

describe("a failure at any step of the rekey loses nothing (real SQLite)", () => {
  let file: string;
  let keys: string[];
  let broken = false;
  const derived = (): AutoUnsealProvider => {
    const p = snpDerivedKey(chipA, M);
    return {
      type: p.type,
      deriveKey: () => (broken ? Promise.reject(new Error("/dev/sev-guest: no such device")) : p.deriveKey()),
    };
  };
  const req = (core: Core, method: string, p: string, body?: unknown) =>
    core.handle({ method, path: p, query: {}, body, headers: {}, clientIp: "127.0.0.1" }) as Promise<{
      status: number;
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
      body: any;
    }>;
  const snapshot = async (core: Core, physical: Storage) => ({
    keyring: (await physical.get(KEYRING_KEY))!.toString("base64"),
    wrapping: (await physical.get(AUTO_UNSEAL_KEY))!.toString("base64"),
    config: (await physical.get("core/seal-config"))!.toString("utf8"),
    peer: (await core.barrier.get(PEER_SHARES_KEY))!.toString("utf8"),
  });

  it("each step fails in turn; the old shares, wrapping and peer shares stay in force", async () => {
    file = path.join(dir, "atomic.db");
    const physical = new FailingStorage(new SqliteStorage(file));
    const core = new Core({ physical, registry: builtinRegistry(), autoUnseal: derived() });
    await core.start();
    const init = await core.initialize(3, 2, { peerThreshold: 2 });
    keys = init.keys_base64;
    await core.unsealWith(keys.slice(0, 2));
    const before = await snapshot(core, physical);
    const steps: Array<[string, "put" | "delete"]> = [
      [KEYRING_KEY, "put"],
      ["core/seal-config", "put"],
      [AUTO_UNSEAL_KEY, "put"],
      [PEER_SHARES_KEY, "put"],
      ["core/rekey", "delete"], // the attempt's removal, the transaction's first write
    ];
    for (const [step, op] of steps) {
      const st = await req(core, "PUT", "sys/rekey/init", { secret_shares: 5, secret_threshold: 3 });
      expect(st.status).toBe(200);
      await req(core, "PUT", "sys/rekey/update", { key: keys[0], nonce: st.body.nonce });
      physical.failOn = step;
      physical.failOp = op;
      const r = await req(core, "PUT", "sys/rekey/update", { key: keys[1], nonce: st.body.nonce });
      expect(r.status, step).toBe(500);
      expect(JSON.stringify(r.body)).not.toMatch(/keys/);
      physical.failOn = undefined;
      expect(await snapshot(core, physical), step).toEqual(before);
      expect(core.sealStatus()).toMatchObject({ t: 2, n: 3 });
      // the attempt is still there (its progress reset): cancel it with its nonce
      expect((await req(core, "GET", "sys/rekey/init")).body).toMatchObject({ started: true, progress: 0 });
      expect((await req(core, "DELETE", "sys/rekey/init", { nonce: st.body.nonce })).status).toBe(204);
    }
    // a derived key that fails at completion: refused before anything is written
    const st = await req(core, "PUT", "sys/rekey/init", { secret_shares: 5, secret_threshold: 3 });
    broken = true;
    await req(core, "PUT", "sys/rekey/update", { key: keys[2], nonce: st.body.nonce });
    const r = await req(core, "PUT", "sys/rekey/update", { key: keys[1], nonce: st.body.nonce });
    broken = false;
    expect(r.status).toBe(400);
    expect(r.body.errors[0]).toMatch(/^rekey refused: .*provider gave no key \(\/dev\/sev-guest: no such device\)/);
    expect(await snapshot(core, physical)).toEqual(before);
    expect((await req(core, "DELETE", "sys/rekey/init", { nonce: st.body.nonce })).status).toBe(204);
    await core.seal();
    await physical.close();
    // restarted: the old wrapping auto-unseals; sealed again, the old shares unseal
    const again = new Core({ physical: new SqliteStorage(file), registry: builtinRegistry(), autoUnseal: derived() });
    await again.start();
    expect(again.sealed).toBe(false);
    await again.seal();
    await again.unsealWith([keys[2], keys[0]]);
    expect(again.sealed).toBe(false);
    // and a rekey that goes through still works on this storage afterwards
    const s2 = await req(again, "PUT", "sys/rekey/init", { secret_shares: 1, secret_threshold: 1 });
    await req(again, "PUT", "sys/rekey/update", { key: keys[0], nonce: s2.body.nonce });
    const done = await req(again, "PUT", "sys/rekey/update", { key: keys[1], nonce: s2.body.nonce });
    expect(done.body.complete).toBe(true);
    expect(Buffer.from(done.body.keys_base64[0], "base64")).toHaveLength(32);
    await again.seal();
    await expect(again.unsealWith([keys[0], keys[1]])).rejects.toThrow(/key: expected a 32-byte key share/);
    await again.unsealWith(done.body.keys_base64);
    expect(again.sealed).toBe(false);
    await again.seal();
    await again.opts.physical.close();
  });
});
