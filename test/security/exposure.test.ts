// Attack 11, smaller exposures: runtime.db/-wal/-shm were created 0644 (their storage keys reveal KV
// paths and token accessors); numeric KV values appeared unhashed in the audit log; error text went
// unhashed into the audit `error` field (a policy-parse error echoed the submitted text); a
// storage-corruption error returned the internal storage key to the client.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startTestRuntime, type TestRuntime } from "../support/runtime.js";
import { MemoryStorage } from "../../runtime/server/storage/memory.js";
import { startRuntimeServer, type ServerUnderAttack } from "./support.js";

describe("attack 11: the SQLite files are owner-only (runtime server, workers = 2)", () => {
  let srv: ServerUnderAttack;
  beforeAll(async () => {
    srv = await startRuntimeServer({ workers: 2 });
  }, 60_000);
  afterAll(async () => {
    await srv?.close();
  });

  it("runtime.db, -wal and -shm are 0600 and the data directory 0700", async () => {
    expect((await srv.call("PUT", "secret/data/x", { data: { a: "b" } }, srv.root)).status).not.toBe(500);
    const db = path.join(srv.dir, "data/runtime.db");
    for (const f of [db, `${db}-wal`, `${db}-shm`]) expect((statSync(f).mode & 0o777).toString(8), f).toBe("600");
    expect((statSync(path.dirname(db)).mode & 0o777).toString(8)).toBe("700");
  });
});

describe("attack 11: audit records and error bodies (runtime dev)", () => {
  let rt: TestRuntime;
  let storage: MemoryStorage;
  let dir: string;
  let log: string;
  beforeAll(async () => {
    storage = new MemoryStorage();
    rt = await startTestRuntime({ storage });
    dir = mkdtempSync(path.join(tmpdir(), "bk-sec-exp-"));
    log = path.join(dir, "audit.log");
    expect((await rt.api("PUT", "sys/audit/file", { type: "file", options: { file_path: log } })).status).toBe(204);
  });
  afterAll(async () => {
    await rt?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("numeric KV values are HMAC'd in the audit log", async () => {
    expect((await rt.api("PUT", "secret/data/pin", { data: { pin: 90417263, ratio: 0.7131, ok: true } })).status).toBe(
      200,
    );
    expect((await rt.api("GET", "secret/data/pin")).body.data.data.pin).toBe(90417263);
    const text = readFileSync(log, "utf8");
    expect(text).not.toContain("90417263");
    expect(text).not.toContain("0.7131");
    const hash = (await rt.api("POST", "sys/audit-hash/file", { input: "90417263" })).body.data.hash;
    expect(text).toContain(hash);
  });

  it("error text is HMAC'd in the audit `error` field; fixed refusals stay readable", async () => {
    const marker = "leakedSecretWord";
    const r = await rt.api("PUT", "sys/policies/acl/bad", { policy: `${marker} = "x"` });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).toContain(marker); // the caller sees its own error
    const text = readFileSync(log, "utf8");
    expect(text).not.toContain(marker);
    const rec = text
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .find((x) => x.type === "response" && x.request.path === "sys/policies/acl/bad");
    expect(rec.error).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(rec.error).toBe((await rt.api("POST", "sys/audit-hash/file", { input: r.body.errors[0] })).body.data.hash);
    expect((await rt.api("GET", "secret/data/pin", undefined, "hvs.not-a-token")).status).toBe(403);
    const denied = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .pop();
    expect(denied.error).toBe("permission denied");
  });

  it("a storage-corruption error does not return the internal storage key", async () => {
    expect((await rt.api("PUT", "secret/data/fragile", { data: { v: "x" } })).status).toBe(200);
    const keys = [...(storage as unknown as { data: Map<string, Buffer> }).data.keys()].filter((k) =>
      k.startsWith("logical/"),
    );
    // Flip a byte in every version row of the mount (the one just written among them).
    const rows = keys.filter((k) => k.includes("/ver/") || k.includes("versions"));
    expect(rows.length).toBeGreaterThan(0);
    for (const k of rows) {
      const v = Buffer.from((await storage.get(k))!);
      v[v.length - 5] ^= 0x01;
      await storage.put(k, v);
    }
    const r = await rt.api("GET", "secret/data/fragile");
    expect(r.status).toBe(500);
    expect(r.body.errors[0]).toMatch(/^storage corruption/);
    const body = JSON.stringify(r.body);
    for (const k of rows) expect(body).not.toContain(k);
    expect(body).not.toMatch(/logical\/|sys\/token|\/ver\//);
  });
});
