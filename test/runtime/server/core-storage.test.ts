// Storage under the barrier, on real SQLite files and a real PostgreSQL server: backend conformance,
// versioned migrations, no plaintext secret or token at rest (grep the raw file / table dump),
// restart comes up sealed, wrong unseal keys refused, a corrupted row gives a clear error for that
// key while everything else stays readable.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { createHash } from "node:crypto";
import pg from "pg";
import { SqliteStorage } from "../../../runtime/server/storage/sqlite.js";
import { PostgresStorage } from "../../../runtime/server/storage/postgres.js";
import { Core } from "../../../runtime/server/vault/core.js";
import { builtinRegistry } from "../../../runtime/server/engines.js";
import { newMount } from "../../../runtime/server/vault/mounts.js";
import type { Storage } from "../../../runtime/server/storage/types.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
type Json = any;
const MARKER = "plaintext-marker-7f3a9c";
/** KV v2 keeps version n of secret p at ver/<sha256(p)>/<n> in its mount's storage. */
const VERSION_KEY_OF_ONE = `/ver/${createHash("sha256").update("one").digest("hex")}/1`;

async function conformance(s: Storage) {
  await s.put("a/b/c", Buffer.from("1"));
  await s.put("a/b/d", Buffer.from("2"));
  await s.put("a/e", Buffer.from("3"));
  expect((await s.get("a/b/c"))?.toString()).toBe("1");
  expect(await s.list("a/")).toEqual(["b/", "e"]);
  expect(await s.list("a/b/")).toEqual(["c", "d"]);
  // Range listing must not leak neighbours that sort right after the prefix, nor miss unicode keys.
  await s.put("a0", Buffer.from("n"));
  await s.put("a/é/x", Buffer.from("u"));
  await s.put("a/\u{1F600}", Buffer.from("emoji"));
  expect(await s.list("a/")).toEqual(["b/", "e", "é/", "\u{1F600}"].sort());
  expect(await s.list("a/é/")).toEqual(["x"]);
  expect((await s.list("")).includes("a0")).toBe(true);
  await s.delete("a/b/c");
  expect(await s.get("a/b/c")).toBeUndefined();
  await expect(
    s.transaction(async (tx) => {
      await tx.put("a/x", Buffer.from("no"));
      throw new Error("boom");
    }),
  ).rejects.toThrow("boom");
  expect(await s.get("a/x")).toBeUndefined();
  const seen = await s.transaction(async (tx) => {
    await tx.put("a/y", Buffer.from("yes"));
    return (await tx.get("a/y"))?.toString();
  });
  expect(seen).toBe("yes");
  // Concurrent read-modify-write transactions serialize: no lost increments.
  await s.put("ctr", Buffer.from("0"));
  await Promise.all(
    Array.from({ length: 20 }, () =>
      s.transaction(async (tx) => {
        const n = Number((await tx.get("ctr"))!.toString());
        await new Promise((r) => setTimeout(r, 1));
        await tx.put("ctr", Buffer.from(String(n + 1)));
      }),
    ),
  );
  expect((await s.get("ctr"))?.toString()).toBe("20");
}

/** Initializes a 3-of-5 runtime on `physical`, stores secrets, returns keys and the root token. */
async function seed(physical: Storage) {
  const core = new Core({ physical, registry: builtinRegistry() });
  await core.start();
  const init = await core.initialize(5, 3);
  await core.unsealWith(init.keys.slice(0, 3));
  await core.writeTable("secret", (t) => [...t, newMount("secret", "secret/", "kv", { options: { version: "2" } })]);
  const h = (method: string, p: string, body?: unknown) =>
    core.handle({
      method,
      path: p,
      query: {},
      body,
      headers: { "x-vault-token": init.root_token },
      clientIp: "127.0.0.1",
    });
  for (const name of ["one", "two", "three"]) {
    const r = await h("POST", `secret/data/${name}`, { data: { value: `${MARKER}-${name}` } });
    expect(r.status).toBe(200);
  }
  const child = await h("POST", "auth/token/create", { policies: ["default"], ttl: "1h" });
  await core.seal();
  return { init, childToken: (child.body as Json).auth.client_token as string };
}

async function reopenAndCheck(physical: Storage, init: { keys: string[]; root_token: string }, otherKeys: string[]) {
  const core = new Core({ physical, registry: builtinRegistry() });
  await core.start();
  expect(core.sealStatus()).toMatchObject({ initialized: true, sealed: true, t: 3, n: 5 });
  const h = (method: string, p: string, body?: unknown) =>
    core.handle({
      method,
      path: p,
      query: {},
      body,
      headers: { "x-vault-token": init.root_token },
      clientIp: "127.0.0.1",
    });
  expect((await h("GET", "secret/data/one")).status).toBe(503);
  // Three shares of another runtime's key: refused, progress reset, still sealed.
  await core.submitUnsealKey(otherKeys[0]);
  await core.submitUnsealKey(otherKeys[1]);
  await expect(core.submitUnsealKey(otherKeys[2])).rejects.toThrow(/invalid key shares/);
  expect(core.sealStatus()).toMatchObject({ sealed: true, progress: 0 });
  // Two right shares plus one wrong share: refused too.
  await core.submitUnsealKey(init.keys[0]);
  await core.submitUnsealKey(init.keys[1]);
  await expect(core.submitUnsealKey(otherKeys[3])).rejects.toThrow(/invalid key shares/);
  await expect(core.submitUnsealKey("zz")).rejects.toThrow(/key share/);
  await core.unsealWith([init.keys[4], init.keys[2], init.keys[0]]);
  expect(core.sealed).toBe(false);
  const r = await h("GET", "secret/data/two");
  expect((r.body as Json).data.data.value).toBe(`${MARKER}-two`);
  return { core, h };
}

function rawBytesContain(files: string[], needles: string[]): string[] {
  const hits: string[] = [];
  for (const f of files) {
    const buf = readFileSync(f);
    for (const n of needles) if (buf.includes(Buffer.from(n))) hits.push(`${path.basename(f)}: ${n.slice(0, 12)}…`);
  }
  return hits;
}

describe("SQLite storage", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "bk-sqlite-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("passes the storage conformance checks and records its schema version", async () => {
    const s = new SqliteStorage(path.join(dir, "conf.db"));
    await conformance(s);
    expect(s.schemaVersion()).toBe(1);
    await s.close();
    const again = new SqliteStorage(path.join(dir, "conf.db"));
    expect(again.schemaVersion()).toBe(1);
    expect((await again.get("a/y"))?.toString()).toBe("yes");
    await again.close();
  });

  it("keeps no secret, token or key in clear on disk; restarts sealed; refuses wrong keys; isolates a corrupt row", async () => {
    const file = path.join(dir, "runtime.db");
    const { init, childToken } = await seed(new SqliteStorage(file));
    const other = await seed(new SqliteStorage(path.join(dir, "other.db")));
    const files = readdirSync(dir)
      .filter((f) => f.startsWith("runtime.db"))
      .map((f) => path.join(dir, f));
    const needles = [MARKER, init.root_token, childToken, ...init.keys, ...init.keys_base64];
    expect(rawBytesContain(files, needles)).toEqual([]);
    expect(rawBytesContain(files, ["sys/token/id/"]).length).toBeGreaterThan(0); // the grep itself works: keys are visible

    const { core } = await reopenAndCheck(new SqliteStorage(file), init, other.init.keys);
    await core.seal();
    await core.opts.physical.close();

    // Flip one byte in the ciphertext of secret "one"'s version 1.
    const db = new DatabaseSync(file);
    const rows = db.prepare("SELECT key, value FROM bk_kv WHERE key LIKE 'logical/%/ver/%'").all() as Array<{
      key: string;
      value: Uint8Array;
    }>;
    expect(rows.length).toBe(3);
    const target = rows.find((r) => r.key.endsWith(VERSION_KEY_OF_ONE))!;
    const flipped = Buffer.from(target.value);
    flipped[flipped.length - 20] ^= 0x01;
    db.prepare("UPDATE bk_kv SET value = ? WHERE key = ?").run(flipped, target.key);
    db.close();
    const c2 = await reopenAndCheck(new SqliteStorage(file), init, other.init.keys);
    const bad = await c2.h("GET", "secret/data/one");
    expect(bad.status).toBe(500);
    // The client learns that storage is corrupt, never the internal storage key (the log has it).
    expect((bad.body as Json).errors[0]).toMatch(/^storage corruption: /);
    expect(JSON.stringify(bad.body)).not.toContain(target.key);
    expect(JSON.stringify(bad.body)).not.toContain(MARKER);
    expect(((await c2.h("GET", "secret/data/three")).body as Json).data.data.value).toBe(`${MARKER}-three`);
    expect((await c2.h("GET", "secret/metadata/one")).status).toBe(200);
    // Writing a new version over the damaged one still works; the old version stays reported as corrupt.
    expect((await c2.h("POST", "secret/data/one", { data: { value: "fresh" } })).status).toBe(200);
    expect(((await c2.h("GET", "secret/data/one")).body as Json).data.data.value).toBe("fresh");
    const v1 = await c2.core.handle({
      method: "GET",
      path: "secret/data/one",
      query: { version: "1" },
      body: undefined,
      headers: { "x-vault-token": init.root_token },
      clientIp: "127.0.0.1",
    });
    expect(v1.status).toBe(500);
    await core.opts.physical.close().catch(() => undefined);
    await c2.core.seal();
    await c2.core.opts.physical.close();
  });
});

describe("keyring rotation across two runtimes on one SQLite file", () => {
  it("keeps old values readable, uses the new term for writes, and the other runtime picks the term up", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bk-rotate-"));
    try {
      const file = path.join(dir, "rt.db");
      const { init } = await seed(new SqliteStorage(file));
      const open = async () => {
        const core = new Core({ physical: new SqliteStorage(file), registry: builtinRegistry() });
        await core.start();
        await core.unsealWith(init.keys.slice(0, 3));
        const h = (method: string, p: string, body?: unknown) =>
          core.handle({
            method,
            path: p,
            query: {},
            body,
            headers: { "x-vault-token": init.root_token },
            clientIp: "127.0.0.1",
          });
        return { core, h };
      };
      const a = await open(),
        b = await open();
      expect(((await a.h("GET", "sys/key-status")).body as Json).data).toMatchObject({ term: 1, terms: 1 });
      expect((await a.h("PUT", "sys/rotate", {})).status).toBe(204);
      expect(((await a.h("GET", "sys/key-status")).body as Json).data).toMatchObject({ term: 2, terms: 2 });
      expect((await a.h("POST", "secret/data/after", { data: { v: "after-rotation" } })).status).toBe(200);
      // b unsealed before the rotation: it meets term 2 ciphertext and re-reads the keyring.
      expect(((await b.h("GET", "secret/data/after")).body as Json).data.data.v).toBe("after-rotation");
      expect(((await b.h("GET", "secret/data/one")).body as Json).data.data.value).toBe(`${MARKER}-one`);
      expect(((await b.h("GET", "sys/key-status")).body as Json).data.term).toBe(2);
      for (const x of [a, b]) {
        await x.core.seal();
        await x.core.opts.physical.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("PostgreSQL storage", () => {
  const have = haveCommand("bash", ["-c", "ls /usr/lib/postgresql/*/bin/initdb"]);
  const ok = requireTool("PostgreSQL server (apt-get install postgresql)", have);
  let dir = "";
  let url = "";
  beforeAll(() => {
    if (!ok) return;
    dir = mkdtempSync(path.join(tmpdir(), "bk-pg-"));
    url = execFileSync(path.join(repoRoot, "scripts/pg-test-server.sh"), ["start", dir], { encoding: "utf8" }).trim();
  }, 120_000);
  afterAll(() => {
    if (dir) execFileSync(path.join(repoRoot, "scripts/pg-test-server.sh"), ["stop", dir]);
  });

  it.runIf(ok)("passes the storage conformance checks under concurrent transactions and migrates once", async () => {
    const [a, b] = await Promise.all([PostgresStorage.open(url), PostgresStorage.open(url)]);
    await conformance(a);
    // Two storages (as two replicas would) incrementing one counter: serialized by row/advisory locks.
    await a.put("ctr2", Buffer.from("0"));
    await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        (i % 2 ? a : b).transaction(async (tx) => {
          const n = Number((await tx.get("ctr2"))!.toString());
          await tx.put("ctr2", Buffer.from(String(n + 1)));
        }),
      ),
    );
    expect((await b.get("ctr2"))?.toString()).toBe("30");
    expect(await a.schemaVersion()).toBe(1);
    const leader = await Promise.all([
      a.withLeaderLock("sweep", () => new Promise((r) => setTimeout(() => r("a"), 200))),
      new Promise((r) => setTimeout(r, 50)).then(() => b.withLeaderLock("sweep", async () => "b")),
    ]);
    expect(leader).toEqual(["a", undefined]);
    await a.close();
    await b.close();
  });

  it.runIf(ok)(
    "keeps no plaintext in the table dump; restarts sealed; refuses wrong keys; isolates a corrupt row",
    async () => {
      const { init, childToken } = await seed(await PostgresStorage.open(url));
      const other = await seed(new SqliteStorage(path.join(dir + "-other.db")));
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      const dump = (await client.query("SELECT key, encode(value, 'escape') AS v FROM bk_kv")).rows
        .map((r) => `${r.key} ${r.v}`)
        .join("\n");
      for (const n of [MARKER, init.root_token, childToken, ...init.keys, ...init.keys_base64])
        expect(dump.includes(n)).toBe(false);
      expect(dump).toContain("sys/token/id/");
      const { core } = await reopenAndCheck(await PostgresStorage.open(url), init, other.init.keys);
      const target = (await client.query("SELECT key FROM bk_kv WHERE key LIKE $1", [`logical/%${VERSION_KEY_OF_ONE}`]))
        .rows[0].key as string;
      await client.query(
        "UPDATE bk_kv SET value = set_byte(value, length(value) - 20, get_byte(value, length(value) - 20) # 1) WHERE key = $1",
        [target],
      );
      const h = (p: string) =>
        core.handle({
          method: "GET",
          path: p,
          query: {},
          body: undefined,
          headers: { "x-vault-token": init.root_token },
          clientIp: "127.0.0.1",
        });
      const bad = await h("secret/data/one");
      expect(bad.status).toBe(500);
      expect((bad.body as Json).errors[0]).toMatch(/^storage corruption: /);
      expect(JSON.stringify(bad.body)).not.toContain(target); // the storage key stays in the server log
      expect(((await h("secret/data/three")).body as Json).data.data.value).toBe(`${MARKER}-three`);
      await core.seal();
      await core.opts.physical.close();
      await client.end();
      for (const suffix of ["", "-wal", "-shm"]) rmSync(`${dir}-other.db${suffix}`, { force: true });
    },
  );
});
