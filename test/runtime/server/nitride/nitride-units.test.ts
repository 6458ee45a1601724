// Nitride pieces below HTTP: nonces shared by replicas through storage, JWT auth against a JWKS URL
// and static keys (bound claims, JSON pointers, globs), and the seal helper.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import { generateKeyPairSync } from "node:crypto";
import { SignJWT, exportJWK, compactDecrypt } from "jose";
import { MemoryStorage } from "../../../../runtime/server/storage/memory.js";
import { NonceStore } from "../../../../runtime/server/nitride/nonces.js";
import { JwtAuthBackend } from "../../../../runtime/server/vault/auth-jwt.js";
import { responseSealer, sealResponse } from "../../../../runtime/server/nitride/seal.js";
import { definitionFrom, policyHash } from "../../../../runtime/server/nitride/workloads.js";
import { LogicalError } from "../../../../runtime/server/vault/backend.js";
import { Harness } from "./nitride-harness.js";

describe("nonces shared by replicas through storage", () => {
  it("a nonce issued by one replica is consumed once by another; a second consume anywhere fails", async () => {
    const shared = new MemoryStorage();
    const a = new NonceStore();
    const b = new NonceStore();
    const { nonce } = await a.issue(shared, "web", 60);
    const results = await Promise.all([
      b.consume(shared, nonce, "web"),
      a.consume(shared, nonce, "web"),
      b.consume(shared, nonce, "web"),
    ]);
    expect(results.filter((r) => r === "ok")).toHaveLength(1);
    expect(results.filter((r) => r === "unknown")).toHaveLength(2);
  });

  it("expired nonces are refused and swept; nonces are stored by hash, never in clear", async () => {
    const st = new MemoryStorage();
    const n = new NonceStore();
    const { nonce } = await n.issue(st, "web", 1);
    const keys = await st.list("nonces/");
    expect(keys[0]).not.toContain(nonce.toString("hex"));
    await new Promise((r) => setTimeout(r, 2100));
    expect(await n.sweep(st)).toBe(1);
    const { nonce: n2 } = await n.issue(st, "web", 60);
    expect(await n.consume(st, n2, "other")).toBe("other-workload");
  });
});

describe("JWT auth method (external issuers)", () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  let server: Server;
  let url = "";
  beforeAll(async () => {
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256" };
    server = createServer((req, res) => {
      res.setHeader("content-type", "application/json");
      if (req.url === "/.well-known/openid-configuration")
        res.end(JSON.stringify({ issuer: url, jwks_uri: `${url}/keys` }));
      else if (req.url === "/keys") res.end(JSON.stringify({ keys: [jwk] }));
      else {
        res.statusCode = 404;
        res.end("{}");
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const sign = (claims: Record<string, unknown>, exp = "5m") =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setIssuer(url)
      .setAudience("vault")
      .setIssuedAt()
      .setExpirationTime(exp)
      .sign(privateKey);

  async function setup(config: Record<string, unknown>) {
    const h = new Harness();
    await h.mount("auth/jwt/", new JwtAuthBackend());
    await h.call("update", "auth/jwt/config", config);
    await h.call("update", "auth/jwt/role/r", {
      bound_audiences: "vault",
      user_claim: "sub",
      bound_claims_type: "glob",
      bound_claims: { "/tee/platform": ["snp", "tdx"], team: "web-*" },
      claim_mappings: { "/tee/platform": "platform" },
      token_policies: "app,reader",
      token_ttl: "15m",
    });
    return h;
  }

  for (const mode of ["oidc_discovery_url", "jwks_url", "jwt_validation_pubkeys"] as const) {
    it(`verifies tokens via ${mode}; bound claims by JSON pointer and glob; metadata mapping`, async () => {
      const cfg =
        mode === "oidc_discovery_url"
          ? { oidc_discovery_url: url, bound_issuer: url }
          : mode === "jwks_url"
            ? { jwks_url: `${url}/keys`, bound_issuer: url }
            : { jwt_validation_pubkeys: [publicKey.export({ format: "pem", type: "spki" })], bound_issuer: url };
      const h = await setup(cfg);
      const jwt = await sign({ sub: "svc-1", team: "web-frontend", tee: { platform: "snp" } });
      const r = await h.call("update", "auth/jwt/login", { role: "r", jwt });
      expect(r!.auth).toMatchObject({
        policies: ["app", "reader"],
        ttl: 900,
        metadata: { role: "r", platform: "snp" },
        displayName: "svc-1",
      });
      // Not attested: no attestation metadata, no cnf claims.
      expect(r!.auth!.metadata.evidence_digest).toBeUndefined();
      const bad = await sign({ sub: "svc-1", team: "db", tee: { platform: "snp" } });
      await expect(h.call("update", "auth/jwt/login", { role: "r", jwt: bad })).rejects.toMatchObject({
        status: 403,
        message: expect.stringMatching(/claim "team"/),
      });
      const noTee = await sign({ sub: "svc-1", team: "web-x" });
      await expect(h.call("update", "auth/jwt/login", { role: "r", jwt: noTee })).rejects.toMatchObject({
        status: 403,
        message: expect.stringMatching(/"\/tee\/platform" is missing/),
      });
    });
  }

  it("refuses other issuers, foreign keys, expired tokens, bad config", async () => {
    const h = await setup({ jwks_url: `${url}/keys`, bound_issuer: url });
    const foreign = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    const forged = await new SignJWT({ sub: "x", team: "web-a", tee: { platform: "snp" } })
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setIssuer(url)
      .setAudience("vault")
      .setExpirationTime("5m")
      .sign(foreign);
    await expect(h.call("update", "auth/jwt/login", { role: "r", jwt: forged })).rejects.toMatchObject({ status: 403 });
    const wrongIss = await new SignJWT({ sub: "x", team: "web-a", tee: { platform: "snp" } })
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setIssuer("https://evil")
      .setAudience("vault")
      .setExpirationTime("5m")
      .sign(privateKey);
    await expect(h.call("update", "auth/jwt/login", { role: "r", jwt: wrongIss })).rejects.toMatchObject({
      status: 403,
      message: expect.stringMatching(/iss/),
    });
    const old = await new SignJWT({ sub: "x", team: "web-a", tee: { platform: "snp" } })
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setIssuer(url)
      .setAudience("vault")
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(privateKey);
    await expect(h.call("update", "auth/jwt/login", { role: "r", jwt: old })).rejects.toMatchObject({
      status: 403,
      message: expect.stringMatching(/expired/),
    });
    await expect(h.call("update", "auth/jwt/login", { role: "nope", jwt: old })).rejects.toMatchObject({ status: 400 });
    await expect(
      h.call("update", "auth/jwt/config", { jwks_url: `${url}/keys`, oidc_discovery_url: url }),
    ).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/exactly one/) });
    await expect(h.call("update", "auth/jwt/role/x", { token_policies: "a" })).rejects.toMatchObject({
      status: 400,
      message: expect.stringMatching(/bound constraint/),
    });
  });
});

describe("response sealing helper", () => {
  it("seals to the cnf key; refuses sealing for non-attested callers; leaves bodies without secrets alone", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const jwk = publicKey.export({ format: "jwk" });
    const body = { data: { password: "s3cret" } };
    const auth = { accessor: "a", policies: [], metadata: {}, claims: { cnf: { jwk } } };
    const out = await responseSealer({
      headers: { "x-buckypaper-seal": "ephemeral" },
      auth,
      body,
      secretKeys: ["password"],
    });
    const { plaintext } = await compactDecrypt(out!.sealed as string, privateKey);
    expect(JSON.parse(Buffer.from(plaintext).toString())).toEqual(body);
    expect(await responseSealer({ headers: {}, auth, body, secretKeys: ["password"] })).toBeUndefined();
    expect(
      await responseSealer({ headers: { "x-buckypaper-seal": "ephemeral" }, auth, body, secretKeys: [] }),
    ).toBeUndefined();
    await expect(
      responseSealer({
        headers: { "x-buckypaper-seal": "ephemeral" },
        auth: { ...auth, claims: {} },
        body,
        secretKeys: ["password"],
      }),
    ).rejects.toBeInstanceOf(LogicalError);
    await expect(
      responseSealer({ headers: { "x-buckypaper-seal": "plain" }, auth, body, secretKeys: ["password"] }),
    ).rejects.toMatchObject({ status: 400 });
    expect((await sealResponse(body, jwk as never)).split(".")).toHaveLength(5);
  });
});

describe("workload definitions", () => {
  it("validate every field by name and hash equal definitions equally regardless of key order", () => {
    const m = "ab".repeat(48);
    const d1 = definitionFrom({
      reference_values: { snp_measurements: [m] },
      policy: { snp: { allowDebug: false } },
      secrets: { kv: ["secret/data/a"] },
    });
    const d2 = definitionFrom({
      secrets: { kv: ["secret/data/a"] },
      policy: { snp: { allowDebug: false } },
      reference_values: { snp_measurements: [m.toUpperCase()] },
    });
    expect(policyHash(d1)).toBe(policyHash(d2));
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{}, /reference_values: at least one/],
      [{ reference_values: { snp_measurements: [m] }, platforms: ["sgx"] }, /platforms\[0\]/],
      [{ reference_values: { tdx: [{ mrtd: m, rtmrs: [m] }] } }, /rtmrs: must list RTMR0..3/],
      [{ reference_values: { snp_measurements: [m] }, policy: { snp: { bogus: 1 } } }, /policy snp.bogus/],
      [{ reference_values: { snp_measurements: [m] }, secrets: { kv: ["secret/../sys"] } }, /secrets.kv\[0\]/],
      [{ reference_values: { snp_measurements: [m] }, secrets: { pki: { role: "pki" } } }, /secrets.pki.role/],
      [
        { reference_values: { snp_measurements: [m] }, secrets: { ssh: { role: "ssh/host" } } },
        /secrets.ssh.principals/,
      ],
      [{ reference_values: { snp_measurements: [m] }, token_ttl: "2h" }, /token_ttl/],
    ];
    for (const [data, msg] of bad) expect(() => definitionFrom(data)).toThrow(msg);
  });
});
