// The HTTP layer against a real dev runtime: routing, Vault envelopes and errors, sealed state,
// token auth and ACL decisions, KV v2 round trips over plain fetch.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { startTestRuntime, type TestRuntime } from "../../support/runtime.js";

/** Vault's error envelope. */
type VaultErrors = { errors: string[] };

let rt: TestRuntime;
beforeAll(async () => {
  rt = await startTestRuntime();
});
afterAll(async () => {
  await rt?.close();
});

describe("runtime HTTP core", () => {
  it("answers sys/health and sys/seal-status without a token", async () => {
    const h = await fetch(`${rt.url}/v1/sys/health`);
    expect(h.status).toBe(200);
    expect(h.headers.get("cache-control")).toBe("no-store");
    const body = await h.json();
    expect(body).toMatchObject({ initialized: true, sealed: false, standby: false });
    const s = await rt.api("GET", "sys/seal-status", undefined, "");
    expect(s.body).toMatchObject({ type: "shamir", initialized: true, sealed: false, t: 1, n: 1 });
    expect(s.body.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("refuses a missing or unknown token with 403 and Vault's error shape", async () => {
    const a = await rt.api("GET", "secret/data/x", undefined, "");
    expect(a.status).toBe(403);
    expect(a.body.errors[0]).toMatch(/permission denied/);
    const b = await rt.api("GET", "secret/data/x", undefined, "hvs.not-a-real-token");
    expect(b.status).toBe(403);
  });

  it("round-trips KV v2 with versions, cas, delete/undelete/destroy", async () => {
    const w1 = await rt.api("POST", "secret/data/app/db", { data: { password: "s3cret-1" } });
    expect(w1.status).toBe(200);
    expect(w1.body.data.version).toBe(1);
    const w2 = await rt.api("PUT", "secret/data/app/db", { data: { password: "s3cret-2" }, options: { cas: 1 } });
    expect(w2.body.data.version).toBe(2);
    const bad = await rt.api("PUT", "secret/data/app/db", { data: { password: "x" }, options: { cas: 1 } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0]).toMatch(/check-and-set/);
    const r = await rt.api("GET", "secret/data/app/db");
    expect(r.body.data).toMatchObject({ data: { password: "s3cret-2" }, metadata: { version: 2, destroyed: false } });
    const v1 = await rt.api("GET", "secret/data/app/db?version=1");
    expect(v1.body.data.data.password).toBe("s3cret-1");
    expect((await rt.api("DELETE", "secret/data/app/db")).status).toBe(204);
    const gone = await rt.api("GET", "secret/data/app/db");
    expect(gone.status).toBe(404);
    expect(gone.body.data.metadata.deletion_time).not.toBe("");
    expect((await rt.api("POST", "secret/undelete/app/db", { versions: [2] })).status).toBe(204);
    expect((await rt.api("GET", "secret/data/app/db")).body.data.data.password).toBe("s3cret-2");
    expect((await rt.api("PUT", "secret/destroy/app/db", { versions: [1] })).status).toBe(204);
    const d1 = await rt.api("GET", "secret/data/app/db?version=1");
    expect(d1.status).toBe(404);
    expect(d1.body.data.metadata.destroyed).toBe(true);
    const meta = await rt.api("GET", "secret/metadata/app/db");
    expect(meta.body.data.current_version).toBe(2);
    expect(Object.keys(meta.body.data.versions)).toEqual(["1", "2"]);
    const list = await rt.api("LIST", "secret/metadata/app");
    expect(list.body.data.keys).toEqual(["db"]);
    const list2 = await rt.api("GET", "secret/metadata/?list=true");
    expect(list2.body.data.keys).toEqual(["app/"]);
    expect((await rt.api("LIST", "secret/metadata/nothing-here")).status).toBe(404);
  });

  it("merges a PATCH into the latest version", async () => {
    await rt.api("POST", "secret/data/patchme", { data: { a: "1", b: "2" } });
    const p = await fetch(`${rt.url}/v1/secret/data/patchme`, {
      method: "PATCH",
      headers: { "x-vault-token": rt.rootToken, "content-type": "application/merge-patch+json" },
      body: JSON.stringify({ data: { b: null, c: "3" } }),
    });
    expect(p.status).toBe(200);
    expect((await rt.api("GET", "secret/data/patchme")).body.data.data).toEqual({ a: "1", c: "3" });
  });

  it("404s unknown routes, 400s undecodable paths, in Vault's format", async () => {
    const r = await rt.api("GET", "nope/thing");
    expect(r.status).toBe(404);
    expect(r.body.errors[0]).toMatch(/no handler for route "nope\/thing"/);
    const bad = await fetch(`${rt.url}/v1/secret/data/%E0%A4%A`, { headers: { "x-vault-token": rt.rootToken } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as VaultErrors).errors[0]).toMatch(/percent-encoding/);
    const dots = await rt.api("GET", "secret/data/a/../b");
    expect(dots.status).toBeGreaterThanOrEqual(400);
  });

  it("refuses oversized and malformed bodies with 4xx, not a crash", async () => {
    const big = await fetch(`${rt.url}/v1/secret/data/big`, {
      method: "POST",
      headers: { "x-vault-token": rt.rootToken, "content-type": "application/json" },
      body: JSON.stringify({ data: { x: "a".repeat(2 * 1024 * 1024) } }),
    });
    expect(big.status).toBe(413);
    const bad = await fetch(`${rt.url}/v1/secret/data/bad`, {
      method: "POST",
      headers: { "x-vault-token": rt.rootToken },
      body: "{not json",
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as VaultErrors).errors[0]).toMatch(/JSON/);
  });
});
