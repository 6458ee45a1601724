// Independent implementations accept what Nitride produces:
// - PyJWT (PyPI) finds the key through OIDC discovery + JWKS over HTTP and verifies the workload token;
// - a JWT auth mount configured like an external Vault (oidc_discovery_url over HTTP) logs the token in;
// - jwcrypto (PyPI) decrypts a sealed response with the ephemeral private key, and not with another key;
// - github.com/hashicorp/cap/jwt, the validator inside Vault's and OpenBao's JWT auth method, accepts the
//   token through OIDC discovery (test/runtime/server/nitride/nitride-cap-check, built with the Go toolchain).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { haveCommand, requireTool } from "../../../support/prereq.js";
import { repoRoot } from "../../../support/shared.js";
import { attestAs, login, runAsync as run, startNitrideStack, type NitrideStack } from "./nitride-support.js";

const hasPy = requireTool("PyJWT + jwcrypto (PyPI)", spawnSync("python3", ["-c", "import jwt, jwcrypto"]).status === 0);

function python(script: string, args: string[]) {
  return run("python3", ["-c", script, ...args]);
}

let s: NitrideStack;
beforeAll(async () => {
  s = await startNitrideStack();
}, 60_000);
afterAll(async () => {
  await s?.rt.close();
});

const PYJWT = `
import json, sys, urllib.request, jwt
issuer, token = sys.argv[1], sys.argv[2]
doc = json.load(urllib.request.urlopen(issuer + "/.well-known/openid-configuration"))
assert doc["issuer"] == issuer, doc
key = jwt.PyJWKClient(doc["jwks_uri"]).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=doc["id_token_signing_alg_values_supported"], audience="buckypaper", issuer=issuer)
print(json.dumps(claims))
`;

const JWCRYPTO = `
import json, sys
from jwcrypto import jwe, jwk
pem, sealed = sys.argv[1].encode(), sys.argv[2]
key = jwk.JWK.from_pem(pem)
t = jwe.JWE()
t.deserialize(sealed, key=key)
print(t.payload.decode())
`;

describe.runIf(hasPy)("independent verifiers (PyJWT, jwcrypto)", () => {
  it("PyJWT verifies the workload token via OIDC discovery and the JWKS", async () => {
    const a = await attestAs(s, "web");
    const r = await python(PYJWT, [`${s.rt.url}/v1/nitride`, a.body.data.token]);
    expect(r.code, r.err).toBe(0);
    const claims = JSON.parse(r.out);
    expect(claims).toMatchObject({ sub: "web", platform: "snp", aud: "buckypaper" });
    expect(claims.cnf.jwk.crv).toBe("P-384");
  });

  it("jwcrypto decrypts a sealed response only with the attested ephemeral private key", async () => {
    const a = await attestAs(s, "web");
    const tok = (await login(s, a.body.data.token)).body.auth.client_token;
    const res = await fetch(`${s.rt.url}/v1/secret/data/web/db`, {
      headers: { "x-vault-token": tok, "x-buckypaper-seal": "ephemeral" },
    });
    const { sealed } = (await res.json()) as { sealed: string };
    const pem = a.ephemeral.privateKey.export({ format: "pem", type: "pkcs8" }) as string;
    const ok = await python(JWCRYPTO, [pem, sealed]);
    expect(ok.code, ok.err).toBe(0);
    expect(JSON.parse(ok.out).data.data.password).toBe("web-db-secret");
    const other = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey.export({
      format: "pem",
      type: "pkcs8",
    }) as string;
    const bad = await python(JWCRYPTO, [other, sealed]);
    expect(bad.code).not.toBe(0);
    expect(bad.out).not.toContain("web-db-secret");
  });
});

describe("JWT auth configured like an external Vault (OIDC discovery over HTTP)", () => {
  it("logs in a Nitride token through oidc_discovery_url = <api_addr>/v1/nitride", async () => {
    const issuer = `${s.rt.url}/v1/nitride`;
    expect((await s.rt.api("POST", "sys/auth/external", { type: "jwt" })).status).toBeLessThan(300);
    expect(
      (await s.rt.api("POST", "auth/external/config", { oidc_discovery_url: issuer, bound_issuer: issuer })).status,
    ).toBe(204);
    await s.rt.api("POST", "auth/external/role/web", {
      role_type: "jwt",
      user_claim: "sub",
      bound_audiences: "buckypaper",
      bound_subject: "web",
      claim_mappings: { evidence_digest: "evidence_digest" },
      token_policies: "nitride-workload-web",
    });
    const a = await attestAs(s, "web");
    const l = await s.rt.api("POST", "auth/external/login", { role: "web", jwt: a.body.data.token }, "");
    expect(l.status, JSON.stringify(l.body)).toBe(200);
    expect(l.body.auth.metadata.evidence_digest).toBe(a.body.data.verdict.evidenceDigest);
    const other = await attestAs(s, "other", { measurement: "b2".repeat(48) });
    expect(
      (await s.rt.api("POST", "auth/external/login", { role: "web", jwt: other.body.data.token }, "")).status,
    ).toBe(403);
  });
});

const hasGo = requireTool("Go toolchain (for hashicorp/cap/jwt)", haveCommand("go", ["version"]));

describe.runIf(hasGo)("hashicorp/cap/jwt (the validator in Vault's and OpenBao's JWT auth)", () => {
  const bin = path.join(mkdtempSync(path.join(tmpdir(), "bk-cap-")), "nitride-cap-check");
  beforeAll(async () => {
    const b = await run(
      "go",
      ["build", "-o", bin, "."],
      path.join(repoRoot, "test/runtime/server/nitride/nitride-cap-check"),
    );
    if (b.code !== 0) throw new Error(`go build failed: ${b.err}`);
  }, 400_000);

  it("validates a Nitride token via OIDC discovery (issuer, audience, ES384) and refuses a foreign audience", async () => {
    const a = await attestAs(s, "web");
    const issuer = `${s.rt.url}/v1/nitride`;
    const ok = await run(bin, [issuer, "buckypaper", a.body.data.token]);
    expect(ok.code, ok.err).toBe(0);
    expect(JSON.parse(ok.out)).toMatchObject({ sub: "web", iss: issuer, platform: "snp" });
    const wrongAud = await run(bin, [issuer, "someone-else", a.body.data.token]);
    expect(wrongAud.code).toBe(1);
    expect(wrongAud.err).toMatch(/aud/i);
    const tampered = a.body.data.token.replace(/\.[^.]+$/, `.${Buffer.alloc(96, 7).toString("base64url")}`);
    expect((await run(bin, [issuer, "buckypaper", tampered])).code).toBe(1);
  });
});
