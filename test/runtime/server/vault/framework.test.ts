// The path-table router (runtime/server/vault/framework.ts): pattern match, field coercion by schema,
// Vault-shaped 400s naming the field, Vault's "ignored parameters" warning, URL captures winning over
// body fields, existence checks from the table — in isolation and through the real HTTP server.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryStorage } from "../../../../runtime/server/storage/memory.js";
import { LogicalError, type LogicalRequest, type Operation } from "../../../../runtime/server/vault/backend.js";
import { FieldData, PathRouter, segment } from "../../../../runtime/server/vault/framework.js";
import { startTestRuntime, type TestRuntime } from "../../../support/runtime.js";
import { registerNitrideEngines } from "../../../../runtime/server/nitride/register.js";

function request(operation: Operation, path: string, data: Record<string, unknown> = {}, query = {}): LogicalRequest {
  return {
    operation,
    path,
    data,
    query,
    storage: new MemoryStorage(),
    mountPoint: "t/",
    clientIp: "127.0.0.1",
    headers: {},
    system: {
      internalRequest: async () => undefined,
      ttls: () => ({ defaultTtl: 1, maxTtl: 1 }),
      apiAddr: () => "http://127.0.0.1",
      authorized: async () => {
        throw new Error("the framework tests make no ACL checks");
      },
    },
  };
}

const seen: FieldData[] = [];
const router = new PathRouter([
  {
    pattern: `things/${segment("name")}`,
    fields: {
      name: { type: "string", description: "name" },
      count: { type: "int", default: 3, description: "an int" },
      on: { type: "bool", description: "a bool" },
      ttl: { type: "duration", description: "a duration" },
      tags: { type: "comma-string-slice", description: "a list" },
      labels: { type: "kv-pairs", description: "string map" },
      must: { type: "string", required: true, description: "required on writes" },
    },
    existenceCheck: async (_req, f) => f.string("name") === "old",
    operations: {
      update: async (_req, f) => {
        seen.push(f);
        return {};
      },
      read: async (_req, f) => ({ data: { name: f.string("name"), count: f.int("count") } }),
    },
  },
]);

describe("path-table router", () => {
  it("coerces fields by type and applies defaults", async () => {
    seen.length = 0;
    await router.handle(
      request("update", "things/a", { must: "x", on: "true", ttl: "1h30m", tags: "a, b,,c", count: "7" }),
    );
    const f = seen[0];
    expect([f.bool("on"), f.duration("ttl"), f.list("tags"), f.int("count")]).toEqual([true, 5400, ["a", "b", "c"], 7]);
    await router.handle(request("update", "things/a", { must: "x" }));
    expect(seen[1].int("count")).toBe(3);
    expect(seen[1].has("count")).toBe(false);
  });

  it("an ill-typed field is a 400 naming the field", async () => {
    for (const [body, msg] of [
      [{ count: "seven" }, "count: must be an integer"],
      [{ count: 1.5 }, "count: must be an integer"],
      [{ on: "yes" }, "on: must be a boolean"],
      [{ ttl: "soon" }, "ttl: invalid duration 'soon'"],
      [{ tags: [1, 2] }, "tags: must be a list of strings or a comma-separated string"],
      [{ labels: { a: 1 } }, "labels.a: must be a string"],
      [{ labels: ["a"] }, "labels: must be an object"],
      [{ must: "" }, "must: missing"],
    ] as const) {
      const err = await router.handle(request("update", "things/a", { must: "x", ...body })).catch((e) => e);
      expect(err, JSON.stringify(body)).toBeInstanceOf(LogicalError);
      expect([(err as LogicalError).status, (err as LogicalError).message]).toEqual([400, msg]);
    }
  });

  it("unknown fields are ignored with Vault's warning; URL captures win over the body", async () => {
    seen.length = 0;
    const r = await router.handle(request("update", "things/a", { must: "x", zeta: 1, alpha: 2, name: "evil" }));
    expect(seen[0].string("name")).toBe("a");
    expect(seen[0].has("zeta")).toBe(false);
    expect(r!.warnings).toEqual([
      "Endpoint ignored these unrecognized parameters: [alpha zeta]",
      "Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [name]",
    ]);
  });

  it("reads take their fields from the query; `list` belongs to the HTTP layer", async () => {
    const r = await router.handle(request("read", "things/b", {}, { count: "9", list: "true" }));
    expect(r).toEqual({ data: { name: "b", count: 9 } });
  });

  it("existence checks come from the table; unknown paths and operations are undefined (404)", async () => {
    expect(await router.existenceCheck(request("update", "things/old"))).toBe(true);
    expect(await router.existenceCheck(request("update", "things/new"))).toBe(false);
    expect(await router.existenceCheck(request("update", "nope"))).toBe(true);
    expect(await router.handle(request("read", "nope"))).toBeUndefined();
    expect(await router.handle(request("delete", "things/a"))).toBeUndefined();
    expect(await router.handle(request("read", "things/a/b"))).toBeUndefined();
  });

  it("a capture without a field schema is a coding error caught at construction", () => {
    expect(() => new PathRouter([{ pattern: `x/${segment("id")}`, operations: {} }])).toThrow(/capture id/);
  });
});

describe("path-table router over HTTP (auth/jwt)", () => {
  let rt: TestRuntime;
  beforeAll(async () => {
    rt = await startTestRuntime({
      register: (r) => registerNitrideEngines(r),
      auth: { "jwt/": { type: "jwt" } },
      mounts: { "transit/": { type: "transit" }, "pki/": { type: "pki" }, "ssh/": { type: "ssh" } },
    });
  });
  afterAll(async () => {
    await rt?.close();
  });

  it("a hostile client gets a 400 naming the ill-typed field, and nothing is stored", async () => {
    const bad = await rt.api("POST", "auth/jwt/role/r", { bound_subject: "s", token_ttl: { evil: true } });
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual({ errors: ["token_ttl: invalid duration '[object Object]'"] });
    expect((await rt.api("GET", "auth/jwt/role/r")).status).toBe(404);
  });

  it("every engine validates through its table: ill-typed fields are 400s naming the field, nothing changes", async () => {
    const cases: Array<[string, Record<string, unknown>, string, string]> = [
      ["secret/config", { cas_required: "yes" }, "cas_required: must be a boolean", "secret/config"],
      ["secret/data/app", { data: { a: "1" }, options: {}, version: "x" }, "version: must be an integer", ""],
      ["transit/keys/k", { exportable: "sometimes" }, "exportable: must be a boolean", "transit/keys/k"],
      [
        "pki/roles/r",
        { allowed_domains: [1] },
        "allowed_domains: must be a list of strings or a comma-separated string",
        "pki/roles/r",
      ],
      [
        "ssh/roles/r",
        { default_extensions: { "permit-pty": true } },
        "default_extensions.permit-pty: must be a string",
        "ssh/roles/r",
      ],
      ["auth/token/create", { num_uses: "many" }, "num_uses: must be an integer", ""],
      ["sys/mounts/kv2/tune", { max_lease_ttl: "forever" }, "max_lease_ttl: invalid duration 'forever'", ""],
      ["nitride/config", { accept_simulated: "please" }, "accept_simulated: must be a boolean", "nitride/config"],
      [
        "nitride/workloads/w",
        { platforms: { snp: true } },
        "platforms: must be a list of strings or a comma-separated string",
        "nitride/workloads/w",
      ],
    ];
    const state = async (path: string) => {
      const r = await rt.api("GET", path);
      return [r.status, r.body?.data ?? r.body?.errors];
    };
    const before: Record<string, unknown> = {};
    for (const [, , , read] of cases) if (read) before[read] = await state(read);
    for (const [path, body, msg] of cases) {
      const r = await rt.api("POST", path, body);
      expect([r.status, r.body], path).toEqual([400, { errors: [msg] }]);
    }
    for (const [, , , read] of cases) if (read) expect(await state(read), read).toEqual(before[read]);
  });

  it("an unknown field is ignored and named in the response's warnings", async () => {
    const r = await rt.api("POST", "auth/jwt/role/r", { bound_subject: "s", token_tll: "1h" });
    expect(r.status).toBe(200);
    expect(r.body.warnings).toEqual(["Endpoint ignored these unrecognized parameters: [token_tll]"]);
    expect((await rt.api("GET", "auth/jwt/role/r")).body.data.token_ttl).toBe(0);
  });
});
