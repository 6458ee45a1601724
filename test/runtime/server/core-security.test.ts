// Security defaults over HTTP: sealing refuses everything but lifecycle endpoints, rate limits on
// login/challenge routes, TLS with the runtime CA in dev mode, the response-sealing hook, and no
// secret in error bodies.
import { describe, it, expect, afterEach } from "vitest";
import https from "node:https";
import { startTestRuntime, type TestRuntime } from "../../support/runtime.js";
import { DEFAULT_RATE_LIMITS } from "../../../runtime/server/http/rate-limit.js";
import { certFingerprint } from "../../../runtime/server/http/tls.js";
import type { LogicalBackend } from "../../../runtime/server/vault/backend.js";

let rt: TestRuntime | undefined;
afterEach(async () => {
  await rt?.close();
  rt = undefined;
});

const login: LogicalBackend = {
  type: "static",
  unauthenticatedPaths: ["login"],
  async handle(req) {
    return req.path === "login" ? { auth: { policies: [], ttl: 30, renewable: false, metadata: {} } } : undefined;
  },
};

describe("security defaults", () => {
  it("sys/seal (sudo) seals: everything but lifecycle endpoints answers 503 until unsealed", async () => {
    rt = await startTestRuntime();
    await rt.api("POST", "secret/data/x", { data: { a: "b" } });
    expect((await rt.api("PUT", "sys/seal", {})).status).toBe(204);
    const r = await rt.api("GET", "secret/data/x");
    expect(r).toEqual({ status: 503, body: { errors: ["Vault is sealed"] } });
    expect((await fetch(`${rt.url}/v1/sys/health`)).status).toBe(503);
    expect((await fetch(`${rt.url}/v1/sys/health?sealedcode=200`)).status).toBe(200);
    expect((await rt.api("PUT", "sys/unseal", { key: rt.runtime.unsealKey }, "")).body.sealed).toBe(false);
    expect((await rt.api("GET", "secret/data/x")).body.data.data).toEqual({ a: "b" });
  });

  it("rate-limits login routes per client with 429 and Retry-After", async () => {
    rt = await startTestRuntime({
      rateLimits: [
        { path: "auth/*/login", perSecond: 0.5, burst: 3 },
        ...DEFAULT_RATE_LIMITS.filter((r) => r.path !== "auth/*/login"),
      ],
      register: (r) => r.registerAuth("static", () => login),
      auth: { "static/": { type: "static" } },
    });
    const codes: number[] = [];
    let retry = "";
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${rt.url}/v1/auth/static/login`, { method: "POST", body: "{}" });
      codes.push(res.status);
      if (res.status === 429) retry = res.headers.get("retry-after") ?? "";
    }
    expect(codes).toEqual([200, 200, 200, 429, 429]);
    expect(Number(retry)).toBeGreaterThanOrEqual(1);
    expect((await rt.api("GET", "sys/health")).status).toBe(200); // other routes unaffected
  });

  it("serves HTTPS with a runtime CA whose fingerprint clients can pin", async () => {
    rt = await startTestRuntime({ tls: true });
    expect(rt.url).toMatch(/^https:/);
    expect(rt.caFingerprint).toBe(certFingerprint(rt.caPem!));
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get(`${rt!.url}/v1/sys/seal-status`, { ca: rt!.caPem }, (res) => {
          let s = "";
          res.on("data", (d) => (s += d));
          res.on("end", () => resolve(s));
        })
        .on("error", reject);
    });
    expect(JSON.parse(body).sealed).toBe(false);
    await expect(fetch(`${rt.url}/v1/sys/seal-status`)).rejects.toThrow(); // not in the system trust store
  });

  it("hands responses carrying secrets (and logins, on request) to the response sealer", async () => {
    rt = await startTestRuntime({
      core: {
        responseSealer: async ({ headers, body, secretKeys, login: isLogin, auth }) =>
          headers["x-buckypaper-seal"] !== "ephemeral"
            ? undefined
            : isLogin
              ? { sealed: `sealed(${secretKeys.join(",")}):login=true,meta=${auth?.metadata.workload}` }
              : { sealed: `sealed(${secretKeys.join(",")}):${Object.keys(body.data as object).join(",")}` },
      },
      register: (r) =>
        r.registerAuth("static", () => ({
          ...login,
          handle: async (req) =>
            req.path === "login"
              ? { auth: { policies: [], ttl: 30, renewable: false, metadata: { workload: "w-9" } } }
              : undefined,
        })),
      auth: { "static/": { type: "static" } },
    });
    await rt.api("POST", "secret/data/s", { data: { k: "v" } });
    const plain = await rt.api("GET", "secret/data/s");
    expect(plain.body.data.data).toEqual({ k: "v" });
    const sealed = await fetch(`${rt.url}/v1/secret/data/s`, {
      headers: { "x-vault-token": rt.rootToken, "x-buckypaper-seal": "ephemeral" },
    });
    expect(await sealed.json()).toEqual({ sealed: "sealed(data):data,metadata" });
    const meta = await fetch(`${rt.url}/v1/secret/metadata/s`, {
      headers: { "x-vault-token": rt.rootToken, "x-buckypaper-seal": "ephemeral" },
    });
    expect(((await meta.json()) as { data: { current_version: number } }).data.current_version).toBe(1); // no secret → not sealed
    // A login is sealed only when asked for, with the new token's auth as the sealing context.
    const plainLogin = await fetch(`${rt.url}/v1/auth/static/login`, { method: "POST", body: "{}" });
    expect(((await plainLogin.json()) as { auth: { client_token: string } }).auth.client_token).toMatch(/^hvs\./);
    const sealedLogin = await fetch(`${rt.url}/v1/auth/static/login`, {
      method: "POST",
      body: "{}",
      headers: { "x-buckypaper-seal": "ephemeral" },
    });
    expect(await sealedLogin.json()).toEqual({ sealed: "sealed(auth):login=true,meta=w-9" });
  });

  it("renders Vault's raw responses and refusals that carry a body", async () => {
    const rawEngine: LogicalBackend = {
      type: "rawtest",
      unauthenticatedPaths: ["pem", "der"],
      async handle(req) {
        if (req.path === "pem")
          return {
            data: {
              http_content_type: "application/x-pem-file",
              http_raw_body: "-----BEGIN X-----\n",
              http_status_code: 200,
            },
          };
        if (req.path === "der")
          return {
            data: { http_content_type: "application/pkix-cert", http_raw_body: Buffer.from([0x30, 0x82, 0x00, 0xff]) },
          };
        if (req.path === "refuse")
          return { status: 403, data: { error: "attestation refused: measurement", verdict: { ok: false } } };
        return undefined;
      },
    };
    rt = await startTestRuntime({
      register: (r) => r.registerSecret("rawtest", () => rawEngine),
      mounts: { "raw/": { type: "rawtest" } },
    });
    const pem = await fetch(`${rt.url}/v1/raw/pem`);
    expect(pem.headers.get("content-type")).toBe("application/x-pem-file");
    expect(await pem.text()).toBe("-----BEGIN X-----\n");
    const der = await fetch(`${rt.url}/v1/raw/der`);
    expect(der.headers.get("content-type")).toBe("application/pkix-cert");
    expect(Buffer.from(await der.arrayBuffer())).toEqual(Buffer.from([0x30, 0x82, 0x00, 0xff]));
    const refused = await rt.api("POST", "raw/refuse", {});
    expect(refused).toEqual({
      status: 403,
      body: {
        errors: ["attestation refused: measurement"],
        data: { error: "attestation refused: measurement", verdict: { ok: false } },
      },
    });
  });

  it("never echoes submitted secrets or tokens in errors", async () => {
    rt = await startTestRuntime();
    const r = await rt.api("POST", "secret/data/e", { data: "secret-in-wrong-shape" });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).not.toContain("secret-in-wrong-shape");
    const t = await rt.api("GET", "secret/data/e", undefined, "hvs.guessed-token-value");
    expect(JSON.stringify(t.body)).not.toContain("guessed-token-value");
    const p = await rt.api("PUT", "sys/policies/acl/p", { policy: 'path "a" { capabilities = ["supersecret"] }' });
    expect(p.status).toBe(400);
  });
});

describe("logging of unexpected errors", () => {
  it("withholds JSON syntax error messages, which quote the data being parsed", async () => {
    const { describeForLog } = await import("../../../runtime/server/vault/core.js");
    let err: unknown;
    try {
      JSON.parse('{"password": "log-leak-candidate" oops');
    } catch (e) {
      err = e;
    }
    const line = describeForLog(err);
    expect(line).toMatch(/^SyntaxError: \(message withheld/);
    expect(line).not.toContain("log-leak-candidate");
    expect(describeForLog(new Error("disk full"))).toMatch(/^Error: disk full\n\s+at /);
  });
});
