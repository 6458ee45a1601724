// Workload tokens signed with EdDSA (nitride/config token_algorithm): switching rotates the signing key
// once, new tokens carry alg EdDSA and verify against the JWKS (jose, PyJWT, hashicorp/cap — what Vault
// and OpenBao use), tokens signed before the switch still log in, and bad values are refused by name.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from "jose";
import { haveCommand, requireTool } from "../../../support/prereq.js";
import { repoRoot } from "../../../support/shared.js";
import { attestAs, login, runAsync as run, startNitrideStack, type NitrideStack } from "./nitride-support.js";

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

const algOf = (token: string) => decodeProtectedHeader(token).alg;
let es384Token: string;
let eddsaToken: string;

describe("EdDSA workload tokens", () => {
  it("refuses an unknown token_algorithm by name and keeps ES384", async () => {
    const bad = await s.rt.api("PUT", "nitride/config", { token_algorithm: "RS256" });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toMatch(/token_algorithm/);
    const a = await attestAs(s, "web");
    expect(a.status, JSON.stringify(a.body)).toBe(200);
    es384Token = a.body.data.token;
    expect(algOf(es384Token)).toBe("ES384");
    expect((await s.rt.api("GET", "nitride/config")).body.data.token_algorithm).toBe("ES384");
  });

  it("switching to EdDSA rotates once: new tokens are EdDSA with a new kid and verify against the JWKS", async () => {
    const put = await s.rt.api("PUT", "nitride/config", { token_algorithm: "EdDSA" });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(put.body.data.token_algorithm).toBe("EdDSA");
    const a = await attestAs(s, "web");
    expect(a.status, JSON.stringify(a.body)).toBe(200);
    eddsaToken = a.body.data.token;
    expect(algOf(eddsaToken)).toBe("EdDSA");
    expect(decodeProtectedHeader(eddsaToken).kid).not.toBe(decodeProtectedHeader(es384Token).kid);
    // A second attest uses the same key: the switch rotated once, not per token.
    const b = await attestAs(s, "web");
    expect(decodeProtectedHeader(b.body.data.token).kid).toBe(decodeProtectedHeader(eddsaToken).kid);

    const jwks = await rawJson<JSONWebKeySet>("nitride/jwks");
    const okp = jwks.keys.find((k) => k.kty === "OKP");
    expect(okp).toMatchObject({ crv: "Ed25519", alg: "EdDSA", use: "sig", kid: decodeProtectedHeader(eddsaToken).kid });
    expect(okp!.d).toBeUndefined();
    expect(jwks.keys.some((k) => k.kid === decodeProtectedHeader(es384Token).kid)).toBe(true);
    const { payload } = await jwtVerify(eddsaToken, createLocalJWKSet(jwks), {
      issuer: `${s.rt.url}/v1/nitride`,
      audience: "buckypaper",
      algorithms: ["EdDSA"],
    });
    expect(payload).toMatchObject({ sub: "web", platform: "snp" });
    const doc = await rawJson<OidcDiscovery>("nitride/.well-known/openid-configuration");
    expect([...doc.id_token_signing_alg_values_supported].sort()).toEqual(["ES384", "EdDSA"]);
  });

  it("both the EdDSA token and the ES384 token signed before the switch log in; a tampered EdDSA token does not", async () => {
    for (const t of [eddsaToken, es384Token]) {
      const l = await login(s, t);
      expect(l.status, JSON.stringify(l.body)).toBe(200);
      const read = await s.rt.api("GET", "secret/data/web/db", undefined, l.body.auth.client_token);
      expect(read.body.data.data.password).toBe("web-db-secret");
    }
    const [h, p, sig] = eddsaToken.split(".");
    const flipped = Buffer.from(sig, "base64url");
    flipped[0] ^= 1;
    expect((await login(s, `${h}.${p}.${flipped.toString("base64url")}`)).status).toBe(403);
    // An EdDSA header on the ES384 signature (algorithm confusion) is refused too.
    const esParts = es384Token.split(".");
    const forgedHeader = Buffer.from(JSON.stringify({ ...decodeProtectedHeader(es384Token), alg: "EdDSA" })).toString(
      "base64url",
    );
    expect((await login(s, `${forgedHeader}.${esParts[1]}.${esParts[2]}`)).status).toBe(403);
  });

  const hasPy = requireTool("PyJWT (PyPI)", spawnSync("python3", ["-c", "import jwt, cryptography"]).status === 0);
  it.runIf(hasPy)("PyJWT verifies the EdDSA token via OIDC discovery and the JWKS", async () => {
    const script = `
import json, sys, urllib.request, jwt
issuer, token = sys.argv[1], sys.argv[2]
doc = json.load(urllib.request.urlopen(issuer + "/.well-known/openid-configuration"))
key = jwt.PyJWKClient(doc["jwks_uri"]).get_signing_key_from_jwt(token)
print(json.dumps(jwt.decode(token, key.key, algorithms=["EdDSA"], audience="buckypaper", issuer=issuer)))
`;
    const r = await run("python3", ["-c", script, `${s.rt.url}/v1/nitride`, eddsaToken]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ sub: "web" });
  });

  const hasGo = requireTool("Go toolchain (for hashicorp/cap/jwt)", haveCommand("go", ["version"]));
  it.runIf(hasGo)(
    "hashicorp/cap/jwt (Vault's and OpenBao's JWT validator) accepts the EdDSA token and refuses it as ES384",
    async () => {
      const bin = path.join(mkdtempSync(path.join(tmpdir(), "bk-cap-")), "nitride-cap-check");
      const b = await run(
        "go",
        ["build", "-o", bin, "."],
        path.join(repoRoot, "test/runtime/server/nitride/nitride-cap-check"),
      );
      expect(b.code, b.err).toBe(0);
      const issuer = `${s.rt.url}/v1/nitride`;
      const ok = await run(bin, [issuer, "buckypaper", eddsaToken, "EdDSA"]);
      expect(ok.code, ok.err).toBe(0);
      expect(JSON.parse(ok.out)).toMatchObject({ sub: "web", iss: issuer });
      expect((await run(bin, [issuer, "buckypaper", eddsaToken])).code).toBe(1);
    },
    400_000,
  );

  it("switching back to ES384 rotates again; the EdDSA key stays published while its tokens may live", async () => {
    expect((await s.rt.api("PUT", "nitride/config", { token_algorithm: "ES384" })).status).toBe(200);
    const a = await attestAs(s, "web");
    expect(algOf(a.body.data.token)).toBe("ES384");
    const rot = await s.rt.api("POST", "nitride/keys/rotate", {});
    expect(rot.status).toBe(200);
    const c = await attestAs(s, "web");
    expect(algOf(c.body.data.token)).toBe("ES384");
    expect((await login(s, eddsaToken)).status).toBe(200);
  });
});
