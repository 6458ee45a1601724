// The audience of Nitride's workload tokens. By default a token names the runtime that issued it (its Nitride
// mount's uuid) and, as a second value, that runtime plus the workload: `aud` = ["buckypaper-nitride:<uuid>",
// "buckypaper-nitride:<uuid>:<workload>"]. A relying party that trusts the signing keys of several runtimes (one
// JWT auth mount with both runtimes' public keys, as an external Vault configured for a fleet would be) and binds
// runtime B's audience refuses runtime A's token for the same workload id — before, every runtime issued
// `aud: "buckypaper"` and A's `web` passed as B's `web`. An operator's configured audience keeps working (one
// string, as before), and "" goes back to the default. Real HTTP, two runtimes, simulated SNP evidence.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPublicKey } from "node:crypto";
import { decodeJwt, type JWK } from "jose";
import { OTHER_MEASUREMENT, attestAs, login, startNitrideStack, type NitrideStack } from "./nitride-support.js";

let a: NitrideStack;
let b: NitrideStack;
let audA: string;
let audB: string;

const ok = async (s: NitrideStack, method: string, path: string, body?: unknown) => {
  const r = await s.rt.api(method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};
const tokenOf = async (s: NitrideStack, workload: string): Promise<string> => {
  const r = await attestAs(s, workload, workload === "other" ? { measurement: OTHER_MEASUREMENT } : {});
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.data.token as string;
};
/** The runtime's workload-token signing keys as PEM (what a relying party is configured with). */
const signingPems = async (s: NitrideStack): Promise<string[]> => {
  const res = await fetch(`${s.rt.url}/v1/nitride/jwks`);
  const jwks = (await res.json()) as { keys: JWK[] };
  return jwks.keys
    .filter((k) => k.kty === "EC")
    .map((k) => createPublicKey({ key: k, format: "jwk" }).export({ type: "spki", format: "pem" }).toString());
};

beforeAll(async () => {
  [a, b] = await Promise.all([startNitrideStack(), startNitrideStack()]);
  // The shared support configures `audience = "buckypaper"` (what the older tests assert); this file tests the
  // default: back to it with "".
  for (const s of [a, b]) await ok(s, "PUT", "nitride/config", { audience: "" });
  audA = (await ok(a, "GET", "nitride/config")).data.default_audience;
  audB = (await ok(b, "GET", "nitride/config")).data.default_audience;
  // A relying party on B that trusts BOTH runtimes' signing keys; its roles bind B's audiences.
  await ok(b, "POST", "sys/auth/fleet", { type: "jwt" });
  await ok(b, "POST", "auth/fleet/config", {
    jwt_validation_pubkeys: [...(await signingPems(a)), ...(await signingPems(b))],
  });
  await ok(b, "POST", "auth/fleet/role/any-of-b", {
    role_type: "jwt",
    bound_audiences: [audB],
    user_claim: "sub",
    token_policies: ["default"],
  });
  await ok(b, "POST", "auth/fleet/role/web-of-b", {
    role_type: "jwt",
    bound_audiences: [`${audB}:web`],
    user_claim: "sub",
    token_policies: ["default"],
  });
}, 120_000);

afterAll(async () => {
  await a?.rt.close();
  await b?.rt.close();
});

const fleetLogin = (role: string, jwt: string) => b.rt.api("POST", "auth/fleet/login", { role, jwt }, "");

describe("Nitride workload-token audience", () => {
  it("by default names the issuing runtime and the workload; two runtimes never share it", async () => {
    expect(audA).toMatch(/^buckypaper-nitride:[0-9a-f-]{36}$/);
    expect(audB).toMatch(/^buckypaper-nitride:[0-9a-f-]{36}$/);
    expect(audA).not.toBe(audB);
    expect(decodeJwt(await tokenOf(a, "web")).aud).toEqual([audA, `${audA}:web`]);
    expect(decodeJwt(await tokenOf(b, "other")).aud).toEqual([audB, `${audB}:other`]);
    // Stable: the mount's uuid, not a per-process value.
    expect((await ok(a, "GET", "nitride/config")).data.default_audience).toBe(audA);
  });

  it("hostile: runtime A's token for `web` is refused where runtime B's audience is expected", async () => {
    const fromA = await tokenOf(a, "web");
    for (const role of ["any-of-b", "web-of-b"]) {
      const r = await fleetLogin(role, fromA);
      expect(r.status, role).toBe(403);
      expect(JSON.stringify(r.body)).toMatch(/aud claim does not match any bound audience/);
    }
    // The relying party does trust A's key: the refusal is the audience's, not the signature's.
    await ok(b, "POST", "auth/fleet/role/any-of-a", {
      role_type: "jwt",
      bound_audiences: [audA],
      user_claim: "sub",
      token_policies: ["default"],
    });
    expect((await fleetLogin("any-of-a", fromA)).status).toBe(200);
  });

  it("B's own tokens pass; the workload-level audience admits exactly that workload", async () => {
    const web = await tokenOf(b, "web");
    const other = await tokenOf(b, "other");
    expect((await fleetLogin("any-of-b", web)).status).toBe(200);
    expect((await fleetLogin("any-of-b", other)).status).toBe(200);
    expect((await fleetLogin("web-of-b", web)).status).toBe(200);
    const r = await fleetLogin("web-of-b", other);
    expect(r.status).toBe(403);
    expect(JSON.stringify(r.body)).toMatch(/aud claim does not match any bound audience/);
  });

  it("the in-process JWT auth: a role bound to the runtime's default audience logs its workload in", async () => {
    await ok(b, "POST", "auth/jwt/role/own", {
      role_type: "jwt",
      bound_audiences: [audB],
      user_claim: "sub",
      bound_claims: { platform: "snp" },
      token_policies: ["nitride-workload-{{sub}}"],
      token_policies_template_claims: true,
      token_ttl: "10m",
    });
    expect((await login(b, await tokenOf(b, "web"), "own")).status).toBe(200);
    // The role that binds the old shared value no longer admits a default token.
    const old = await login(b, await tokenOf(b, "web"), "workload");
    expect(old.status).toBe(403);
  });

  it('a configured audience keeps working (one string, as before); "" goes back to the default', async () => {
    await ok(a, "PUT", "nitride/config", { audience: "payments-vault" });
    expect((await ok(a, "GET", "nitride/config")).data).toMatchObject({
      audience: "payments-vault",
      default_audience: audA,
    });
    expect(decodeJwt(await tokenOf(a, "web")).aud).toBe("payments-vault");
    await ok(a, "PUT", "nitride/config", { audience: "" });
    expect(decodeJwt(await tokenOf(a, "web")).aud).toEqual([audA, `${audA}:web`]);
  });
});
