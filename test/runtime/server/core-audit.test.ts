// The audit log: one JSON record per request and response, tokens and secret values HMAC'd with the
// runtime's audit key (verifiable through sys/audit-hash), login metadata readable, append-only.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startTestRuntime, type TestRuntime } from "../../support/runtime.js";
import type { LogicalBackend } from "../../../runtime/server/vault/backend.js";

/** A minimal auth method: POST login → policies + metadata, as the JWT method returns them. */
const staticLogin: LogicalBackend = {
  type: "static",
  unauthenticatedPaths: ["login"],
  async handle(req) {
    if (req.path !== "login" || req.operation === "read") return undefined;
    return {
      auth: {
        policies: ["app"],
        ttl: 60,
        renewable: false,
        metadata: {
          workload: "w-17",
          evidence_digest: "sha384:0badc0de",
          policy_hash: "sha256:feed",
          ref_version: "3",
        },
      },
    };
  },
};

let rt: TestRuntime;
let dir: string;
let file: string;
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "bk-audit-"));
  file = path.join(dir, "audit.log");
  rt = await startTestRuntime({
    register: (r) => r.registerAuth("static", () => staticLogin),
    auth: { "static/": { type: "static" } },
  });
});
afterAll(async () => {
  await rt?.close();
  rmSync(dir, { recursive: true, force: true });
});

const lines = () =>
  readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));

describe("audit log", () => {
  it("records every request with secrets and tokens HMAC'd", async () => {
    expect((await rt.api("PUT", "sys/audit/file", { type: "file", options: { file_path: file } })).status).toBe(204);
    expect(statSync(file).mode & 0o077).toBe(0);
    await rt.api("PUT", "sys/policies/acl/app", { policy: 'path "secret/data/app" { capabilities = ["read"] }' });
    await rt.api("POST", "secret/data/app", { data: { password: "audit-secret-value-42" } });
    const read = await rt.api("GET", "secret/data/app");
    expect(read.body.data.data.password).toBe("audit-secret-value-42");
    const login = await rt.api("POST", "auth/static/login", { role: "x" }, "");
    const token = login.body.auth.client_token as string;
    expect(login.body.auth.policies).toEqual(["app", "default"]);
    expect(login.body.auth.metadata.workload).toBe("w-17");
    expect((await rt.api("GET", "secret/data/app", undefined, token)).status).toBe(200);
    expect((await rt.api("GET", "secret/data/other", undefined, token)).status).toBe(403);

    const raw = readFileSync(file, "utf8");
    for (const secret of ["audit-secret-value-42", rt.rootToken, token]) expect(raw.includes(secret)).toBe(false);
    const recs = lines();
    expect(recs.every((r) => r.type === "request" || r.type === "response")).toBe(true);
    const readResp = recs.find(
      (r) => r.type === "response" && r.request.path === "secret/data/app" && r.request.operation === "read",
    );
    const expected = (await rt.api("POST", "sys/audit-hash/file", { input: "audit-secret-value-42" })).body.data.hash;
    expect(expected).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(readResp.response.data.data.password).toBe(expected);
    expect(readResp.request.client_token).toBe(
      (await rt.api("POST", "sys/audit-hash/file", { input: rt.rootToken })).body.data.hash,
    );
    // The attested-login context stays readable for auditors: who logged in, with which evidence.
    const loginResp = recs.find((r) => r.type === "response" && r.request.path === "auth/static/login");
    expect(loginResp.response.auth.metadata).toMatchObject({
      workload: "w-17",
      evidence_digest: "sha384:0badc0de",
      policy_hash: "sha256:feed",
      ref_version: "3",
    });
    expect(loginResp.response.auth.client_token).toMatch(/^hmac-sha256:/);
    const denied = recs.find((r) => r.type === "response" && r.request.path === "secret/data/other");
    expect(denied.error).toMatch(/permission denied/);
    expect(denied.auth.metadata.evidence_digest).toBe("sha384:0badc0de");
  });

  it("only appends", async () => {
    const before = readFileSync(file, "utf8");
    await rt.api("GET", "secret/data/app");
    const after = readFileSync(file, "utf8");
    expect(after.startsWith(before)).toBe(true);
    expect(after.length).toBeGreaterThan(before.length);
  });

  it("lists and disables devices (sudo)", async () => {
    const l = await rt.api("GET", "sys/audit");
    expect(l.body.data["file/"]).toMatchObject({ type: "file", options: { file_path: file } });
    expect((await rt.api("DELETE", "sys/audit/file")).status).toBe(204);
    const size = statSync(file).size;
    await rt.api("GET", "secret/data/app");
    expect(statSync(file).size).toBe(size);
  });
});
