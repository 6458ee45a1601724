// sys/generate-root is audited as Vault audits it (handleAuditNonLogical, hashicorp/vault#8301): a request record
// before and a response record after each attempt / update / cancel / status call, every string HMAC'd with the
// runtime's audit key — so the log proves that a quorum minted a root token, when and from where, without holding
// a share, the OTP, the nonce or the encoded root token in clear. Over real HTTP against `runtime server` (SQLite,
// two workers writing the same audit file, 3 shares / threshold 2), with the root token revoked first.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startRuntimeServer, type ServerUnderAttack } from "./support.js";
import { decodeRootToken } from "../../runtime/server/vault/generate-root.js";

let srv: ServerUnderAttack;
let dir: string;
let log: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "bk-genroot-audit-"));
  log = path.join(dir, "audit.log");
  srv = await startRuntimeServer({ workers: 2, shares: 3, threshold: 2, hcl: `audit_file = "${log}"` });
  expect((await srv.call("POST", "auth/token/revoke-self", {}, srv.root)).status).toBe(204);
}, 120_000);

afterAll(async () => {
  await srv?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Rec = {
  type: "request" | "response";
  request: { id: string; operation: string; path: string; mount_type?: string; data?: Record<string, unknown> };
  response?: { status: number; data?: Record<string, unknown> };
  error?: string;
};
const records = (): Rec[] =>
  readFileSync(log, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Rec)
    .filter((r) => r.request.path.startsWith("sys/generate-root/"));
const HMAC = /^hmac-sha256:[0-9a-f]{64}$/;

describe("sys/generate-root in the audit log", () => {
  let otp: string;
  let nonce: string;
  let encoded: string;
  let token: string;

  beforeAll(async () => {
    expect((await srv.call("GET", "sys/generate-root/attempt")).status).toBe(200);
    const st = await srv.call("PUT", "sys/generate-root/attempt", {});
    ({ otp, nonce } = st.body);
    // a share with a nonce from no attempt: refused (and audited as a refusal)
    expect(
      (await srv.call("PUT", "sys/generate-root/update", { key: srv.keys[1], nonce: "not-the-nonce" })).status,
    ).toBe(400);
    expect((await srv.call("PUT", "sys/generate-root/update", { key: srv.keys[0], nonce })).status).toBe(200);
    const done = await srv.call("PUT", "sys/generate-root/update", { key: srv.keys[2], nonce });
    expect(done.body.complete).toBe(true);
    encoded = done.body.encoded_root_token;
    token = decodeRootToken(encoded, otp);
    // a second attempt, cancelled
    expect((await srv.call("PUT", "sys/generate-root/attempt", {})).status).toBe(200);
    expect((await srv.call("DELETE", "sys/generate-root/attempt")).status).toBe(204);
  }, 60_000);

  it("each call leaves a request and a response record: status, attempt, both updates, the refusal, the cancel", () => {
    const recs = records();
    const ops = (type: string) =>
      recs.filter((r) => r.type === type).map((r) => `${r.request.operation} ${r.request.path}`);
    const expected = [
      "read sys/generate-root/attempt",
      "update sys/generate-root/attempt",
      "update sys/generate-root/update",
      "update sys/generate-root/update",
      "update sys/generate-root/update",
      "update sys/generate-root/attempt",
      "delete sys/generate-root/attempt",
    ];
    expect(ops("request")).toEqual(expected);
    expect(ops("response")).toEqual(expected);
    // Each response is paired with its request by id; the system mount is named.
    for (const r of recs.filter((x) => x.type === "response"))
      expect(recs.some((q) => q.type === "request" && q.request.id === r.request.id)).toBe(true);
    expect(recs.every((r) => r.request.mount_type === "system")).toBe(true);
    const statuses = recs.filter((r) => r.type === "response").map((r) => r.response!.status);
    expect(statuses).toEqual([200, 200, 400, 200, 200, 200, 204]);
    expect(recs.filter((r) => r.type === "response" && r.response!.status === 400)[0].error).toMatch(HMAC);
  });

  it("shares, OTP, nonce and encoded root token appear only HMAC'd; the minted token itself not at all", async () => {
    const text = readFileSync(log, "utf8");
    for (const secret of [...srv.keys, otp, nonce, encoded, token])
      expect(text.includes(secret), `a secret in clear in the audit log`).toBe(false);
    // The records hold their HMACs: an auditor with the audit key (sys/audit-hash) can confirm what was used.
    const hash = async (input: string) =>
      (await srv.call("POST", "sys/audit-hash/config", { input }, token)).body.data.hash as string;
    const recs = records();
    const updates = recs.filter((r) => r.type === "request" && r.request.path === "sys/generate-root/update");
    expect(updates[1].request.data).toEqual({ key: await hash(srv.keys[0]), nonce: await hash(nonce) });
    expect(updates[2].request.data!.key).toBe(await hash(srv.keys[2]));
    const started = recs.find(
      (r) => r.type === "response" && r.request.operation === "update" && r.request.path.endsWith("attempt"),
    )!;
    expect(started.response!.data!.otp).toBe(await hash(otp));
    const done = recs.filter((r) => r.type === "response" && r.request.path === "sys/generate-root/update")[2];
    expect(done.response!.data!.encoded_root_token).toBe(await hash(encoded));
    expect(done.response!.data!.encoded_token).toMatch(HMAC);
    expect(done.response!.data!.complete).toBe(true); // booleans stay readable: the log says a root token was made
    expect((await srv.call("POST", "auth/token/revoke-self", {}, token)).status).toBe(204);
  });
});
