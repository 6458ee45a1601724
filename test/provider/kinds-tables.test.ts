// provider/kinds.ts against the runtime's path tables (runtime/server/vault/framework.ts): every
// resource kind's paths exist with the operations the provider uses, every field it sends is in the
// path's schema, and its type is one the schema accepts. A rename or retype on either side fails here.
import { describe, expect, it } from "vitest";
import { kinds, type FieldSpec, type KindSpec } from "../../provider/kinds.js";
import type { Operation } from "../../runtime/server/vault/backend.js";
import type { CoreView } from "../../runtime/server/vault/core-view.js";
import { coerceField, type FieldType, type PathRouter } from "../../runtime/server/vault/framework.js";
import { SystemBackend } from "../../runtime/server/vault/sys-backend.js";
import { KvV2Backend } from "../../runtime/server/vault/engines/kv.js";
import { PkiBackend } from "../../runtime/server/vault/engines/pki.js";
import { SshBackend } from "../../runtime/server/vault/engines/ssh.js";
import { JwtAuthBackend } from "../../runtime/server/vault/auth-jwt.js";
import { NitrideBackend } from "../../runtime/server/nitride/backend.js";

/** Where each kind's default mount lives in a runtime, and the engine's table there. */
const mounts: Array<{ prefix: string; router: PathRouter }> = [
  { prefix: "sys/", router: new SystemBackend({} as CoreView).router },
  { prefix: "nitride/", router: new NitrideBackend().router },
  { prefix: "secret/", router: new KvV2Backend().router },
  { prefix: "pki/", router: new PkiBackend().router },
  { prefix: "ssh/", router: new SshBackend().router },
  { prefix: "auth/jwt/", router: new JwtAuthBackend().router },
];

/** The schema types that accept what the provider sends for each of its field types. */
const compatible: Record<FieldSpec["type"], FieldType[]> = {
  // Vault's SSH roles take allowed_users & co. as one comma-separated string.
  string: ["string", "comma-string-slice", "any"],
  boolean: ["bool", "any"],
  integer: ["int", "any"],
  duration: ["duration", "any"],
  list: ["comma-string-slice", "any"],
  stringMap: ["kv-pairs", "map", "any"],
  object: ["map", "any"],
  objectList: ["any"],
};

const samples: Record<FieldSpec["type"], unknown> = {
  string: "s",
  boolean: true,
  integer: 256,
  duration: "1h",
  list: ["a", "b"],
  stringMap: { k: "v" },
  object: {},
  objectList: [],
};

/** Checked-looking inputs: every identity and settable field set to a sample of its type. */
function sampleInputs(kind: KindSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of [...kind.identity, ...kind.fields]) out[f.name] = f.default ?? samples[f.type];
  for (const f of kind.identity) if (f.type === "string" && f.default === undefined) out[f.name] = "sample";
  return out;
}

function route(fullPath: string) {
  const m = mounts.find((x) => fullPath.startsWith(x.prefix));
  if (!m) throw new Error(`no runtime table for ${fullPath}`);
  const rel = fullPath.slice(m.prefix.length).replace(/\/+$/, "");
  const hit = m.router.match(rel);
  return { hit, rel };
}

function expectOperation(fullPath: string, op: Operation) {
  const { hit, rel } = route(fullPath);
  expect(hit, `${fullPath}: no path in the runtime's table matches "${rel}"`).toBeDefined();
  const ops = hit!.spec.operations;
  const has = op === "update" ? (ops.update ?? ops.create) : ops[op];
  expect(has, `${fullPath}: the runtime's path "${hit!.spec.pattern}" has no ${op}`).toBeDefined();
  return hit!;
}

describe("provider kinds against the runtime's path tables", () => {
  for (const [name, kind] of Object.entries(kinds)) {
    it(`${name}: paths, operations and fields exist in the runtime with compatible types`, () => {
      const inputs = sampleInputs(kind);
      const write = expectOperation(kind.path(inputs), "update");
      expectOperation(kind.readPath?.(inputs) ?? kind.path(inputs), "read");
      expectOperation(kind.deletePath?.(inputs) ?? kind.path(inputs), "delete");

      const schema = write.spec.fields ?? {};
      const body = kind.body(inputs);
      for (const [field, value] of Object.entries(body)) {
        const s = schema[field];
        expect(s, `${kind.typeName}: the runtime's "${write.spec.pattern}" has no field "${field}"`).toBeDefined();
        expect(() => coerceField(field, s, value), `${kind.typeName}.${field}`).not.toThrow();
      }
      // Declared types, for fields sent at the top level of the body.
      for (const f of kind.fields) {
        if (!(f.api in body) || !schema[f.api]) continue;
        expect(
          compatible[f.type],
          `${kind.typeName}.${f.name}: provider ${f.type} vs runtime ${schema[f.api].type}`,
        ).toContain(schema[f.api].type);
      }
    });
  }

  it("a drifted field name fails (the check can fail)", () => {
    const write = expectOperation("pki/roles/x", "update");
    expect(write.spec.fields?.["allowed_domain"]).toBeUndefined();
    expect(write.spec.fields?.["allowed_domains"]?.type).toBe("comma-string-slice");
    expect(compatible.boolean).not.toContain(write.spec.fields!["allowed_domains"].type);
  });
});
