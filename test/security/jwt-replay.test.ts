// Replay and cross-runtime use of JWTs at the JWT auth method, over real HTTP against two `runtime dev`
// stacks with Nitride and the SNP simulator:
//  - a role with `single_use_jti` takes each JWT once (the replay cache, runtime/server/vault/jti-cache.ts):
//    a Nitride workload token replayed by whoever saw it (a TLS-terminating proxy, a log) is refused, and
//    a JWT without jti is refused by such a role;
//  - a workload token of runtime A is refused by runtime B (B's Nitride key ring did not sign it).
// The deployer's JWTs (single use, per-runtime audience) are attacked in test/provider/deployer-credential.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { SignJWT } from "jose";
import { attestAs, login, startNitrideStack, type NitrideStack } from "../runtime/server/nitride/nitride-support.js";

let a: NitrideStack;
let b: NitrideStack;
beforeAll(async () => {
  a = await startNitrideStack();
  b = await startNitrideStack();
  const once = {
    bound_audiences: ["buckypaper"],
    token_policies: ["nitride-workload-{{sub}}"],
    token_policies_template_claims: true,
    single_use_jti: true,
  };
  expect((await a.rt.api("POST", "auth/jwt/role/once", once)).status).toBe(204);
}, 120_000);
afterAll(async () => {
  await a?.rt.close();
  await b?.rt.close();
});

describe("single_use_jti: a JWT logs in once", () => {
  it("a replayed workload token is refused and mints no token; a refused login does not use it up", async () => {
    const t = (await attestAs(a, "web")).body.data.token as string;
    // a refusal before the cache (wrong role binding) leaves the JWT usable
    expect((await a.rt.api("POST", "auth/jwt/login", { role: "nope", jwt: t }, "")).status).toBe(400);
    const first = await login(a, t, "once");
    expect(first.status).toBe(200);
    expect(first.body.auth.policies).toContain("nitride-workload-web");
    const replay = await login(a, t, "once");
    expect(replay.status).toBe(403);
    expect(JSON.stringify(replay.body)).toMatch(/jti claim already used/);
    expect(replay.body.auth).toBeUndefined();
    // the first login's token is unaffected
    expect((await a.rt.api("GET", "auth/token/lookup-self", undefined, first.body.auth.client_token)).status).toBe(200);
    // Vault's semantics on a role without the option: the same JWT logs in again (documented deviation only where asked)
    expect((await login(a, t, "workload")).status).toBe(200);
  });

  it("concurrent replays of one token: exactly one login", async () => {
    const t = (await attestAs(a, "web")).body.data.token as string;
    const r = await Promise.all(Array.from({ length: 6 }, () => login(a, t, "once")));
    expect(r.map((x) => x.status).sort()).toEqual([200, 403, 403, 403, 403, 403]);
  });

  it("a role with single_use_jti refuses a JWT without jti", async () => {
    const kp = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const pem = kp.publicKey.export({ format: "pem", type: "spki" }) as string;
    expect((await a.rt.api("POST", "sys/auth/static", { type: "jwt" })).status).toBe(204);
    expect((await a.rt.api("POST", "auth/static/config", { jwt_validation_pubkeys: [pem] })).status).toBe(204);
    const role = { bound_audiences: ["x"], user_claim: "sub", token_policies: ["default"], single_use_jti: true };
    expect((await a.rt.api("POST", "auth/static/role/r", role)).status).toBe(204);
    const now = Math.floor(Date.now() / 1000);
    const jwt = (jti?: string) => {
      const j = new SignJWT({}).setProtectedHeader({ alg: "ES256" }).setSubject("s").setAudience("x");
      if (jti) j.setJti(jti);
      return j
        .setIssuedAt(now)
        .setExpirationTime(now + 60)
        .sign(kp.privateKey);
    };
    const none = await a.rt.api("POST", "auth/static/login", { role: "r", jwt: await jwt() }, "");
    expect(none.status).toBe(403);
    expect(JSON.stringify(none.body)).toMatch(/requires a jti/);
    const withJti = await jwt("j-1");
    expect((await a.rt.api("POST", "auth/static/login", { role: "r", jwt: withJti }, "")).status).toBe(200);
    expect((await a.rt.api("POST", "auth/static/login", { role: "r", jwt: withJti }, "")).status).toBe(403);
  });
});

describe("a workload token is bound to the runtime that issued it", () => {
  it("runtime B refuses runtime A's workload token (same audience, same role name)", async () => {
    const t = (await attestAs(a, "web")).body.data.token as string;
    const r = await login(b, t, "workload");
    expect(r.status).toBe(403);
    expect(JSON.stringify(r.body)).toMatch(/signature/);
    // B's own token logs in at B
    expect((await login(b, (await attestAs(b, "web")).body.data.token, "workload")).status).toBe(200);
  });
});
