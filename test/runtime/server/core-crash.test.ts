// Durability and replication with real processes: a kill -9 in the middle of concurrent KV writes
// loses no acknowledged write (SQLite and PostgreSQL), and two runtime processes on one PostgreSQL
// database see each other's writes, tokens, policies and mounts.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { startServerProc, api, type ServerProc } from "./core-procs.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";

/** Hammers KV writes on the given servers until stopped; returns the acknowledged key → value map. */
function writers(urls: string[], token: string, concurrency: number) {
  const acked = new Map<string, string>();
  let stop = false;
  let n = 0;
  const loops = Array.from({ length: concurrency }, async (_, w) => {
    while (!stop) {
      const i = n++;
      const key = `crash/w${w}/k${i}`,
        value = `value-${w}-${i}-${"x".repeat(i % 50)}`;
      try {
        const r = await api(urls[i % urls.length], "POST", `secret/data/${key}`, { data: { v: value } }, token);
        if (r.status === 200) acked.set(key, value);
      } catch {
        /* connection reset by the kill: not acknowledged */
      }
    }
  });
  return {
    acked,
    stop: async () => {
      stop = true;
      await Promise.all(loops);
    },
  };
}

async function initUnseal(url: string) {
  const init = await api(url, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 });
  expect(init.status).toBe(200);
  const u = await api(url, "PUT", "sys/unseal", { key: init.body.keys_base64[0] });
  expect(u.body.sealed).toBe(false);
  return { key: init.body.keys_base64[0] as string, root: init.body.root_token as string };
}

async function waitFor(cond: () => boolean, ms: number) {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

async function verifyAll(url: string, token: string, acked: Map<string, string>) {
  const missing: string[] = [];
  const entries = [...acked];
  for (let i = 0; i < entries.length; i += 16) {
    await Promise.all(
      entries.slice(i, i + 16).map(async ([k, v]) => {
        const r = await api(url, "GET", `secret/data/${k}`, undefined, token);
        if (r.status !== 200 || r.body.data.data.v !== v) missing.push(k);
      }),
    );
  }
  return missing;
}

describe("kill -9 during concurrent writes (SQLite)", () => {
  let dir: string;
  let srv: ServerProc | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "bk-crash-"));
  });
  afterAll(async () => {
    await srv?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("loses no acknowledged write", async () => {
    const cfg = path.join(dir, "runtime.hcl");
    writeFileSync(
      cfg,
      `storage "sqlite" { path = "runtime.db" }\nlistener "tcp" { address = "127.0.0.1:0"\n tls_disable = true }`,
    );
    srv = await startServerProc(cfg);
    const { key, root } = await initUnseal(srv.url);
    expect(
      (await api(srv.url, "POST", "sys/mounts/secret", { type: "kv", options: { version: "2" } }, root)).status,
    ).toBe(204);
    const w = writers([srv.url], root, 16);
    await waitFor(() => w.acked.size >= 150, 20_000);
    srv.proc.kill("SIGKILL");
    await w.stop();
    await srv.kill("SIGKILL");
    expect(w.acked.size).toBeGreaterThanOrEqual(150);

    srv = await startServerProc(cfg);
    expect((await api(srv.url, "GET", "sys/seal-status")).body.sealed).toBe(true);
    await api(srv.url, "PUT", "sys/unseal", { key });
    expect(await verifyAll(srv.url, root, w.acked)).toEqual([]);
  });
});

describe("PostgreSQL: two replicas on one database", () => {
  const ok = requireTool(
    "PostgreSQL server (apt-get install postgresql)",
    haveCommand("bash", ["-c", "ls /usr/lib/postgresql/*/bin/initdb"]),
  );
  let dir = "",
    pgDir = "",
    url = "";
  let a: ServerProc | undefined, b: ServerProc | undefined;
  let cfg = "";
  beforeAll(() => {
    if (!ok) return;
    dir = mkdtempSync(path.join(tmpdir(), "bk-pgrep-"));
    pgDir = mkdtempSync(path.join(tmpdir(), "bk-pg-")); // its own /tmp entry: the postgres user must be able to reach it
    url = execFileSync(path.join(repoRoot, "scripts/pg-test-server.sh"), ["start", pgDir], { encoding: "utf8" }).trim();
    cfg = path.join(dir, "runtime.json");
    writeFileSync(
      cfg,
      JSON.stringify({
        storage: { postgresql: { connection_url: url } },
        listener: { tcp: { address: "127.0.0.1:0", tls_disable: true } },
      }),
    );
  }, 120_000);
  afterAll(async () => {
    await a?.kill("SIGKILL");
    await b?.kill("SIGKILL");
    if (pgDir) execFileSync(path.join(repoRoot, "scripts/pg-test-server.sh"), ["stop", pgDir]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.runIf(ok)("see each other's writes, and a kill -9 of one loses no acknowledged write", async () => {
    [a, b] = await Promise.all([startServerProc(cfg), startServerProc(cfg)]);
    const { key, root } = await initUnseal(a.url);
    // B learns of the initialization from the shared database.
    expect((await api(b.url, "GET", "sys/seal-status")).body).toMatchObject({ initialized: true, sealed: true });
    await api(b.url, "PUT", "sys/unseal", { key });
    expect((await api(a.url, "POST", "sys/mounts/secret", { type: "kv-v2" }, root)).status).toBe(204);
    expect((await api(a.url, "POST", "secret/data/shared", { data: { from: "a" } }, root)).status).toBe(200);
    expect((await api(b.url, "GET", "secret/data/shared", undefined, root)).body.data.data).toEqual({ from: "a" });
    // Check-and-set across replicas: B's write with the stale version is refused.
    expect(
      (await api(b.url, "POST", "secret/data/shared", { data: { from: "b" }, options: { cas: 1 } }, root)).status,
    ).toBe(200);
    expect(
      (await api(a.url, "POST", "secret/data/shared", { data: { from: "a2" }, options: { cas: 1 } }, root)).status,
    ).toBe(400);
    // Policies and tokens made on one replica work on the other.
    await api(
      b.url,
      "PUT",
      "sys/policies/acl/ro",
      { policy: 'path "secret/data/shared" { capabilities = ["read"] }' },
      root,
    );
    const t = (await api(a.url, "POST", "auth/token/create", { policies: ["ro"], ttl: "5m" }, root)).body.auth
      .client_token;
    expect((await api(b.url, "GET", "secret/data/shared", undefined, t)).body.data.data).toEqual({ from: "b" });
    expect((await api(b.url, "POST", "auth/token/revoke-self", {}, t)).status).toBe(204);
    expect((await api(a.url, "GET", "secret/data/shared", undefined, t)).status).toBe(403);

    const w = writers([a.url, b.url], root, 16);
    await waitFor(() => w.acked.size >= 150, 20_000);
    a.proc.kill("SIGKILL");
    await w.stop();
    await a.kill("SIGKILL");
    expect(w.acked.size).toBeGreaterThanOrEqual(150);
    expect(await verifyAll(b.url, root, w.acked)).toEqual([]);
    a = await startServerProc(cfg);
    expect((await api(a.url, "GET", "sys/seal-status")).body.sealed).toBe(true);
    await api(a.url, "PUT", "sys/unseal", { key });
    expect(await verifyAll(a.url, root, w.acked)).toEqual([]);
  });
});
