// Attack 9: deeply nested values. A KV value nested ~2,000 deep was accepted; once an audit device
// was enabled every read of it returned 500 (the audit HMAC walk recursed), and JSON nested 100k deep
// gave a 500. Now bodies nested deeper than 300 (Vault's max_json_depth default) are refused at parse
// time with a Vault-shaped 400, and the audit walk is iterative, so a deep value stored before the
// cap existed stays readable.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startTestRuntime, type TestRuntime } from "../support/runtime.js";
import { nestedJson } from "./support.js";

let rt: TestRuntime;
let dir: string;
beforeAll(async () => {
  rt = await startTestRuntime();
  dir = mkdtempSync(path.join(tmpdir(), "bk-sec-nest-"));
});
afterAll(async () => {
  await rt?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function rawPost(p: string, text: string) {
  const res = await fetch(`${rt.url}/v1/${p}`, {
    method: "POST",
    headers: { "x-vault-token": rt.rootToken, "content-type": "application/json" },
    body: text,
  });
  return { status: res.status, body: (await res.json()) as { errors?: string[] } };
}

describe("attack 9: nesting is capped at parse time", () => {
  it.each([2_000, 100_000])("a body nested %i deep is refused with 400, not 500", async (depth) => {
    const r = await rawPost("secret/data/deep", `{"data":${nestedJson(depth)}}`);
    expect(r.status).toBe(400);
    expect(r.body.errors).toEqual([expect.stringMatching(/JSON input exceeds allowed nesting depth/)]);
    expect((await rt.api("GET", "secret/data/deep")).status).toBe(404); // nothing was stored
  });

  it("arrays count as nesting too, and brackets inside strings do not", async () => {
    expect((await rawPost("secret/data/arr", `{"data":{"a":${"[".repeat(400)}1${"]".repeat(400)}}}`)).status).toBe(400);
    const text = JSON.stringify({ data: { s: "{[".repeat(5000) } });
    expect((await rawPost("secret/data/str", text)).status).toBe(200);
    expect((await rawPost("secret/data/ok", `{"data":${nestedJson(250)}}`)).status).toBe(200);
  });

  it("a deep value stored before the cap (not through HTTP) is still read with an audit device enabled", async () => {
    // Legacy data: written in-process, below the HTTP parser, as an older runtime would have stored it.
    let deep: unknown = "leaf-value";
    for (let i = 0; i < 2_500; i++) deep = { a: deep };
    const w = await rt.runtime.core.handle({
      method: "POST",
      path: "secret/data/legacy",
      query: {},
      body: { data: { deep } },
      headers: { "x-vault-token": rt.rootToken },
      clientIp: "127.0.0.1",
    });
    expect(w.status).toBe(200);
    const log = path.join(dir, "audit.log");
    expect((await rt.api("PUT", "sys/audit/file", { type: "file", options: { file_path: log } })).status).toBe(204);
    const r = await rt.api("GET", "secret/data/legacy");
    expect(r.status).toBe(200);
    const lines = readFileSync(log, "utf8").trim().split("\n");
    expect(lines.some((l) => l.includes('"type":"response"') && l.includes("secret/data/legacy"))).toBe(true);
    expect(readFileSync(log, "utf8")).not.toContain("leaf-value");
  });
});
