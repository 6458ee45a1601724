// The audit log links a secret release to its evidence: the attested login's record carries the
// workload id, evidence digest, policy hash and reference-value version in clear, while the workload
// token, the Vault token and the secret values appear only HMAC'd.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { attestAs, login, startNitrideStack, type NitrideStack } from "./nitride-support.js";

let s: NitrideStack;
const logFile = path.join(mkdtempSync(path.join(tmpdir(), "bk-nitride-audit-")), "audit.log");
beforeAll(async () => {
  s = await startNitrideStack();
  const r = await s.rt.api("PUT", "sys/audit/file", { type: "file", options: { file_path: logFile } });
  expect(r.status).toBeLessThan(300);
}, 60_000);
afterAll(async () => {
  await s?.rt.close();
});

describe("audit records of attested logins", () => {
  it("record evidence digest, policy hash, ref_version and workload id; never the tokens or the secret", async () => {
    const a = await attestAs(s, "web");
    const l = await login(s, a.body.data.token);
    const tok = l.body.auth.client_token as string;
    expect((await s.rt.api("GET", "secret/data/web/db", undefined, tok)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 100));
    const text = readFileSync(logFile, "utf8");
    const records = text
      .trim()
      .split("\n")
      .map((x) => JSON.parse(x));
    const loginRec = records.find((r) => r.type === "response" && r.request.path === "auth/jwt/login");
    expect(loginRec.response.auth.metadata).toMatchObject({
      workload_id: "web",
      evidence_digest: a.body.data.verdict.evidenceDigest,
      ref_version: String(a.body.data.ref_version),
    });
    expect(loginRec.response.auth.metadata.policy_hash).toMatch(/^[0-9a-f]{64}$/);
    const readRec = records.find((r) => r.type === "response" && r.request.path === "secret/data/web/db");
    expect(readRec.auth.metadata.evidence_digest).toBe(a.body.data.verdict.evidenceDigest);
    expect(text).not.toContain(a.body.data.token);
    expect(text).not.toContain(tok);
    expect(text).not.toContain("web-db-secret");
  });
});
