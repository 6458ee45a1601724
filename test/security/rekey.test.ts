// sys/rekey (runtime/server/vault/rekey.ts): an operator quorum replaces the unseal key shares. Attacked over
// real HTTP against `runtime server` on SQLite with workers = 2 and 3 shares / threshold 2, each request on a
// fresh connection (so an attempt's shares land on different workers): a wrong nonce, shares of another
// runtime, a repeated share, a cancelled attempt, a cancel without the nonce, a replayed completed nonce, a
// sealed runtime, options this runtime does not implement (require_verification with several workers). After
// the rekey the old shares no longer unseal and the new ones do, also after a restart; the new shares are
// nowhere but in the completing answer (not in the audit log, the server's output or the database file). The
// real vault CLI drives the same endpoints in test/compat/vault-cli.test.ts; auto-unseal and peer unseal after a
// rekey: test/runtime/server/rekey.test.ts; require_verification: test/security/rekey-verify.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { combine } from "shamir-secret-sharing";
import { httpCaller, startRekeyTarget, type ServerUnderAttack } from "./support.js";
import { startServerProc, type ServerProc } from "../runtime/server/core-procs.js";
import { Core } from "../../runtime/server/vault/core.js";
import { MemoryStorage } from "../../runtime/server/storage/memory.js";

let srv: ServerUnderAttack;
/** The server after the restart (same config and database). */
let again: ServerProc | undefined;
let url = "";
let log = "";
/** Shares of another runtime (genuine shares, of another unseal key). */
let foreign: string[] = [];
/** The new shares, from the completing answer. */
let fresh: string[] = [];
let freshHex: string[] = [];
const SECRET = "rekey-marker-3c91";

const call = httpCaller(() => url);
const status = () => call("GET", "sys/rekey/init");
const start = (body: unknown) => call("PUT", "sys/rekey/init", body);
const cancel = (nonce?: string) => call("DELETE", "sys/rekey/init", nonce === undefined ? undefined : { nonce });
const update = (key: string, nonce: string) => call("PUT", "sys/rekey/update", { key, nonce });
const unseal = (key: string) => call("PUT", "sys/unseal", { key });

afterAll(async () => {
  await again?.kill();
  await srv?.close();
});

describe("sys/rekey: an operator quorum replaces the unseal key shares", () => {
  beforeAll(async () => {
    ({ srv, auditLog: log } = await startRekeyTarget(2, SECRET));
    url = srv.url;
    const other = new Core({ physical: new MemoryStorage() });
    foreign = (await other.initialize(3, 2)).keys_base64;
  }, 120_000);

  it("no rekey at first: Vault's status shape, required = the current threshold", async () => {
    const s = await status();
    expect(s.status).toBe(200);
    expect(s.body).toEqual({
      nonce: "",
      started: false,
      t: 0,
      n: 0,
      progress: 0,
      required: 2,
      pgp_fingerprints: null,
      backup: false,
      verification_required: false,
    });
  });

  it("options this runtime does not implement, and bad share counts, are refused by name; nothing starts", async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ secret_shares: 3, secret_threshold: 2, pgp_keys: ["mQENBF..", "a", "b"] }, /^pgp_keys: .*not supported/],
      [{ secret_shares: 3, secret_threshold: 2, backup: true }, /^backup: not supported/],
      // workers = 2: the new key awaiting verification would live in one worker's memory (rekey-verify.test.ts)
      [
        { secret_shares: 3, secret_threshold: 2, require_verification: true },
        /^require_verification: needs a runtime with workers = 1/,
      ],
      [
        { secret_shares: 3, secret_threshold: 2, require_verification: "yes" },
        /^require_verification: must be a boolean/,
      ],
      [{ secret_threshold: 2 }, /^secret_shares: required/],
      [{ secret_shares: 3 }, /^secret_threshold: required/],
      [{ secret_shares: 0, secret_threshold: 0 }, /^secret_shares: must be between 1 and 255/],
      [{ secret_shares: 3, secret_threshold: 4 }, /^secret_threshold: must be between 1 and secret_shares/],
      [{ secret_shares: 3, secret_threshold: 1 }, /^secret_threshold: must be at least 2/],
      [{ secret_shares: 256, secret_threshold: 2 }, /^secret_shares: must be between 1 and 255/],
    ];
    for (const [body, msg] of cases) {
      const r = await start(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.errors[0]).toMatch(msg);
    }
    expect((await status()).body.started).toBe(false);
    // Vault's answers for what this runtime has none of
    const rec = await call("PUT", "sys/rekey-recovery-key/init", { secret_shares: 3, secret_threshold: 2 });
    expect(rec.status).toBe(400);
    expect(rec.body.errors[0]).toMatch(/^recovery rekeying not supported/);
    expect((await call("GET", "sys/rekey/verify")).body.errors[0]).toMatch(/^no rekey configuration found/);
    expect((await call("GET", "sys/rekey/backup")).body.errors[0]).toMatch(/backups are not supported/);
  });

  it("a nonce from no attempt, a missing nonce or key: refused, nothing counted", async () => {
    const st = await start({ secret_shares: 5, secret_threshold: 3 });
    expect(st.status).toBe(200);
    expect(st.body).toMatchObject({ started: true, t: 3, n: 5, progress: 0, required: 2 });
    expect(st.body.nonce).toMatch(/^[0-9a-f-]{36}$/);
    // a second rekey while one is in progress is refused and does not replace it
    const second = await start({ secret_shares: 1, secret_threshold: 1 });
    expect(second.status).toBe(400);
    expect(second.body.errors[0]).toMatch(/rekey already in progress/);
    const wrong = await update(srv.keys[0], "00000000-0000-4000-8000-000000000000");
    expect(wrong.status).toBe(400);
    expect(wrong.body.errors[0]).toMatch(/^nonce: does not match the rekey in progress/);
    expect((await call("PUT", "sys/rekey/update", { key: srv.keys[0] })).body.errors[0]).toMatch(/^nonce: required/);
    expect((await call("PUT", "sys/rekey/update", { nonce: st.body.nonce })).body.errors[0]).toMatch(/^key: required/);
    const bad = await update(Buffer.alloc(10, 1).toString("base64"), st.body.nonce);
    expect(bad.body.errors[0]).toMatch(/^key: expected a 33-byte key share/);
    expect((await status()).body).toMatchObject({ started: true, nonce: st.body.nonce, progress: 0 });
  });

  it("shares of another runtime: refused when the quorum is reached, progress reset, the attempt stays", async () => {
    const { nonce } = (await status()).body;
    expect((await update(foreign[0], nonce)).body.progress).toBe(1);
    const r = await update(foreign[1], nonce);
    expect(r.status).toBe(400);
    expect(r.body.errors[0]).toMatch(
      /^rekey aborted: the key shares do not reconstruct the unseal key \(progress reset\)/,
    );
    expect(r.body.keys).toBeUndefined();
    expect((await status()).body).toMatchObject({ started: true, nonce, progress: 0 });
    // one genuine share and one foreign one: refused too
    expect((await update(srv.keys[0], nonce)).body.progress).toBe(1);
    expect((await update(foreign[2], nonce)).status).toBe(400);
    // a repeated share does not count twice
    expect((await update(srv.keys[1], nonce)).body.progress).toBe(1);
    const twice = await update(srv.keys[1], nonce);
    expect(twice.status).toBe(400);
    expect(twice.body.errors[0]).toMatch(/already been provided/);
    expect((await status()).body.progress).toBe(1);
  });

  it("cancel needs the nonce (Vault 1.21); cancelled, its nonce is dead and its share does not count", async () => {
    const { nonce } = (await status()).body;
    const blind = await cancel();
    expect(blind.status).toBe(400);
    expect(blind.body.errors[0]).toMatch(/^nonce: cancelling a rekey started less than 10 minutes ago needs its nonce/);
    expect((await cancel("not-it")).status).toBe(400);
    expect((await status()).body.started).toBe(true);
    expect((await cancel(nonce)).status).toBe(204);
    expect((await status()).body).toMatchObject({ started: false, progress: 0, nonce: "" });
    const late = await update(srv.keys[0], nonce);
    expect(late.status).toBe(400);
    expect(late.body.errors[0]).toMatch(/^no rekey in progress/);
    expect((await cancel()).status).toBe(204); // nothing to cancel: fine, as Vault
  });

  it("two genuine shares on different workers: complete, 4 new shares / threshold 3 on every worker", async () => {
    const st = await start({ secret_shares: 4, secret_threshold: 3 });
    const one = await update(srv.keys[0], st.body.nonce);
    expect(one.body).toMatchObject({ started: true, progress: 1, required: 2, t: 3, n: 4 });
    expect(one.body.keys).toBeUndefined();
    const done = await update(srv.keys[2], st.body.nonce);
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(done.body).toMatchObject({
      complete: true,
      nonce: st.body.nonce,
      pgp_fingerprints: null,
      backup: false,
      verification_required: false,
    });
    fresh = done.body.keys_base64;
    freshHex = done.body.keys;
    expect(fresh).toHaveLength(4);
    expect(new Set(fresh).size).toBe(4);
    expect(fresh.map((k) => Buffer.from(k, "base64").length)).toEqual([33, 33, 33, 33]);
    expect(freshHex).toEqual(fresh.map((k) => Buffer.from(k, "base64").toString("hex")));
    // finished: gone, and every worker reports the new configuration (several fresh connections)
    for (let i = 0; i < 4; i++) {
      expect((await status()).body).toMatchObject({ started: false, required: 3 });
      expect((await call("GET", "sys/seal-status")).body).toMatchObject({ t: 3, n: 4, sealed: false });
    }
    // a replay of the completed nonce with the old shares: no rekey in progress
    const replay = await update(srv.keys[1], st.body.nonce);
    expect(replay.status).toBe(400);
    expect(replay.body.errors[0]).toMatch(/^no rekey in progress/);
    // the runtime serves on, on every worker: the data is where it was, and a keyring rotation works everywhere
    for (let i = 0; i < 3; i++)
      expect((await call("GET", "secret/data/app", undefined, srv.root)).body.data.data.password).toBe(SECRET);
    expect((await call("PUT", "sys/rotate", {}, srv.root)).status).toBe(204);
    expect((await call("PUT", "sys/rotate", {}, srv.root)).status).toBe(204);
    // a value under the newest term, read on both workers: each opens the rotated keyring with the new key
    expect((await call("POST", "secret/data/after", { data: { v: SECRET } }, srv.root)).status).toBe(200);
    for (let i = 0; i < 4; i++)
      expect((await call("GET", "secret/data/after", undefined, srv.root)).body.data.data.v).toBe(SECRET);
  });

  it("a worker killed after the rekey comes back with the new key (the supervisor hands it on)", async () => {
    const pids = () =>
      readFileSync(`/proc/${srv.proc.proc.pid}/task/${srv.proc.proc.pid}/children`, "utf8")
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    const mark = srv.proc.output().length;
    const [victim] = pids();
    process.kill(victim, "SIGKILL");
    let now: number[] = [];
    for (let i = 0; i < 100 && !(now.length === 2 && !now.includes(victim)); i++) {
      await new Promise((r) => setTimeout(r, 100));
      now = pids();
    }
    expect(now).toHaveLength(2);
    expect(now).not.toContain(victim);
    // it started (a worker given the old key would fail to unseal, exit and be replaced again and again)
    await new Promise((r) => setTimeout(r, 3000));
    expect(pids()).toEqual(now);
    const after = srv.proc.output().slice(mark);
    expect(after.match(/exited \(/g), after).toHaveLength(1);
    expect(after).toMatch(/exited \(SIGKILL\); starting a new one/);
    // every worker rotates and reads: one holding the old key would answer 503 (unseal key no longer opens the keyring)
    for (let i = 0; i < 4; i++) {
      expect((await call("PUT", "sys/rotate", {}, srv.root)).status).toBe(204);
      expect((await call("POST", "secret/data/after", { data: { v: `${SECRET}-${i}` } }, srv.root)).status).toBe(200);
      expect((await call("GET", "secret/data/after", undefined, srv.root)).body.data.data.v).toBe(`${SECRET}-${i}`);
    }
  });

  it("sealed: the old shares no longer unseal, the new ones do; rekey answers 503 while sealed", async () => {
    expect((await call("PUT", "sys/seal", {}, srv.root)).status).toBe(204);
    expect((await status()).status).toBe(503);
    expect((await start({ secret_shares: 1, secret_threshold: 1 })).status).toBe(503);
    expect((await update(fresh[0], "x")).status).toBe(503);
    // old shares: 33 bytes like the new ones, but a threshold of 3 now — and three old ones do not open it
    expect((await unseal(srv.keys[0])).body.progress).toBe(1);
    expect((await unseal(srv.keys[1])).body.progress).toBe(2);
    const old = await unseal(srv.keys[2]);
    expect(old.status).toBe(400);
    expect(old.body.errors[0]).toMatch(/invalid key shares \(progress reset\)/);
    expect((await call("GET", "sys/seal-status")).body).toMatchObject({ sealed: true, progress: 0, t: 3, n: 4 });
    for (const k of [fresh[3], fresh[0]]) expect((await unseal(k)).body.sealed).toBe(true);
    expect((await unseal(freshHex[2])).body.sealed).toBe(false);
    expect((await call("GET", "secret/data/app", undefined, srv.root)).body.data.data.password).toBe(SECRET);
  });

  it("after a restart too: the old shares are refused, the new ones unseal", async () => {
    await srv.proc.kill();
    again = await startServerProc(path.join(srv.dir, "runtime.hcl"));
    url = again.url;
    expect((await call("GET", "sys/seal-status")).body).toMatchObject({ sealed: true, t: 3, n: 4, initialized: true });
    for (const k of srv.keys) await unseal(k);
    expect((await call("GET", "sys/seal-status")).body.sealed).toBe(true);
    for (const k of fresh.slice(1)) await unseal(k);
    expect((await call("GET", "sys/seal-status")).body.sealed).toBe(false);
    expect((await call("GET", "secret/data/app", undefined, srv.root)).body.data.data.password).toBe(SECRET);
  });

  it("the new shares are only in that answer: not in the audit log, the server output or the database", async () => {
    const newKey = Buffer.from(await combine(fresh.slice(0, 3).map((k) => new Uint8Array(Buffer.from(k, "base64")))));
    const audit = readFileSync(log, "utf8");
    const db = readFileSync(path.join(srv.dir, "data/runtime.db"));
    const outputs = srv.proc.output() + again!.output();
    const forms = [...fresh, ...freshHex, newKey.toString("hex"), newKey.toString("base64")];
    for (const f of forms) {
      expect(audit).not.toContain(f);
      expect(outputs).not.toContain(f);
      expect(db.includes(Buffer.from(f))).toBe(false);
    }
    for (const k of fresh) expect(db.includes(Buffer.from(k, "base64"))).toBe(false);
    expect(db.includes(newKey)).toBe(false);
    // the rekey is in the audit log as Vault logs it: request and response records, the shares HMAC'd
    const recs = audit
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((r) => r.request.path === "sys/rekey/update");
    const completed = recs.find((r) => r.type === "response" && r.response?.data?.complete === true);
    expect(completed).toBeDefined();
    expect(completed.response.data.keys_base64).toHaveLength(4);
    for (const k of completed.response.data.keys_base64) expect(k).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    const req = recs.find((r) => r.type === "request");
    expect(req.request.data.key).toMatch(/^hmac-sha256:/);
    expect(outputs).toMatch(/runtime rekeyed: 4 key shares, threshold 3/);
  });
});
