// Attack 7, token trees: children stayed valid after their parent expired until the parent was next
// looked up (forever in dev mode, where tidy never runs); a limited-use parent deleted by its last
// use left its children alive; a corrupted child-index row made revoking the parent fail with 500
// while the parent stayed valid. Expected (Vault): expiry, exhaustion and revocation of a parent
// revoke the tree, and revocation never leaves the revoked token valid — on every worker.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestRuntime, type TestRuntime } from "../support/runtime.js";
import { MemoryStorage } from "../../runtime/server/storage/memory.js";
import { startRuntimeServer, type ServerUnderAttack } from "./support.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("attack 7 on runtime server (SQLite, workers = 2)", () => {
  let srv: ServerUnderAttack;
  beforeAll(async () => {
    srv = await startRuntimeServer({ workers: 2 });
    await srv.call("POST", "sys/mounts/secret", { type: "kv", options: { version: "2" } }, srv.root);
    await srv.call(
      "PUT",
      "sys/policies/acl/reader",
      {
        policy: 'path "secret/*" { capabilities = ["read"] }\npath "auth/token/create" { capabilities = ["update"] }',
      },
      srv.root,
    );
  }, 60_000);
  afterAll(async () => {
    await srv?.close();
  });
  const create = async (token: string, body: Record<string, unknown>) => {
    const r = await srv.call("POST", "auth/token/create", { policies: ["reader"], ...body }, token);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.auth.client_token as string;
  };
  /** lookup-self through fresh connections, so both workers answer. */
  const everywhere = async (token: string) => {
    const out: number[] = [];
    for (let i = 0; i < 6; i++) out.push((await srv.call("GET", "auth/token/lookup-self", undefined, token)).status);
    return out;
  };

  it("revoking a parent through one worker refuses its children and grandchildren on every worker", async () => {
    const parent = await create(srv.root, { ttl: "1h" });
    const child = await create(parent, { ttl: "1h" });
    const grandchild = await create(child, { ttl: "1h" });
    expect(await everywhere(grandchild)).toEqual(Array(6).fill(200));
    expect((await srv.call("POST", "auth/token/revoke-self", {}, parent)).status).toBe(204);
    for (const t of [parent, child, grandchild]) expect(await everywhere(t)).toEqual(Array(6).fill(403));
  });

  it("a parent's expiry ends its children although nobody looks the parent up", async () => {
    const parent = await create(srv.root, { ttl: "2s" });
    const child = await create(parent, { ttl: "1h" });
    const grandchild = await create(child, { ttl: "1h" });
    expect((await srv.call("GET", "auth/token/lookup-self", undefined, grandchild)).status).toBe(200);
    await sleep(3_000);
    // Only the descendants are presented, never the parent itself.
    expect(await everywhere(grandchild)).toEqual(Array(6).fill(403));
    expect(await everywhere(child)).toEqual(Array(6).fill(403));
  });

  it("a limited-use parent used up by its last use takes its children with it", async () => {
    const parent = await create(srv.root, { ttl: "1h", num_uses: 2 });
    const child = await create(parent, { ttl: "1h" }); // use 1
    expect((await srv.call("GET", "secret/data/nothing", undefined, parent)).status).toBe(404); // use 2: spent
    expect((await srv.call("GET", "auth/token/lookup-self", undefined, parent)).status).toBe(403);
    expect(await everywhere(child)).toEqual(Array(6).fill(403));
  });
});

describe("attack 7 on runtime dev: a damaged child-index row", () => {
  let rt: TestRuntime;
  let storage: MemoryStorage;
  beforeAll(async () => {
    storage = new MemoryStorage();
    rt = await startTestRuntime({ storage });
  });
  afterAll(async () => {
    await rt?.close();
  });

  it("revoking the parent still revokes it (no 500 leaving it valid), and the child is refused", async () => {
    const parent = (await rt.api("POST", "auth/token/create", { ttl: "1h" })).body.auth;
    const child = (await rt.api("POST", "auth/token/create", { ttl: "1h" }, parent.client_token)).body.auth;
    // Corrupt the child's accessor row (barrier ciphertext), which revoking the parent must read.
    const key = `sys/token/accessor/${child.accessor}`;
    const v = Buffer.from((await storage.get(key))!);
    v[v.length - 3] ^= 0x01;
    await storage.put(key, v);
    expect((await storage.list(`sys/token/parent/${parent.accessor}/`)).length).toBe(1);
    const r = await rt.api("POST", "auth/token/revoke-self", {}, parent.client_token);
    expect(r.status).toBe(204);
    expect((await rt.api("GET", "auth/token/lookup-self", undefined, parent.client_token)).status).toBe(403);
    expect((await rt.api("GET", "auth/token/lookup-self", undefined, child.client_token)).status).toBe(403);
  });
});
