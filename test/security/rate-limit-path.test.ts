// Attack 4: the rate limiter matched the raw path while the core collapsed `//` later, so
// `nitride//challenge`, `//nitride/challenge` and `auth/jwt//login` were served without limit.
// Now one canonical path (runtime/server/vault/request-path.ts) is computed at the HTTP entry and
// used by the limiter, the ACL and the router alike. Against `runtime server` with workers = 2:
// each worker keeps its own buckets, so the bound below is per worker × burst.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRuntimeServer, type ServerUnderAttack } from "./support.js";

const BURST = 3;
const WORKERS = 2;
let srv: ServerUnderAttack;
beforeAll(async () => {
  // A refill so slow that no bucket regains a request while the test runs (no timing involved).
  srv = await startRuntimeServer({
    workers: WORKERS,
    hcl:
      `rate_limit "nitride/challenge" { per_second = 0.0001  burst = ${BURST} }\n` +
      `rate_limit "auth/*/login" { per_second = 0.0001  burst = ${BURST} }\n`,
  });
  expect((await srv.call("POST", "sys/auth/jwt", { type: "jwt" }, srv.root)).status).toBe(204);
}, 60_000);
afterAll(async () => {
  await srv?.close();
});

async function statuses(p: string, n: number, body: unknown): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await srv.call("POST", p, body)).status);
  return out;
}

describe("attack 4: path spellings do not escape the rate limit (runtime server, workers = 2)", () => {
  it.each([
    ["nitride/challenge", ["nitride//challenge", "//nitride/challenge", "nitride/challenge/", "nitride///challenge//"]],
    ["auth/jwt/login", ["auth/jwt//login", "//auth/jwt/login", "auth//jwt/login/", "auth/jwt/login"]],
  ])("%s: every spelling shares one bucket", async (_canonical, spellings) => {
    const body = { workload_id: "web", role: "r", jwt: "x" };
    const all: Record<string, number[]> = {};
    for (const p of spellings) all[p] = await statuses(p, 8, body);
    const served = Object.values(all)
      .flat()
      .filter((s) => s !== 429).length;
    // At most one burst per worker in total, whatever the spelling; every spelling is throttled.
    expect(served).toBeLessThanOrEqual(BURST * WORKERS);
    for (const [p, s] of Object.entries(all)) expect(s.filter((x) => x === 429).length, p).toBeGreaterThan(0);
  });

  it("the ACL judges the same canonical path the router serves", async () => {
    await srv.call("POST", "sys/mounts/kv", { type: "kv", options: { version: "2" } }, srv.root);
    await srv.call("PUT", "kv/data/app", { data: { v: "app" } }, srv.root);
    await srv.call("PUT", "kv/data/admin", { data: { v: "admin" } }, srv.root);
    await srv.call(
      "PUT",
      "sys/policies/acl/app",
      { policy: 'path "kv/data/app" { capabilities = ["read"] }' },
      srv.root,
    );
    const tok = (await srv.call("POST", "auth/token/create", { policies: ["app"] }, srv.root)).body.auth.client_token;
    expect((await srv.call("GET", "kv//data/app", undefined, tok)).status).toBe(200);
    for (const p of ["kv//data/admin", "//kv/data/admin", "kv/data//admin", "kv/data/app/../admin"])
      expect((await srv.call("GET", p, undefined, tok)).status, p).not.toBe(200);
  });
});
