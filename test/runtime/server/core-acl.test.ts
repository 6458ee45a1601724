// ACL policies: HCL parsing errors, Vault's pattern precedence, deny overriding, sudo, and the
// same decisions enforced over HTTP (deny by default, child tokens limited to the parent's policies).
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { Acl, parsePolicy, PolicyParseError } from "../../../runtime/server/vault/policy.js";
import { startTestRuntime, type TestRuntime } from "../../support/runtime.js";

const caps = (acl: Acl, p: string) => [...acl.capabilities(p)].sort();

describe("policy parsing", () => {
  it("parses HCL rules with comments and JSON policies", () => {
    const p = parsePolicy(
      "a",
      `# comment
      path "secret/data/app/*" { capabilities = ["read", "list"] }  // trailing
      /* block */ path "sys/mounts" {
        capabilities = ["read"]
      }`,
    );
    expect(p.rules).toEqual([
      { pattern: "secret/data/app/*", capabilities: ["read", "list"] },
      { pattern: "sys/mounts", capabilities: ["read"] },
    ]);
    const j = parsePolicy("j", JSON.stringify({ path: { "kv/+/x": { capabilities: ["update"] } } }));
    expect(j.rules[0]).toEqual({ pattern: "kv/+/x", capabilities: ["update"] });
  });

  it("names the problem in bad policies", () => {
    expect(() => parsePolicy("x", `path "a" { capabilities = ["reed"] }`)).toThrow(/unknown capability 'reed'/);
    expect(() => parsePolicy("x", `path "a*b" { capabilities = ["read"] }`)).toThrow(/only allowed at the end/);
    expect(() => parsePolicy("x", `path "a" { capabilities = ["read"]`)).toThrow(PolicyParseError);
    expect(() => parsePolicy("x", `path "a" { capabilities = ["read"] }\nfoo = 1`)).toThrow(
      /unexpected attribute 'foo'/,
    );
    expect(() => parsePolicy("x", `path "a" {\n  capabilities = ["read"]\n  bogus = true }`)).toThrow(
      /line 1: unknown key 'bogus'/,
    );
  });
});

describe("ACL decisions", () => {
  it("denies by default and grants only matching paths", () => {
    const acl = new Acl([parsePolicy("p", `path "secret/data/app/*" { capabilities = ["read"] }`)]);
    expect(acl.allows("secret/data/app/db", "read")).toBe(true);
    expect(acl.allows("secret/data/app/db", "update")).toBe(false);
    expect(acl.allows("secret/data/other", "read")).toBe(false);
    expect(acl.allows("secret/data/app", "read")).toBe(false);
  });

  it("uses the most specific pattern (Vault precedence) and lets deny win within a pattern", () => {
    const acl = new Acl([
      parsePolicy(
        "a",
        `path "secret/*" { capabilities = ["read", "list"] }
                        path "secret/data/app/*" { capabilities = ["create", "update"] }
                        path "secret/data/app/locked" { capabilities = ["deny"] }
                        path "secret/data/+/team" { capabilities = ["patch"] }
                        path "secret/+/team/*" { capabilities = ["sudo"] }`,
      ),
      parsePolicy("b", `path "secret/data/app/*" { capabilities = ["delete"] }`),
    ]);
    expect(caps(acl, "secret/data/app/x")).toEqual(["create", "delete", "update"]); // merged a+b, more specific than secret/*
    expect(caps(acl, "secret/data/app/locked")).toEqual([]); // exact deny
    expect(caps(acl, "secret/metadata/foo")).toEqual(["list", "read"]);
    expect(caps(acl, "secret/data/a/team")).toEqual(["patch"]); // first wildcard later than secret/*
    expect(caps(acl, "secret/data/team/x")).toEqual(["list", "read"]); // tie on first wildcard: fewer '+' wins
    const denyMerged = new Acl([
      parsePolicy("a", `path "kv/*" { capabilities = ["read"] }`),
      parsePolicy("b", `path "kv/*" { capabilities = ["deny"] }`),
    ]);
    expect(caps(denyMerged, "kv/x")).toEqual([]);
  });

  it("root has every capability, including sudo", () => {
    const acl = new Acl([], true);
    expect(acl.allows("sys/seal", "sudo")).toBe(true);
  });
});

describe("ACL over HTTP", () => {
  let rt: TestRuntime;
  let appToken: string;
  beforeAll(async () => {
    rt = await startTestRuntime();
    await rt.api("PUT", "sys/policies/acl/app", {
      policy: `
      path "secret/data/app/*" { capabilities = ["create", "read"] }
      path "secret/data/app/admin" { capabilities = ["deny"] }
      path "secret/metadata/app/*" { capabilities = ["list"] }
      path "sys/seal" { capabilities = ["update"] }
      path "auth/token/create" { capabilities = ["update"] }`,
    });
    await rt.api("POST", "secret/data/app/admin", { data: { k: "root-only" } });
    await rt.api("POST", "secret/data/app/existing", { data: { k: "v1" } });
    const t = await rt.api("POST", "auth/token/create", { policies: ["app"], ttl: "10m" });
    appToken = t.body.auth.client_token;
  });
  afterAll(async () => {
    await rt?.close();
  });

  it("reads what the policy grants and nothing else", async () => {
    expect((await rt.api("GET", "secret/data/app/existing", undefined, appToken)).status).toBe(200);
    expect((await rt.api("GET", "secret/data/app/admin", undefined, appToken)).status).toBe(403);
    expect((await rt.api("GET", "secret/data/elsewhere", undefined, appToken)).status).toBe(403);
    expect((await rt.api("GET", "sys/mounts", undefined, appToken)).status).toBe(403);
    expect((await rt.api("LIST", "secret/metadata/app/", undefined, appToken)).body.data.keys).toEqual([
      "admin",
      "existing",
    ]); // "*" matches empty
    expect((await rt.api("LIST", "secret/metadata/", undefined, appToken)).status).toBe(403);
  });

  it("distinguishes create from update through the existence check", async () => {
    expect((await rt.api("POST", "secret/data/app/new", { data: { a: "b" } }, appToken)).status).toBe(200);
    const upd = await rt.api("POST", "secret/data/app/existing", { data: { k: "v2" } }, appToken);
    expect(upd.status).toBe(403);
    expect(upd.body.errors).toEqual(["permission denied"]);
  });

  it("requires sudo for sys/seal even with update", async () => {
    expect((await rt.api("PUT", "sys/seal", {}, appToken)).status).toBe(403);
    expect((await rt.api("GET", "sys/seal-status", undefined, "")).body.sealed).toBe(false);
  });

  it("keeps child tokens within the parent's policies", async () => {
    const escalate = await rt.api("POST", "auth/token/create", { policies: ["root"] }, appToken);
    expect(escalate.status).toBe(403);
    expect(escalate.body.errors[0]).toMatch(/subset/);
    const ok = await rt.api("POST", "auth/token/create", { policies: ["app"], ttl: "1m" }, appToken);
    expect(ok.body.auth.policies).toEqual(["app", "default"]);
    const other = await rt.api("POST", "auth/token/create", { policies: ["app", "other"] }, appToken);
    expect(other.status).toBe(403);
  });

  it("answers sys/capabilities-self like `vault token capabilities`", async () => {
    const r = await rt.api(
      "POST",
      "sys/capabilities-self",
      { paths: ["secret/data/app/x", "secret/data/app/admin", "sys/mounts"] },
      appToken,
    );
    expect(r.status).toBe(200);
    expect([...r.body.data["secret/data/app/x"]].sort()).toEqual(["create", "read"]);
    expect(r.body.data["secret/data/app/admin"]).toEqual(["deny"]);
    expect(r.body.data["sys/mounts"]).toEqual(["deny"]);
    expect((await rt.api("POST", "sys/capabilities-self", { path: "anything" })).body.data.capabilities).toEqual([
      "root",
    ]);
  });

  it("rejects invalid policies with a 400 that names the problem", async () => {
    const r = await rt.api("PUT", "sys/policies/acl/bad", { policy: `path "x" { capabilities = ["fly"] }` });
    expect(r.status).toBe(400);
    expect(r.body.errors[0]).toMatch(/unknown capability 'fly'/);
  });

  it("answers the vault CLI KV preflight for tokens with access under the mount", async () => {
    const r = await rt.api("GET", "sys/internal/ui/mounts/secret/app/existing", undefined, appToken);
    expect(r.status).toBe(200);
    expect(r.body.data).toMatchObject({ path: "secret/", type: "kv", options: { version: "2" } });
    const t = await rt.api("POST", "auth/token/create", { policies: [], no_default_policy: false, ttl: "5m" });
    const none = await rt.api("GET", "sys/internal/ui/mounts/secret/app", undefined, t.body.auth.client_token);
    expect(none.status).toBe(403);
  });

  it("revoking a parent revokes its children", async () => {
    const parent = (await rt.api("POST", "auth/token/create", { policies: ["app"], ttl: "10m" })).body.auth
      .client_token;
    const child = (await rt.api("POST", "auth/token/create", { policies: ["app"], ttl: "5m" }, parent)).body.auth
      .client_token;
    expect((await rt.api("GET", "auth/token/lookup-self", undefined, child)).status).toBe(200);
    expect((await rt.api("POST", "auth/token/revoke-self", {}, parent)).status).toBe(204);
    expect((await rt.api("GET", "auth/token/lookup-self", undefined, child)).status).toBe(403);
  });

  it("tidies expired tokens that were never used again", async () => {
    const before = (await rt.api("POST", "auth/token/tidy", {})).body.data.removed as number;
    expect(before).toBeGreaterThanOrEqual(0);
    const t = (await rt.api("POST", "auth/token/create", { policies: ["app"], ttl: "1s" })).body.auth;
    await new Promise((r) => setTimeout(r, 1100));
    const tidy = await rt.api("POST", "auth/token/tidy", {});
    expect(tidy.body.data.removed).toBe(1);
    expect((await rt.api("POST", "auth/token/lookup-accessor", { accessor: t.accessor })).status).toBe(400);
    expect((await rt.api("POST", "auth/token/tidy", {}, appToken)).status).toBe(403);
  });

  it("expires tokens at their TTL and limits uses", async () => {
    const short = (await rt.api("POST", "auth/token/create", { policies: ["app"], ttl: "1s" })).body.auth.client_token;
    await new Promise((r) => setTimeout(r, 2100));
    expect((await rt.api("GET", "secret/data/app/existing", undefined, short)).status).toBe(403);
    const once = (await rt.api("POST", "auth/token/create", { policies: ["app"], num_uses: 1 })).body.auth.client_token;
    expect((await rt.api("GET", "secret/data/app/existing", undefined, once)).status).toBe(200);
    expect((await rt.api("GET", "secret/data/app/existing", undefined, once)).status).toBe(403);
    // Concurrent requests cannot spend more uses than the token has.
    const three = (await rt.api("POST", "auth/token/create", { policies: ["app"], num_uses: 3 })).body.auth
      .client_token;
    const codes = await Promise.all(
      Array.from({ length: 8 }, () =>
        rt.api("GET", "secret/data/app/existing", undefined, three).then((r) => r.status),
      ),
    );
    expect(codes.filter((c) => c === 200)).toHaveLength(3);
    expect(codes.filter((c) => c === 403)).toHaveLength(5);
  });
});
