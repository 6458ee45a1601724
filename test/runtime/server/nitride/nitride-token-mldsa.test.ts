// Workload tokens signed with ML-DSA-65 (RFC 9964: JWS alg "ML-DSA-65", JWK kty "AKP"), on the real
// server: switching nitride/config token_algorithm rotates once like the EdDSA switch, nitride/jwks/pq
// publishes the AKP public key beside the ES384 key (nitride/jwks leaves it out: go-jose, i.e. Vault and
// OpenBao, refuse a JWKS with an unknown kty), ES384 tokens from before the switch still log in, a workload
// can ask for ML-DSA-65 on its own while the config stays ES384, and the tokens verify in an independent
// implementation (dilithium-py), whose own ML-DSA-65 JWTs log in through a jwks_url JWT auth mount.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { decodeProtectedHeader } from "jose";
import { attestAs, login, startNitrideStack, GOOD_MEASUREMENT, type NitrideStack } from "./nitride-support.js";
import { havePqPython, runPqPython } from "../../../support/pq-python.js";

let s: NitrideStack;
beforeAll(async () => {
  s = await startNitrideStack();
}, 60_000);
afterAll(async () => {
  await s?.rt.close();
});

/** GETs a public Nitride document; T names the document the path serves. */
async function rawJson<T>(p: string): Promise<T> {
  const res = await fetch(`${s.rt.url}/v1/${p}`);
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

type OidcDiscovery = { id_token_signing_alg_values_supported: string[] };
const header = (t: string) => decodeProtectedHeader(t);
type Jwk = { kty: string; alg?: string; kid?: string; pub?: string; priv?: string; d?: string };
type Jwks = { keys: Jwk[] };

let es384Token: string;
let mldsaToken: string;

describe("ML-DSA-65 workload tokens", () => {
  it("the default stays ES384; a bad workload token_algorithm is refused by name", async () => {
    const a = await attestAs(s, "web");
    expect(a.status, JSON.stringify(a.body)).toBe(200);
    es384Token = a.body.data.token;
    expect(header(es384Token).alg).toBe("ES384");
    const bad = await s.rt.api("PUT", "nitride/workloads/pq", {
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      secrets: { kv: ["secret/data/web/db"] },
      token_algorithm: "ML-DSA-44",
    });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0]).toBe('token_algorithm: must be "ES384", "EdDSA", "ML-DSA-65"');
  });

  it("a workload with token_algorithm ML-DSA-65 gets ML-DSA tokens while the config stays ES384", async () => {
    const put = await s.rt.api("PUT", "nitride/workloads/pq", {
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      secrets: { kv: ["secret/data/web/db"] },
      token_algorithm: "ML-DSA-65",
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const a = await attestAs(s, "pq");
    expect(a.status, JSON.stringify(a.body)).toBe(200);
    const t = a.body.data.token as string;
    expect(header(t)).toMatchObject({ alg: "ML-DSA-65", typ: "JWT" });
    // 3309-byte signature.
    expect(Buffer.from(t.split(".")[2], "base64url").length).toBe(3309);
    // web (no override) is still ES384 with the primary key.
    const w = await attestAs(s, "web");
    expect(header(w.body.data.token)).toMatchObject({ alg: "ES384", kid: header(es384Token).kid });
    // The workload's token logs in (the role's policy template names workload "pq": no KV access, but a login).
    const l = await login(s, t);
    expect(l.status, JSON.stringify(l.body)).toBe(200);
    expect(l.body.auth.metadata).toMatchObject({ workload_id: "pq", attested: "nitride" });
    // The same extra key serves the next token of that workload.
    const b = await attestAs(s, "pq");
    expect(header(b.body.data.token).kid).toBe(header(t).kid);
  });

  it("switching the config to ML-DSA-65 rotates once; jwks/pq has the AKP key (no priv) beside ES384, jwks not", async () => {
    const put = await s.rt.api("PUT", "nitride/config", { token_algorithm: "ML-DSA-65" });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(put.body.data.token_algorithm).toBe("ML-DSA-65");
    const a = await attestAs(s, "web");
    expect(a.status, JSON.stringify(a.body)).toBe(200);
    mldsaToken = a.body.data.token;
    expect(header(mldsaToken).alg).toBe("ML-DSA-65");
    expect(header(mldsaToken).kid).not.toBe(header(es384Token).kid);
    const b = await attestAs(s, "web");
    expect(header(b.body.data.token).kid).toBe(header(mldsaToken).kid);

    const classical = await rawJson<Jwks>("nitride/jwks");
    expect(classical.keys.map((k: Jwk) => k.kty)).not.toContain("AKP");
    expect(classical.keys.some((k: Jwk) => k.kid === header(es384Token).kid)).toBe(true);
    expect(await rawJson<Jwks>("nitride/.well-known/jwks.json")).toEqual(classical);
    const jwks = await rawJson<Jwks>("nitride/jwks/pq");
    const akp = jwks.keys.find((k: Jwk) => k.kid === header(mldsaToken).kid);
    expect(akp).toMatchObject({ kty: "AKP", alg: "ML-DSA-65", use: "sig" });
    expect(Buffer.from(akp!.pub!, "base64url").length).toBe(1952);
    for (const k of jwks.keys as Jwk[]) {
      expect(k.priv).toBeUndefined();
      expect(k.d).toBeUndefined();
    }
    expect(jwks.keys.some((k: Jwk) => k.kid === header(es384Token).kid && k.kty === "EC")).toBe(true);
    const doc = await rawJson<OidcDiscovery>("nitride/.well-known/openid-configuration");
    expect(doc.id_token_signing_alg_values_supported).toEqual(expect.arrayContaining(["ES384", "ML-DSA-65"]));
  });

  it("the ML-DSA token and the ES384 token from before the switch both log in; forgeries do not", async () => {
    for (const t of [mldsaToken, es384Token]) {
      const l = await login(s, t);
      expect(l.status, JSON.stringify(l.body)).toBe(200);
      const read = await s.rt.api("GET", "secret/data/web/db", undefined, l.body.auth.client_token);
      expect(read.body.data.data.password).toBe("web-db-secret");
    }
    const [h, p, sig] = mldsaToken.split(".");
    const flipped = Buffer.from(sig, "base64url");
    flipped[100] ^= 1;
    expect((await login(s, `${h}.${p}.${flipped.toString("base64url")}`)).status).toBe(403);
    // Changed claims under the old signature.
    const claims = JSON.parse(Buffer.from(p, "base64url").toString());
    const forgedPayload = Buffer.from(JSON.stringify({ ...claims, sub: "other" })).toString("base64url");
    expect((await login(s, `${h}.${forgedPayload}.${sig}`)).status).toBe(403);
    // Algorithm confusion both ways: an ES384 header on the ML-DSA signature, an ML-DSA header on ES384's.
    const asEs = Buffer.from(JSON.stringify({ ...header(mldsaToken), alg: "ES384" })).toString("base64url");
    expect((await login(s, `${asEs}.${p}.${sig}`)).status).toBe(403);
    const es = es384Token.split(".");
    const asMl = Buffer.from(JSON.stringify({ ...header(es384Token), alg: "ML-DSA-65" })).toString("base64url");
    expect((await login(s, `${asMl}.${es[1]}.${es[2]}`)).status).toBe(403);
    // A truncated signature, and a header with crit, are refused too.
    expect((await login(s, `${h}.${p}.${sig.slice(0, 100)}`)).status).toBe(403);
    const crit = Buffer.from(JSON.stringify({ ...header(mldsaToken), crit: ["x"], x: 1 })).toString("base64url");
    expect((await login(s, `${crit}.${p}.${sig}`)).status).toBeGreaterThanOrEqual(400);
  });

  const hasPy = havePqPython();
  it.runIf(hasPy)("dilithium-py verifies the ML-DSA token against the jwks/pq key set fetched over HTTP", async () => {
    const script = `
import base64, json, sys, urllib.request
from dilithium_py.ml_dsa import ML_DSA_65
inp = json.load(sys.stdin)
b64 = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
doc = json.load(urllib.request.urlopen(inp["issuer"] + "/.well-known/openid-configuration"))
jwks = json.load(urllib.request.urlopen(doc["jwks_uri"] + "/pq"))
out = {}
for name, tok in inp["tokens"].items():
    h, p, s = tok.split(".")
    hdr = json.loads(b64(h))
    key = next(k for k in jwks["keys"] if k.get("kid") == hdr["kid"])
    assert key["kty"] == "AKP" and key["alg"] == "ML-DSA-65"
    ok = ML_DSA_65.verify(b64(key["pub"]), (h + "." + p).encode(), b64(s))
    out[name] = {"valid": ok, "claims": json.loads(b64(p)) if ok else None}
print(json.dumps(out))
`;
    const [h, p, sig] = mldsaToken.split(".");
    const bad = Buffer.from(sig, "base64url");
    bad[7] ^= 0x40;
    const r = (await runPqPython(script, {
      issuer: `${s.rt.url}/v1/nitride`,
      tokens: { good: mldsaToken, tampered: `${h}.${p}.${bad.toString("base64url")}` },
    })) as Record<string, { valid: boolean; claims: Record<string, unknown> | null }>;
    expect(r.good.valid).toBe(true);
    expect(r.good.claims).toMatchObject({ sub: "web", iss: `${s.rt.url}/v1/nitride`, platform: "snp" });
    expect(r.tampered.valid).toBe(false);
  });

  it.runIf(hasPy)(
    "a JWT signed by dilithium-py logs in through a jwks_url JWT auth mount; a tampered one does not",
    async () => {
      const script = `
import base64, json, sys, time
from dilithium_py.ml_dsa import ML_DSA_65
inp = json.load(sys.stdin)
enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
seed = bytes(range(32))
pk, sk = ML_DSA_65.key_derive(seed)
now = int(time.time())
h = enc(json.dumps({"alg": "ML-DSA-65", "kid": "py-1", "typ": "JWT"}).encode())
p = enc(json.dumps({"iss": "https://py.example", "sub": "py-signer", "aud": "buckypaper", "iat": now, "nbf": now, "exp": now + 300}).encode())
sig = ML_DSA_65.sign(sk, (h + "." + p).encode())
print(json.dumps({"jwk": {"kty": "AKP", "alg": "ML-DSA-65", "kid": "py-1", "use": "sig", "pub": enc(pk)}, "token": h + "." + p + "." + enc(sig)}))
`;
      const py = (await runPqPython(script, {})) as { jwk: Jwk; token: string };
      const srv: Server = createServer((_req, res) => {
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ keys: [py.jwk] }));
      });
      await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
      try {
        const jwksUrl = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/jwks.json`;
        const ok = async (m: string, p: string, b?: unknown) => {
          const r = await s.rt.api(m, p, b);
          expect(r.status, `${m} ${p}: ${JSON.stringify(r.body)}`).toBeLessThan(300);
        };
        await ok("POST", "sys/auth/jwt-py", { type: "jwt" });
        await ok("POST", "auth/jwt-py/config", { jwks_url: jwksUrl, bound_issuer: "https://py.example" });
        await ok("POST", "auth/jwt-py/role/py", {
          role_type: "jwt",
          bound_audiences: ["buckypaper"],
          user_claim: "sub",
          token_policies: ["default"],
        });
        const l = await s.rt.api("POST", "auth/jwt-py/login", { role: "py", jwt: py.token }, "");
        expect(l.status, JSON.stringify(l.body)).toBe(200);
        expect(l.body.auth.metadata.role).toBe("py");
        // Not attested: a foreign ML-DSA signer gets no Nitride metadata.
        expect(l.body.auth.metadata.attested).toBeUndefined();
        const [h, p, sig] = py.token.split(".");
        const claims = JSON.parse(Buffer.from(p, "base64url").toString());
        const other = Buffer.from(JSON.stringify({ ...claims, sub: "someone-else" })).toString("base64url");
        const forged = await s.rt.api("POST", "auth/jwt-py/login", { role: "py", jwt: `${h}.${other}.${sig}` }, "");
        expect(forged.status).toBe(403);
        // A role that allows only ES384 refuses the ML-DSA token by algorithm.
        await ok("POST", "auth/jwt-py/config", {
          jwks_url: jwksUrl,
          bound_issuer: "https://py.example",
          jwt_supported_algs: ["ES384"],
        });
        const refused = await s.rt.api("POST", "auth/jwt-py/login", { role: "py", jwt: py.token }, "");
        expect(refused.status).toBe(403);
        expect(JSON.stringify(refused.body)).toMatch(/algorithm not allowed/);
      } finally {
        srv.close();
      }
    },
  );

  it("switching back to ES384 rotates again; the ML-DSA key stays published while its tokens may live", async () => {
    expect((await s.rt.api("PUT", "nitride/config", { token_algorithm: "ES384" })).status).toBe(200);
    const a = await attestAs(s, "web");
    expect(header(a.body.data.token).alg).toBe("ES384");
    expect((await s.rt.api("POST", "nitride/keys/rotate", {})).status).toBe(200);
    expect((await login(s, mldsaToken)).status).toBe(200);
    const jwks = await rawJson<Jwks>("nitride/jwks/pq");
    expect(jwks.keys.some((k: Jwk) => k.kid === header(mldsaToken).kid)).toBe(true);
    // The workload that asked for ML-DSA-65 gets a fresh extra key after the rotation.
    const pq = await attestAs(s, "pq");
    expect(header(pq.body.data.token).alg).toBe("ML-DSA-65");
    expect((await login(s, pq.body.data.token)).status).toBe(200);
  });
});
