// The JWT auth method's jti replay cache (runtime/server/vault/jti-cache.ts) on real SQLite storage: one
// use per (iss, jti) until the JWT could no longer be accepted, entries dropped once their minute has
// passed, and a bound on live entries that fails closed. The HTTP-level attacks (a replayed deployer JWT,
// a JWT for another runtime) are in test/provider/deployer-credential.test.ts.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { SqliteStorage } from "../../../../runtime/server/storage/sqlite.js";
import { consumeJti } from "../../../../runtime/server/vault/jti-cache.js";
import { LogicalError } from "../../../../runtime/server/vault/backend.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-jti-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const status = (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (e: unknown) => (e instanceof LogicalError ? e.status : Promise.reject(e)),
  );

describe("jti replay cache", () => {
  it("accepts a jti once per issuer while the token lives, again once it has expired", async () => {
    const s = new SqliteStorage(path.join(tmp, "a.db"));
    const now = 1_800_000_000;
    expect(await status(consumeJti(s, "iss-a", "j1", now + 120, now))).toBe(200);
    expect(await status(consumeJti(s, "iss-a", "j1", now + 120, now + 60))).toBe(403);
    // the same jti from another issuer is another token
    expect(await status(consumeJti(s, "iss-b", "j1", now + 120, now))).toBe(200);
    // past its minute the entry is purged (the token itself is refused by its exp by then)
    expect(await status(consumeJti(s, "iss-c", "x", now + 600, now + 240))).toBe(200);
    expect(await s.list("jti/")).toEqual([`${Math.floor((now + 600) / 60)}/`]);
    expect(await status(consumeJti(s, "iss-a", "j1", now + 400, now + 300))).toBe(200);
    await s.close();
  });

  it("concurrent logins with one jti: exactly one passes", async () => {
    const s = new SqliteStorage(path.join(tmp, "b.db"));
    const now = Math.floor(Date.now() / 1000);
    const r = await Promise.all(Array.from({ length: 8 }, () => status(consumeJti(s, "i", "same", now + 60, now))));
    expect(r.filter((x) => x === 200)).toHaveLength(1);
    expect(r.filter((x) => x === 403)).toHaveLength(7);
    await s.close();
  });

  it("is bounded: past the limit of live entries a login fails closed (503) until entries expire", async () => {
    const s = new SqliteStorage(path.join(tmp, "c.db"));
    const now = 1_800_000_000;
    await s.put("jti-count", Buffer.from("100000"));
    expect(await status(consumeJti(s, "i", "over", now + 60, now))).toBe(503);
    expect(await s.list("jti/")).toEqual([]);
    await s.close();
  });
});
