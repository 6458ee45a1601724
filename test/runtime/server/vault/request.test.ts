// The canonical request (runtime/server/vault/request.ts): one path value that mount lookup, ACL,
// sudo rules, routing and audit all use — a hostile client cannot make two steps see different paths.
import { describe, expect, it } from "vitest";
import { canonicalRequest, type CanonicalRequest } from "../../../../runtime/server/vault/request.js";

const raw = (method: string, path: string, extra: { query?: Record<string, string>; body?: unknown } = {}) => ({
  method,
  path,
  query: extra.query ?? {},
  body: extra.body,
  headers: { authorization: "Bearer t0k" },
  clientIp: "127.0.0.1",
});

describe("canonical request", () => {
  it("collapses leading and repeated slashes; list paths end in one slash", () => {
    const r = canonicalRequest(raw("GET", "//secret///data//app"), "id") as CanonicalRequest;
    expect([r.path, r.bare, r.operation, r.token]).toEqual(["secret/data/app", "secret/data/app", "read", "t0k"]);
    const l = canonicalRequest(raw("GET", "secret//metadata", { query: { list: "true" } }), "id") as CanonicalRequest;
    expect([l.path, l.bare, l.operation]).toEqual(["secret/metadata/", "secret/metadata", "list"]);
    const s = canonicalRequest(raw("POST", "/sys//seal/"), "id") as CanonicalRequest;
    expect([s.path, s.bare, s.operation]).toEqual(["sys/seal/", "sys/seal", "update"]);
  });

  it("refuses unsupported methods and non-object bodies before any other step", () => {
    expect(canonicalRequest(raw("TRACE", "sys/health"), "id")).toEqual({
      status: 405,
      body: { errors: ["unsupported operation"] },
    });
    expect(canonicalRequest(raw("POST", "secret/data/a", { body: [1] }), "id")).toEqual({
      status: 400,
      body: { errors: ["request body must be a JSON object"] },
    });
  });
});
