// sys/rekey with require_verification (runtime/server/vault/rekey.ts, rekey-verification.ts), Vault's
// sys/rekey/verify: the old-key quorum returns the new shares and a verification nonce but puts nothing in force;
// only a threshold of the NEW shares given to sys/rekey/verify runs the rekey transaction. Attacked over real
// HTTP against `runtime server` on SQLite (workers = 1: the new key lives in one process's memory; several
// workers refuse require_verification, test/security/rekey.test.ts), 3 shares / threshold 2, each request on a
// fresh connection: verification without a rekey or before the quorum, a wrong nonce, the OLD shares given as
// verification, a mix of old and new, a repeated share, a restarted round's dead nonce, verification after the
// rekey was cancelled, after a seal and after a restart (the key is lost, the old shares stay in force). The
// pending key is in neither the database nor the audit log. The real vault CLI: test/compat/vault-cli.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { combine } from "shamir-secret-sharing";
import { httpCaller, startRekeyTarget, type Json, type ServerUnderAttack } from "./support.js";
import { startServerProc, type ServerProc } from "../runtime/server/core-procs.js";

let srv: ServerUnderAttack;
/** The server after the restart (same config and database). */
let again: ServerProc | undefined;
let url = "";
let log = "";
/** The shares in force: the initial ones, then those of the verified rekey. */
let current: string[] = [];
/** Every new share and key a pending (never verified) rekey handed out, to look for in storage and the log. */
const pendingForms: string[] = [];
const SECRET = "rekey-verify-marker-5be2";

const call = httpCaller(() => url);
const status = () => call("GET", "sys/rekey/init");
const start = (body: unknown) => call("PUT", "sys/rekey/init", body);
const cancel = (nonce: string) => call("DELETE", "sys/rekey/init", { nonce });
const update = (key: string, nonce: string) => call("PUT", "sys/rekey/update", { key, nonce });
const verifyStatus = () => call("GET", "sys/rekey/verify");
const verify = (key: string, nonce: string) => call("PUT", "sys/rekey/verify", { key, nonce });
const restartRound = () => call("DELETE", "sys/rekey/verify");
const unseal = (key: string) => call("PUT", "sys/unseal", { key });
const sealStatus = async () => (await call("GET", "sys/seal-status")).body;

/** Starts a rekey that requires verification and completes its old-key quorum: the new shares and both nonces. */
async function rekeyAwaitingVerification(shares: number, threshold: number, old: string[]) {
  const st = await start({ secret_shares: shares, secret_threshold: threshold, require_verification: true });
  expect(st.status, JSON.stringify(st.body)).toBe(200);
  let done: Json;
  for (const k of old) done = await update(k, st.body.nonce);
  expect(done.status, JSON.stringify(done.body)).toBe(200);
  const keys = done.body.keys_base64 as string[];
  const whole = Buffer.from(
    keys.length === 1
      ? Buffer.from(keys[0], "base64")
      : await combine(keys.slice(0, threshold).map((k) => new Uint8Array(Buffer.from(k, "base64")))),
  );
  pendingForms.push(...keys, ...done.body.keys, whole.toString("base64"), whole.toString("hex"));
  return { nonce: st.body.nonce as string, answer: done.body, keys, vnonce: done.body.verification_nonce as string };
}

/** Seals, then unseals with `keys`: whether they opened it. */
async function sealAndTry(keys: string[]): Promise<boolean> {
  expect((await call("PUT", "sys/seal", {}, srv.root)).status).toBe(204);
  let last: Json;
  for (const k of keys) last = await unseal(k);
  if (last.body.sealed !== false) await call("PUT", "sys/unseal", { reset: true });
  return last.body.sealed === false;
}

afterAll(async () => {
  await again?.kill();
  await srv?.close();
});

describe("sys/rekey/verify: the new key is in force only once a quorum of its own shares confirms it", () => {
  beforeAll(async () => {
    ({ srv, auditLog: log } = await startRekeyTarget(1, SECRET));
    url = srv.url;
    current = srv.keys;
  }, 120_000);

  it("verification without a rekey, or before its quorum: refused, nothing starts", async () => {
    const none = await verifyStatus();
    expect(none.status).toBe(400);
    expect(none.body.errors[0]).toMatch(/^no rekey configuration found/);
    expect((await verify(srv.keys[0], "00000000-0000-4000-8000-000000000000")).body.errors[0]).toMatch(
      /^no rekey in progress/,
    );
    expect((await restartRound()).body.errors[0]).toMatch(/^no rekey in progress/);
    // an attempt requiring verification, before its old-key quorum: Vault's shapes, no round yet
    const st = await start({ secret_shares: 4, secret_threshold: 3, require_verification: true });
    expect(st.body).toMatchObject({ started: true, t: 3, n: 4, required: 2, verification_required: true });
    expect(st.body.verification_nonce).toBeUndefined();
    expect((await verifyStatus()).body).toEqual({ nonce: "", started: false, t: 3, n: 4, progress: 0 });
    const early = await verify(srv.keys[0], st.body.nonce);
    expect(early.status).toBe(400);
    expect(early.body.errors[0]).toMatch(/^no rekey verification in progress/);
    expect((await cancel(st.body.nonce)).status).toBe(204);
  });

  let pending: Awaited<ReturnType<typeof rekeyAwaitingVerification>>;

  it("the old quorum returns the new shares and a verification nonce; the old key stays in force", async () => {
    pending = await rekeyAwaitingVerification(4, 3, current.slice(0, 2));
    expect(pending.answer).toMatchObject({
      complete: true,
      nonce: pending.nonce,
      verification_required: true,
      pgp_fingerprints: null,
      backup: false,
    });
    expect(pending.vnonce).toMatch(/^[0-9a-f-]{36}$/);
    expect(pending.vnonce).not.toBe(pending.nonce);
    expect(pending.keys).toHaveLength(4);
    expect((await status()).body).toMatchObject({
      started: true,
      nonce: pending.nonce,
      verification_required: true,
      verification_nonce: pending.vnonce,
      progress: 2, // as Vault: the quorum's count, until the round completes
      required: 2,
    });
    expect((await verifyStatus()).body).toEqual({ nonce: pending.vnonce, started: true, t: 3, n: 4, progress: 0 });
    // nothing changed: the seal config is the old one, and the old quorum cannot be given again
    expect(await sealStatus()).toMatchObject({ sealed: false, t: 2, n: 3 });
    const more = await update(current[2], pending.nonce);
    expect(more.status).toBe(400);
    expect(more.body.errors[0]).toMatch(/^rekey operation already finished; verification must be performed/);
    expect(more.body.errors[0]).toContain(pending.vnonce);
    expect((await start({ secret_shares: 1, secret_threshold: 1 })).body.errors[0]).toMatch(
      /rekey already in progress/,
    );
  });

  it("a wrong or missing nonce, a missing key: refused, nothing counted", async () => {
    const wrong = await verify(pending.keys[0], "00000000-0000-4000-8000-000000000000");
    expect(wrong.status).toBe(400);
    expect(wrong.body.errors[0]).toMatch(/^incorrect nonce supplied/);
    // the attempt's own nonce is not the verification round's
    expect((await verify(pending.keys[0], pending.nonce)).body.errors[0]).toMatch(/^incorrect nonce supplied/);
    expect((await call("PUT", "sys/rekey/verify", { key: pending.keys[0] })).body.errors[0]).toMatch(
      /^nonce: required/,
    );
    expect((await call("PUT", "sys/rekey/verify", { nonce: pending.vnonce })).body.errors[0]).toMatch(/^key: required/);
    const bad = await verify(Buffer.alloc(10, 1).toString("base64"), pending.vnonce);
    expect(bad.body.errors[0]).toMatch(/^key: expected a 33-byte key share/);
    expect((await verifyStatus()).body).toMatchObject({ nonce: pending.vnonce, progress: 0 });
  });

  it("the OLD shares given as verification: the round fails, a new nonce, the old one is dead", async () => {
    let r: Json;
    for (const k of current) r = await verify(k, pending.vnonce);
    expect(r.status).toBe(400);
    expect(r.body.errors[0]).toMatch(/^rekey verification failed; incorrect key shares supplied/);
    const after = (await verifyStatus()).body;
    expect(after).toMatchObject({ started: true, progress: 0 });
    expect(after.nonce).not.toBe(pending.vnonce);
    const dead = await verify(pending.keys[0], pending.vnonce);
    expect(dead.body.errors[0]).toMatch(/^incorrect nonce supplied/);
    // two new shares and an old one: fails too
    const vnonce = after.nonce as string;
    expect((await verify(pending.keys[0], vnonce)).body.progress).toBe(1);
    expect((await verify(pending.keys[1], vnonce)).body.progress).toBe(2);
    const mixed = await verify(current[0], vnonce);
    expect(mixed.body.errors[0]).toMatch(/^rekey verification failed/);
    pending.vnonce = (await verifyStatus()).body.nonce;
    expect(pending.vnonce).not.toBe(vnonce);
    expect(await sealStatus()).toMatchObject({ t: 2, n: 3 });
  });

  it("a repeated share does not count twice; DELETE restarts the round and kills its nonce", async () => {
    expect((await verify(pending.keys[3], pending.vnonce)).body.progress).toBe(1);
    const twice = await verify(pending.keys[3], pending.vnonce);
    expect(twice.status).toBe(400);
    expect(twice.body.errors[0]).toMatch(/already been provided during this verify operation/);
    // hex and base64 of one share are one share
    const hexTwice = await verify(Buffer.from(pending.keys[3], "base64").toString("hex"), pending.vnonce);
    expect(hexTwice.body.errors[0]).toMatch(/already been provided/);
    expect((await verifyStatus()).body.progress).toBe(1);
    const restarted = await restartRound();
    expect(restarted.status).toBe(200);
    expect(restarted.body).toMatchObject({ started: true, progress: 0, t: 3, n: 4 });
    expect(restarted.body.nonce).not.toBe(pending.vnonce);
    const late = await verify(pending.keys[0], pending.vnonce);
    expect(late.status).toBe(400);
    expect(late.body.errors[0]).toMatch(/^incorrect nonce supplied/);
    pending.vnonce = restarted.body.nonce;
  });

  it("the pending key is in neither the database nor the audit log", async () => {
    const db = readFileSync(path.join(srv.dir, "data/runtime.db"));
    const audit = readFileSync(log, "utf8");
    for (const f of pendingForms) {
      expect(db.includes(Buffer.from(f))).toBe(false);
      expect(audit).not.toContain(f);
    }
    for (const k of pending.keys) expect(db.includes(Buffer.from(k, "base64"))).toBe(false);
  });

  it("a threshold of the new shares completes it: the new key in force, the data there, the nonce spent", async () => {
    const { vnonce } = pending;
    expect((await verify(pending.keys[2], vnonce)).body).toMatchObject({ started: true, progress: 1 });
    expect((await verify(pending.keys[0], vnonce)).body).toMatchObject({ progress: 2 });
    const done = await verify(Buffer.from(pending.keys[3], "base64").toString("hex"), vnonce);
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(done.body).toEqual({ nonce: vnonce, complete: true });
    expect((await status()).body).toMatchObject({ started: false, required: 3, verification_required: false });
    expect(await sealStatus()).toMatchObject({ sealed: false, t: 3, n: 4 });
    expect((await verifyStatus()).body.errors[0]).toMatch(/^no rekey configuration found/);
    expect((await verify(pending.keys[1], vnonce)).body.errors[0]).toMatch(/^no rekey in progress/);
    expect((await call("GET", "secret/data/app", undefined, srv.root)).body.data.data.password).toBe(SECRET);
    expect(srv.proc.output()).toMatch(/runtime rekeyed: 4 key shares, threshold 3/);
    // verified: these shares are the ones in force now (not pending any more)
    pendingForms.splice(0);
    const old = current;
    current = pending.keys;
    expect(await sealAndTry(old)).toBe(false);
    expect(await sealStatus()).toMatchObject({ sealed: true, t: 3, n: 4 });
    for (const k of current.slice(1)) await unseal(k);
    expect(await sealStatus()).toMatchObject({ sealed: false });
    // the completing round is audited like the quorum: the shares HMAC'd
    const recs = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Json)
      .filter((r) => r.request.path === "sys/rekey/verify" && r.type === "request" && r.request.data?.key);
    expect(recs.length).toBeGreaterThan(0);
    for (const r of recs) expect(r.request.data.key).toMatch(/^hmac-sha256:/);
  });

  it("verification after the rekey was cancelled: refused; the cancelled shares never unseal", async () => {
    const p = await rekeyAwaitingVerification(4, 3, current.slice(0, 3));
    expect((await cancel(p.nonce)).status).toBe(204);
    expect((await status()).body).toMatchObject({ started: false, verification_required: false });
    const late = await verify(p.keys[0], p.vnonce);
    expect(late.status).toBe(400);
    expect(late.body.errors[0]).toMatch(/^no rekey in progress/);
    expect((await restartRound()).body.errors[0]).toMatch(/^no rekey in progress/);
    expect(await sealAndTry(p.keys.slice(0, 3))).toBe(false);
    for (const k of current.slice(0, 3)) await unseal(k);
    expect(await sealStatus()).toMatchObject({ sealed: false, t: 3, n: 4 });
  });

  it("a seal before verification discards the new key: the old shares unseal, verification is refused", async () => {
    const p = await rekeyAwaitingVerification(4, 3, current.slice(0, 3));
    expect(await sealAndTry(p.keys.slice(0, 3))).toBe(false);
    for (const k of current.slice(0, 3)) await unseal(k);
    expect(await sealStatus()).toMatchObject({ sealed: false, t: 3, n: 4 });
    const r = await verify(p.keys[0], p.vnonce);
    expect(r.status).toBe(400);
    expect(r.body.errors[0]).toMatch(/^rekey verification not possible here: the new key of this rekey exists only in/);
    expect((await restartRound()).body.errors[0]).toMatch(/^rekey verification not possible here/);
    // the stale attempt is cancelled with its nonce; a new one can start
    expect((await cancel(p.nonce)).status).toBe(204);
    expect(await sealStatus()).toMatchObject({ t: 3, n: 4 });
  });

  it("a restart before verification loses the new key: the old shares unseal, the new ones never", async () => {
    const p = await rekeyAwaitingVerification(4, 3, current.slice(0, 3));
    // a first verification share is in (memory only), then the process ends
    expect((await verify(p.keys[0], p.vnonce)).body.progress).toBe(1);
    await srv.proc.kill();
    again = await startServerProc(path.join(srv.dir, "runtime.hcl"));
    url = again.url;
    expect(await sealStatus()).toMatchObject({ sealed: true, t: 3, n: 4, initialized: true });
    const refused = [];
    for (const k of p.keys.slice(0, 3)) refused.push(await unseal(k));
    expect(refused[2].body.errors[0]).toMatch(/invalid key shares/);
    expect((await sealStatus()).sealed).toBe(true);
    await call("PUT", "sys/unseal", { reset: true });
    for (const k of current.slice(0, 3)) await unseal(k);
    expect((await sealStatus()).sealed).toBe(false);
    expect((await call("GET", "secret/data/app", undefined, srv.root)).body.data.data.password).toBe(SECRET);
    // the attempt is still stored, with its round, but no process holds its key
    expect((await status()).body).toMatchObject({ started: true, verification_nonce: p.vnonce });
    const r = await verify(p.keys[1], p.vnonce);
    expect(r.status).toBe(400);
    expect(r.body.errors[0]).toMatch(/^rekey verification not possible here/);
    expect((await cancel(p.nonce)).status).toBe(204);
    expect((await status()).body.started).toBe(false);
    // nothing of any pending key reached the database or the log, across the restart either
    const db = readFileSync(path.join(srv.dir, "data/runtime.db"));
    const audit = readFileSync(log, "utf8");
    const outputs = srv.proc.output() + again.output();
    for (const f of pendingForms) {
      expect(db.includes(Buffer.from(f))).toBe(false);
      expect(audit).not.toContain(f);
      expect(outputs).not.toContain(f);
    }
  });
});
