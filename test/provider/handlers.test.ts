// The provider's create/read/update/delete/diff/check against a real runtime over HTTP(S): what
// `pulumi up`, `refresh` and `destroy` do through the dynamic providers, without the engine.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestRuntime, type TestRuntime } from "../support/runtime.js";
import * as h from "../../provider/handlers.js";
import { runtimeRequest, RuntimeApiError } from "../../provider/client.js";

let rt: TestRuntime;
let conn: { url: string; token: string };

beforeAll(async () => {
  rt = await startTestRuntime({
    mounts: { "pki/": { type: "pki" }, "ssh/": { type: "ssh" } },
    auth: { "jwt/": { type: "jwt" } },
  });
  conn = { url: rt.url, token: rt.rootToken };
});
afterAll(async () => rt?.close());

/** check → create, as the engine does. */
async function created(kind: string, props: Record<string, unknown>) {
  const c = h.check(kind, { connection: conn, ...props });
  expect(c.failures).toEqual([]);
  const r = await h.create(kind, c.inputs);
  return { id: r.id, outs: r.outs, inputs: c.inputs };
}

describe("Secret (KV v2)", () => {
  it("create, no-op diff, update, refresh, drift, delete", async () => {
    const { id, outs, inputs } = await created("secret", { path: "apps/web", data: { password: "pw-1" } });
    expect(id).toBe("secret/apps/web");
    expect(outs.version).toBe(1);
    expect((await rt.api("GET", "secret/data/apps/web")).body.data.data).toEqual({ password: "pw-1" });

    expect(h.diff("secret", outs, inputs).changes).toBe(false);
    const news = { ...inputs, data: { password: "pw-2", user: "web" } };
    expect(h.diff("secret", outs, news)).toMatchObject({ changes: true, replaces: [] });
    const up = await h.update("secret", id, outs, news);
    expect(up.outs.version).toBe(2);

    // refresh with nothing changed outside: same props back
    const same = await h.read("secret", id, up.outs);
    expect(same).toEqual({ id, props: up.outs });

    // someone edits the secret behind Pulumi's back: refresh shows the runtime's value
    await rt.api("POST", "secret/data/apps/web", { data: { password: "changed-by-hand" } });
    const drift = await h.read("secret", id, up.outs);
    expect(drift.props.data).toEqual({ password: "changed-by-hand" });
    expect(drift.props.version).toBe(3);

    await h.remove("secret", id, up.outs);
    expect((await rt.api("GET", "secret/data/apps/web")).status).toBe(404);
    expect(await h.read("secret", id, up.outs)).toEqual({ id: "", props: {} });
    // deleting what is already gone is not an error (destroy after a manual cleanup)
    await h.remove("secret", id, up.outs);
  });

  it("refuses to take over an existing secret", async () => {
    await rt.api("POST", "secret/data/taken", { data: { a: "b" } });
    const c = h.check("secret", { connection: conn, path: "taken", data: { a: "c" } });
    await expect(h.create("secret", c.inputs)).rejects.toThrow(/Secret 'secret\/taken' already exists/);
  });

  it("a path or mount change replaces, a token change only updates", () => {
    const base = h.check("secret", { connection: conn, path: "a/b", data: { k: "v" } }).inputs;
    expect(h.diff("secret", base, { ...base, path: "a/c" }).replaces).toEqual(["path"]);
    expect(h.diff("secret", base, { ...base, mount: "kv2" }).replaces).toEqual(["mount"]);
    expect(h.diff("secret", base, { ...base, connection: { ...conn, token: "other" } })).toMatchObject({
      changes: true,
      replaces: [],
    });
    expect(h.diff("secret", base, { ...base, connection: { ...conn, url: "http://127.0.0.1:1" } }).replaces).toEqual([
      "connection",
    ]);
  });
});

describe("roles and policies", () => {
  it("PKI role: durations in Vault spelling do not look like drift after the runtime normalises them", async () => {
    const { id, outs } = await created("pkiRole", {
      name: "web",
      allowedDomains: ["example.internal"],
      allowSubdomains: true,
      ttl: "72h",
      maxTtl: "720h",
    });
    expect(id).toBe("pki/roles/web");
    const live = (await rt.api("GET", "pki/roles/web")).body.data;
    expect(live.allowed_domains).toEqual(["example.internal"]);
    expect(await h.read("pkiRole", id, outs)).toEqual({ id, props: outs });
    await rt.api("POST", "pki/roles/web", {
      allowed_domains: ["evil.example"],
      allow_subdomains: true,
      ttl: "72h",
      max_ttl: "720h",
    });
    expect((await h.read("pkiRole", id, outs)).props.allowedDomains).toEqual(["evil.example"]);
    await h.remove("pkiRole", id, outs);
    expect((await rt.api("GET", "pki/roles/web")).status).toBe(404);
  });

  it("SSH role and JWT role round trip", async () => {
    const ssh = await created("sshRole", {
      name: "host",
      allowHostCertificates: true,
      allowedDomains: "example.internal",
      allowSubdomains: true,
      ttl: "24h",
    });
    expect((await rt.api("GET", "ssh/roles/host")).body.data.key_type).toBe("ca");
    expect(await h.read("sshRole", ssh.id, ssh.outs)).toEqual({ id: ssh.id, props: ssh.outs });

    const jwt = await created("jwtRole", {
      name: "web",
      boundAudiences: ["buckypaper"],
      boundSubject: "web-1",
      tokenPolicies: ["web"],
      tokenTtl: "15m",
    });
    expect(jwt.id).toBe("auth/jwt/role/web");
    const live = (await rt.api("GET", "auth/jwt/role/web")).body.data;
    expect(live.bound_subject).toBe("web-1");
    expect(await h.read("jwtRole", jwt.id, jwt.outs)).toEqual({ id: jwt.id, props: jwt.outs });
    await h.remove("jwtRole", jwt.id, jwt.outs);
    await h.remove("sshRole", ssh.id, ssh.outs);
    expect((await rt.api("GET", "auth/jwt/role/web")).status).toBe(404);
  });

  it("ACL policy round trip", async () => {
    const hcl = 'path "secret/data/web/*" {\n  capabilities = ["read"]\n}\n';
    const p = await created("policy", { name: "web-read", policy: hcl });
    expect(await h.read("policy", p.id, p.outs)).toEqual({ id: p.id, props: p.outs });
    await h.remove("policy", p.id, p.outs);
    expect(await h.read("policy", p.id, p.outs)).toEqual({ id: "", props: {} });
  });
});

describe("mounts", () => {
  it("mounts a KV engine and a JWT auth method; refresh without drift; delete unmounts", async () => {
    const kv = await created("mount", { path: "apps", type: "kv-v2" });
    expect(kv.inputs).toMatchObject({ type: "kv", options: { version: "2" } });
    expect((await rt.api("POST", "apps/data/x", { data: { a: "1" } })).status).toBe(200);
    expect(await h.read("mount", kv.id, kv.outs)).toEqual({ id: kv.id, props: kv.outs });
    const jwt = await created("authMount", { path: "jwt2", type: "jwt" });
    expect(Object.keys((await rt.api("GET", "sys/auth")).body.data)).toContain("jwt2/");
    expect(h.diff("mount", kv.outs, { ...kv.inputs, type: "pki" }).replaces).toEqual(["type"]);
    await h.remove("mount", kv.id, kv.outs);
    await h.remove("authMount", jwt.id, jwt.outs);
    expect(await h.read("mount", kv.id, kv.outs)).toEqual({ id: "", props: {} });
    expect(Object.keys((await rt.api("GET", "sys/auth")).body.data)).not.toContain("jwt2/");
  });
});

describe("Workload", () => {
  const m1 = "a1".repeat(48);
  const m2 = "b2".repeat(48);

  it("create, refresh without drift, update bumps the version, out-of-band edits show as drift", async () => {
    const w = await created("workload", {
      workloadId: "web-1",
      platforms: ["snp"],
      snpMeasurements: [m1],
      kvSecrets: ["secret/data/web/db"],
      tokenTtl: "5m",
    });
    expect(w.id).toBe("web-1");
    expect(w.outs.version).toBe(1);
    expect(typeof w.outs.aclPolicy).toBe("string");
    expect(w.outs.policyHash).toMatch(/^[0-9a-f]{64}$/);
    const live = (await rt.api("GET", "nitride/workloads/web-1")).body.data;
    expect(live.reference_values.snp_measurements).toEqual([m1]);
    expect(live.secrets.kv).toEqual(["secret/data/web/db"]);

    expect(await h.read("workload", w.id, w.outs)).toEqual({ id: w.id, props: w.outs });
    expect(h.diff("workload", w.outs, w.inputs).changes).toBe(false);

    const news = { ...w.inputs, snpMeasurements: [m1, m2] };
    expect(h.diff("workload", w.outs, news)).toMatchObject({ changes: true, replaces: [] });
    const up = await h.update("workload", w.id, w.outs, news);
    expect(up.outs.version).toBe(2);
    expect(up.outs.policyHash).not.toBe(w.outs.policyHash);

    await rt.api("PUT", "nitride/workloads/web-1", {
      platforms: ["snp"],
      reference_values: { snp_measurements: [m2] },
    });
    const drift = await h.read("workload", w.id, up.outs);
    expect(drift.props.version).toBe(3);
    expect(drift.props.snpMeasurements).toEqual([m2]);
    // the next `up` sees the difference and writes ours back
    expect(h.diff("workload", drift.props, news).changes).toBe(true);

    await h.remove("workload", w.id, up.outs);
    expect((await rt.api("GET", "nitride/workloads/web-1")).status).toBe(404);
  });

  it("the runtime's validation error comes back naming the field", async () => {
    const c = h.check("workload", { connection: conn, workloadId: "bad-1", snpMeasurements: ["abcd"] });
    const err = await h.create("workload", c.inputs).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeApiError);
    expect((err as RuntimeApiError).status).toBe(400);
    expect(String(err)).toMatch(/reference_values\.snp_measurements\[0\]/);
  });
});

describe("check", () => {
  it("names the field and never echoes secret values", () => {
    const r = h.check("secret", { connection: { url: "ftp://x", token: "" }, path: "../etc", data: { k: 42 } });
    const props = r.failures.map((f) => f.property).sort();
    expect(props).toEqual(["connection.token", "connection.url", "data", "path"]);
    const r2 = h.check("secret", { connection: conn, path: "ok", data: { k: "very-secret-value", n: 1 } });
    expect(JSON.stringify(r2.failures)).not.toContain("very-secret-value");
    expect(h.check("workload", { connection: conn, workloadId: "x".repeat(64) }).failures[0].property).toBe(
      "workloadId",
    );
    expect(h.check("pkiRole", { connection: conn, name: "r", ttl: "soon" }).failures).toEqual([
      { property: "ttl", reason: "ttl must be a duration such as '72h' or a number of seconds" },
    ]);
  });

  it("lets unknown (preview) values through", () => {
    const r = h.check("secret", { connection: h.UNKNOWN, path: h.UNKNOWN, data: h.UNKNOWN });
    expect(r.failures).toEqual([]);
  });
});

describe("client over TLS", () => {
  let tlsRt: TestRuntime;
  beforeAll(async () => {
    tlsRt = await startTestRuntime({ tls: true });
  });
  afterAll(async () => tlsRt?.close());

  it("pins the runtime CA by fingerprint alone, and refuses a wrong pin", async () => {
    const ok = await runtimeRequest(
      { url: tlsRt.url, token: tlsRt.rootToken, caFingerprint: tlsRt.caFingerprint },
      "GET",
      "sys/seal-status",
    );
    expect((ok.body as { sealed: boolean }).sealed).toBe(false);
    await expect(
      runtimeRequest(
        { url: tlsRt.url, token: tlsRt.rootToken, caFingerprint: "00".repeat(32) },
        "GET",
        "sys/seal-status",
      ),
    ).rejects.toThrow(/caFingerprint matches no certificate/);
    // without a CA the system trust store is used, which does not know the runtime CA
    await expect(runtimeRequest({ url: tlsRt.url, token: tlsRt.rootToken }, "GET", "sys/seal-status")).rejects.toThrow(
      /certificate/,
    );
    await expect(
      runtimeRequest(
        { url: tlsRt.url, token: tlsRt.rootToken, caPem: tlsRt.caPem, caFingerprint: "11".repeat(32) },
        "GET",
        "sys/seal-status",
      ),
    ).rejects.toThrow(/caFingerprint does not match caPem/);
  });
});
