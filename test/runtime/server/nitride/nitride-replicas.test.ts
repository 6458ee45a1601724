// Two runtime replicas (two `buckypaper runtime server` processes on one SQLite database file, one
// api_addr as behind a load balancer): a nonce issued by one is consumed by the other exactly once,
// the first signing key is generated once even when both sign their first token at the same time,
// a rotation on one is picked up by the other, and a token from one logs in at the other.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { generateKeyPairSync } from "node:crypto";
import { decodeProtectedHeader } from "jose";
import { createSnpSimulator, type SnpSimulator } from "../../../../runtime/sim/snp.js";
import { reportDataFor } from "../../../../runtime/attestation/binding.js";
import { encodeEvidence } from "../../../../runtime/protocol/evidence.js";
import { api, startServerProc, type ServerProc } from "../core-procs.js";

const M = "a1".repeat(48);
const dir = mkdtempSync(path.join(tmpdir(), "bk-nitride-replicas-"));
let a: ServerProc,
  b: ServerProc,
  root = "",
  sim: SnpSimulator;

const call = (
  srv: ServerProc,
  method: string,
  p: string,
  body?: unknown,
  token = root,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
): Promise<{ status: number; body: any }> => api(srv.url, method, p, body, token || undefined);

async function evidenceFor(srv: ServerProc) {
  const ch = await call(srv, "POST", "nitride/challenge", { workload_id: "web" }, "");
  const spki = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "der", type: "spki" });
  const ev = await sim.report({
    measurement: M,
    reportData: reportDataFor(Buffer.from(ch.body.data.nonce, "base64url"), spki),
  });
  return {
    workload_id: "web",
    nonce: ch.body.data.nonce,
    ephemeral_public_key: spki.toString("base64"),
    evidence: encodeEvidence({ kind: "snp", report: ev.report, certTable: ev.certTable }),
  };
}

beforeAll(async () => {
  sim = await createSnpSimulator({ product: "Milan", rsaBits: 2048 });
  const cfg = path.join(dir, "runtime.hcl");
  writeFileSync(
    cfg,
    `api_addr = "https://runtime.example:8200"\nstorage "sqlite" { path = "runtime.db" }\nlistener "tcp" { address = "127.0.0.1:0"\n tls_disable = true }`,
  );
  [a, b] = await Promise.all([startServerProc(cfg), startServerProc(cfg)]);
  const init = await api(a.url, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 });
  const key = init.body.keys_base64[0] as string;
  root = init.body.root_token;
  for (const srv of [a, b]) expect((await api(srv.url, "PUT", "sys/unseal", { key })).body.sealed).toBe(false);
  const t = sim.trustAnchor;
  const ok = async (method: string, p: string, body?: unknown) => {
    const r = await call(a, method, p, body);
    if (r.status >= 300) throw new Error(`${p}: ${JSON.stringify(r.body)}`);
  };
  await ok("PUT", "nitride/config", {
    audience: "buckypaper", // the role below binds it (the default is per runtime: nitride-audience.test.ts)
    kds: "off",
    accept_simulated: true,
    simulated_snp_anchors: [
      {
        product: t.product,
        ark_sha256: t.arkSha256,
        ca_certs: t.caCerts.map((c) => Buffer.from(c).toString("base64")),
      },
    ],
  });
  await ok("PUT", "nitride/workloads/web", { reference_values: { snp_measurements: [M] }, secrets: { kv: [] } });
  await ok("POST", "sys/auth/jwt", { type: "jwt" });
  await ok("POST", "auth/jwt/config", { nitride_mount: "nitride" });
  await ok("POST", "auth/jwt/role/w", { bound_audiences: "buckypaper", token_policies: "x" });
  // B has served no Nitride request yet, so it has cached no configuration: it reads A's from storage.
}, 90_000);
afterAll(async () => {
  await a?.kill();
  await b?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe("Nitride on two replicas sharing one database", () => {
  it("first signing key is generated once although both replicas sign their first token concurrently", async () => {
    const [ra, rb] = await Promise.all([evidenceFor(a), evidenceFor(b)]);
    const [ta, tb] = await Promise.all([
      call(a, "POST", "nitride/attest", ra, ""),
      call(b, "POST", "nitride/attest", rb, ""),
    ]);
    expect(ta.status, JSON.stringify(ta.body)).toBe(200);
    expect(tb.status, JSON.stringify(tb.body)).toBe(200);
    expect(decodeProtectedHeader(ta.body.data.token).kid).toBe(decodeProtectedHeader(tb.body.data.token).kid);
  });

  it("a nonce from replica A is accepted once at replica B and refused everywhere after", async () => {
    const req = await evidenceFor(a);
    const r1 = await call(b, "POST", "nitride/attest", req, "");
    expect(r1.status).toBe(200);
    expect((await call(a, "POST", "nitride/attest", req, "")).status).toBe(403);
    expect((await call(b, "POST", "nitride/attest", req, "")).status).toBe(403);
    // The token from B logs in at A (same key ring, same issuer).
    const l = await call(a, "POST", "auth/jwt/login", { role: "w", jwt: r1.body.data.token }, "");
    expect(l.status, JSON.stringify(l.body)).toBe(200);
    expect(l.body.auth.metadata.workload_id).toBe("web");
  });

  it("a key rotated on A signs B's next tokens within the cache window, and A still accepts B's older tokens", async () => {
    const before = await call(b, "POST", "nitride/attest", await evidenceFor(b), "");
    const oldKid = decodeProtectedHeader(before.body.data.token).kid;
    const rot = await call(a, "POST", "nitride/keys/rotate", {});
    expect(rot.body.data.kid).not.toBe(oldKid);
    await new Promise((r) => setTimeout(r, 5200)); // replicas re-read the key ring every 5 s
    const after = await call(b, "POST", "nitride/attest", await evidenceFor(b), "");
    expect(decodeProtectedHeader(after.body.data.token).kid).toBe(rot.body.data.kid);
    expect((await call(a, "POST", "auth/jwt/login", { role: "w", jwt: before.body.data.token }, "")).status).toBe(200);
  }, 20_000);
});
