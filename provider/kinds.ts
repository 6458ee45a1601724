// The runtime objects the Pulumi provider manages, as plain data: for each kind, where it lives in the
// API, which input fields it has, the request body, and how to read it back. No Pulumi imports, so the
// same table drives the dynamic provider (provider/handlers.ts) and the tests.

/** A field of a resource: its Pulumi (camelCase) name, its API (snake_case) name and its type. */
export interface FieldSpec {
  name: string;
  api: string;
  type: "string" | "boolean" | "integer" | "duration" | "list" | "stringMap" | "object";
  /** Default applied by check() when the field is absent. */
  default?: unknown;
}

export interface KindSpec {
  /** Pulumi type name under buckypaper:index: (e.g. "Workload"). */
  typeName: string;
  /** Fields that identify the object: changing one replaces the resource. */
  identity: FieldSpec[];
  /** Settable fields sent in the body. */
  fields: FieldSpec[];
  /** Fields whose values are secrets (also forced secret in state by the resource class). */
  secretFields: string[];
  /** API path (under /v1/) of the object, from checked inputs. */
  path(inputs: Record<string, unknown>): string;
  /** Path used to delete, when it differs (KV v2 deletes all versions via metadata/). */
  deletePath?(inputs: Record<string, unknown>): string;
  /** Request body from checked inputs. */
  body(inputs: Record<string, unknown>): Record<string, unknown>;
  /** Field values (Pulumi names) from a GET response's data, or undefined when the object is gone. */
  fromApi(data: Record<string, unknown>, inputs: Record<string, unknown>): Record<string, unknown>;
  /** Resource id. */
  id(inputs: Record<string, unknown>): string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const PATH = /^[A-Za-z0-9][A-Za-z0-9._\-/]{0,511}$/;
export const namePattern = NAME;
export const pathPattern = PATH;

function f(name: string, type: FieldSpec["type"], dflt?: unknown, api?: string): FieldSpec {
  return { name, api: api ?? name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), type, default: dflt };
}

/** Body from the settable fields: camelCase → snake_case, undefined dropped. */
function snakeBody(fields: FieldSpec[], inputs: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const fs of fields) if (inputs[fs.name] !== undefined) out[fs.api] = inputs[fs.name];
  return out;
}

function camelFromApi(fields: FieldSpec[], data: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const fs of fields) if (data[fs.api] !== undefined) out[fs.name] = data[fs.api];
  return out;
}

/** Role-shaped objects: POST <prefix>/<name> with snake_case fields, GET returns them in data. */
function roleKind(typeName: string, mountDefault: string, prefix: (mount: string) => string, fields: FieldSpec[]): KindSpec {
  const identity = [f("mount", "string", mountDefault), f("name", "string")];
  return {
    typeName,
    identity,
    fields,
    secretFields: [],
    path: (i) => `${prefix(String(i.mount))}/${String(i.name)}`,
    body: (i) => snakeBody(fields, i),
    fromApi: (d) => camelFromApi(fields, d),
    id: (i) => `${prefix(String(i.mount))}/${String(i.name)}`,
  };
}

export const kinds: Record<string, KindSpec> = {
  // Nitride workload definition: what the VM must measure as, and what it may fetch once attested.
  workload: {
    typeName: "Workload",
    identity: [f("workloadId", "string", undefined, "id")],
    fields: [
      f("platform", "string"),
      f("referenceValues", "object"),
      f("policy", "object"),
      f("secrets", "list", []),
      f("pkiRoles", "list", []),
      f("sshRoles", "list", []),
      f("description", "string"),
    ],
    secretFields: [],
    path: (i) => `nitride/workloads/${String(i.workloadId)}`,
    body(i) {
      return snakeBody(this.fields, i);
    },
    fromApi(d) {
      // The runtime may answer with the definition at top level of data or under `definition`, and
      // adds bookkeeping (version, timestamps) that is not ours to diff.
      const def = d.definition && typeof d.definition === "object" ? (d.definition as Record<string, unknown>) : d;
      const out = camelFromApi(this.fields, def);
      if (typeof d.version === "number") out.version = d.version;
      return out;
    },
    id: (i) => String(i.workloadId),
  },
  // A KV v2 secret (all keys of one path). Values are Pulumi secrets end to end.
  secret: {
    typeName: "Secret",
    identity: [f("mount", "string", "secret"), f("path", "string")],
    fields: [f("data", "stringMap")],
    secretFields: ["data"],
    path: (i) => `${String(i.mount)}/data/${String(i.path)}`,
    deletePath: (i) => `${String(i.mount)}/metadata/${String(i.path)}`,
    body: (i) => ({ data: i.data }),
    fromApi(d) {
      const meta = (d.metadata ?? {}) as { version?: unknown; deletion_time?: unknown; destroyed?: unknown };
      if (meta.destroyed === true || (typeof meta.deletion_time === "string" && meta.deletion_time !== "")) return {};
      const out: Record<string, unknown> = { data: d.data ?? {} };
      if (typeof meta.version === "number") out.version = meta.version;
      return out;
    },
    id: (i) => `${String(i.mount)}/${String(i.path)}`,
  },
  // ACL policy (HCL) that JWT roles grant to attested workloads.
  policy: {
    typeName: "Policy",
    identity: [f("name", "string")],
    fields: [f("policy", "string")],
    secretFields: [],
    path: (i) => `sys/policies/acl/${String(i.name)}`,
    body: (i) => ({ policy: i.policy }),
    fromApi: (d) => (typeof d.policy === "string" ? { policy: d.policy } : {}),
    id: (i) => String(i.name),
  },
  pkiRole: roleKind("PkiRole", "pki", (m) => `${m}/roles`, [
    f("allowedDomains", "list"),
    f("allowSubdomains", "boolean"),
    f("allowBareDomains", "boolean"),
    f("allowIpSans", "boolean"),
    f("allowLocalhost", "boolean"),
    f("serverFlag", "boolean"),
    f("clientFlag", "boolean"),
    f("keyType", "string"),
    f("keyBits", "integer"),
    f("ttl", "duration"),
    f("maxTtl", "duration"),
  ]),
  sshRole: roleKind("SshRole", "ssh", (m) => `${m}/roles`, [
    f("keyType", "string", "ca"),
    f("allowUserCertificates", "boolean"),
    f("allowHostCertificates", "boolean"),
    f("allowedUsers", "string"),
    f("defaultUser", "string"),
    f("allowedDomains", "string"),
    f("allowSubdomains", "boolean"),
    f("allowBareDomains", "boolean"),
    f("defaultExtensions", "stringMap"),
    f("allowedExtensions", "string"),
    f("ttl", "duration"),
    f("maxTtl", "duration"),
  ]),
  jwtRole: roleKind("JwtRole", "jwt", (m) => `auth/${m}/role`, [
    f("roleType", "string", "jwt"),
    f("boundAudiences", "list"),
    f("userClaim", "string", "sub"),
    f("boundSubject", "string"),
    f("boundClaims", "object"),
    f("boundClaimsType", "string"),
    f("claimMappings", "stringMap"),
    f("tokenPolicies", "list"),
    f("tokenTtl", "duration"),
    f("tokenMaxTtl", "duration"),
  ]),
};

export type KindName = keyof typeof kinds;
