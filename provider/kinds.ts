// The runtime objects the Pulumi provider manages, as plain data: for each kind, where it lives in the
// API, which input fields it has, the request body, and how to read it back. No Pulumi imports, so the
// same table drives the dynamic provider (provider/handlers.ts) and the tests.

/** A field of a resource: its Pulumi (camelCase) name, its API (snake_case) name and its type. */
export interface FieldSpec {
  name: string;
  api: string;
  type: "string" | "boolean" | "integer" | "duration" | "list" | "stringMap" | "object" | "objectList";
  /** Default applied by check() when the field is absent. */
  default?: unknown;
}

export interface KindSpec {
  /** Resource class name (e.g. "Workload"), used in messages. */
  typeName: string;
  /** Fields that identify the object: changing one replaces the resource. */
  identity: FieldSpec[];
  /** Settable fields sent in the body. */
  fields: FieldSpec[];
  /** API path (under /v1/) of the object, from checked inputs. */
  path(inputs: Record<string, unknown>): string;
  /** Path read back (GET), when it differs from path(); fromApi then picks the object out of it. */
  readPath?(inputs: Record<string, unknown>): string;
  /** Path used to delete, when it differs (KV v2 deletes all versions via metadata/). */
  deletePath?(inputs: Record<string, unknown>): string;
  /**
   * Path DELETEd instead when deletePath answers 403: the deployer may not destroy a KV secret's versions
   * (metadata delete), only soft-delete the current one, which an operator can undelete.
   */
  softDeletePath?(inputs: Record<string, unknown>): string;
  /** Request body from checked inputs. */
  body(inputs: Record<string, unknown>): Record<string, unknown>;
  /** Field values (Pulumi names) from a GET response's data; empty when the object is not there. */
  fromApi(data: Record<string, unknown>, inputs: Record<string, unknown>): Record<string, unknown>;
  /** Resource id. */
  id(inputs: Record<string, unknown>): string;
  /**
   * The runtime bumps a version on every write: refresh treats a changed version as drift and only then
   * takes the runtime's field values (it normalises them, so comparing fields would invent drift).
   */
  versioned?: boolean;
  /**
   * For credentials that may write but not read the object (the deployer and KV secret values): where to
   * read its metadata instead when the read path answers 403, and the fields (version) found there.
   */
  metadataRead?: {
    path(inputs: Record<string, unknown>): string;
    fromApi(data: Record<string, unknown>): Record<string, unknown>;
    /** Fields that cannot be read back: dropped from state on drift so the next `up` writes them again. */
    writeOnly: string[];
  };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const PATH = /^[A-Za-z0-9][A-Za-z0-9._\-/]{0,511}$/;
export const namePattern = NAME;
export const pathPattern = PATH;
/** Nitride's limit (runtime/nitride/workloads.ts). */
export const workloadIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

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
function roleKind(
  typeName: string,
  mountDefault: string,
  prefix: (mount: string) => string,
  fields: FieldSpec[],
): KindSpec {
  const identity = [f("mount", "string", mountDefault), f("name", "string")];
  return {
    typeName,
    identity,
    fields,
    path: (i) => `${prefix(String(i.mount))}/${String(i.name)}`,
    body: (i) => snakeBody(fields, i),
    fromApi: (d) => camelFromApi(fields, d),
    id: (i) => `${prefix(String(i.mount))}/${String(i.name)}`,
  };
}

/** A secrets-engine or auth-method mount: created once, replaced on any change (Vault cannot retype a mount). */
function mountKind(typeName: string, base: "sys/mounts" | "sys/auth"): KindSpec {
  return {
    typeName,
    identity: [f("path", "string"), f("type", "string"), f("options", "stringMap", {})],
    fields: [],
    path: (i) => `${base}/${String(i.path)}`,
    readPath: () => base,
    body: (i) => ({ type: i.type, options: i.options ?? {} }),
    fromApi(d, i) {
      const m = d[`${String(i.path)}/`] as { type?: string; options?: Record<string, string> | null } | undefined;
      return m ? { type: m.type, options: m.options ?? {} } : {};
    },
    id: (i) => `${base}/${String(i.path)}`,
  };
}

export const kinds: Record<string, KindSpec> = {
  mount: mountKind("Mount", "sys/mounts"),
  authMount: mountKind("AuthMount", "sys/auth"),
  // Nitride workload definition (runtime/nitride/workloads.ts): what the VM must measure as, and what
  // it may fetch once attested. Every write is a new runtime-side version.
  workload: {
    typeName: "Workload",
    identity: [f("workloadId", "string", undefined, "id")],
    fields: [
      f("description", "string"),
      f("platforms", "list", []),
      f("snpMeasurements", "list"),
      f("tdx", "objectList"),
      f("azure", "stringMap"),
      f("userDataSha256", "string"),
      f("policy", "object"),
      f("kvSecrets", "list"),
      f("pki", "object"),
      f("ssh", "object"),
      f("diskKey", "boolean"),
      f("tokenTtl", "duration"),
      f("requirePqHybrid", "boolean"),
      f("tokenAlgorithm", "string"),
    ],
    path: (i) => `nitride/workloads/${String(i.workloadId)}`,
    body(i) {
      const secrets: Record<string, unknown> = { kv: i.kvSecrets ?? [], disk_key: i.diskKey ?? false };
      const pki = i.pki as
        { role?: string; commonName?: string; altNames?: string[]; ipSans?: string[]; ttl?: unknown } | undefined;
      if (pki)
        secrets.pki = {
          role: pki.role,
          common_name: pki.commonName,
          alt_names: pki.altNames ?? [],
          ip_sans: pki.ipSans ?? [],
          ...(pki.ttl !== undefined ? { ttl: pki.ttl } : {}),
        };
      const ssh = i.ssh as { role?: string; principals?: string[]; ttl?: unknown } | undefined;
      if (ssh)
        secrets.ssh = {
          role: ssh.role,
          principals: ssh.principals ?? [],
          ...(ssh.ttl !== undefined ? { ttl: ssh.ttl } : {}),
        };
      const body: Record<string, unknown> = {
        description: i.description ?? "",
        platforms: i.platforms ?? [],
        reference_values: {
          snp_measurements: i.snpMeasurements ?? [],
          tdx: i.tdx ?? [],
          azure: i.azure ?? {},
          ...(i.userDataSha256 !== undefined ? { user_data_sha256: i.userDataSha256 } : {}),
        },
        policy: i.policy ?? {},
        secrets,
      };
      if (i.tokenTtl !== undefined) body.token_ttl = i.tokenTtl;
      if (i.requirePqHybrid === true) body.require_pq_hybrid = true;
      if (i.tokenAlgorithm !== undefined) body.token_algorithm = i.tokenAlgorithm;
      return body;
    },
    fromApi(d) {
      // The runtime normalises what it stores (hex case, defaults), so field-by-field comparison would
      // report drift that is not there. Its version number changes on every write instead: read()
      // compares that, and only then takes the fields below.
      const rv = (d.reference_values ?? {}) as {
        snp_measurements?: string[];
        tdx?: unknown[];
        azure?: Record<string, string>;
        user_data_sha256?: string;
      };
      const sec = (d.secrets ?? {}) as {
        kv?: string[];
        disk_key?: boolean;
        pki?: Record<string, unknown>;
        ssh?: Record<string, unknown>;
      };
      const out: Record<string, unknown> = {
        description: d.description,
        platforms: d.platforms,
        snpMeasurements: rv.snp_measurements,
        tdx: rv.tdx,
        azure: rv.azure,
        ...(rv.user_data_sha256 !== undefined ? { userDataSha256: rv.user_data_sha256 } : {}),
        policy: d.policy,
        kvSecrets: sec.kv,
        diskKey: sec.disk_key,
        tokenTtl: d.token_ttl,
        ...(d.require_pq_hybrid === true ? { requirePqHybrid: true } : {}),
        ...(d.token_algorithm !== undefined ? { tokenAlgorithm: d.token_algorithm } : {}),
      };
      if (sec.pki)
        out.pki = {
          role: sec.pki.role,
          commonName: sec.pki.common_name,
          altNames: sec.pki.alt_names,
          ipSans: sec.pki.ip_sans,
          ttl: sec.pki.ttl,
        };
      if (sec.ssh) out.ssh = { role: sec.ssh.role, principals: sec.ssh.principals, ttl: sec.ssh.ttl };
      if (typeof d.version === "number") out.version = d.version;
      if (typeof d.policy_hash === "string") out.policyHash = d.policy_hash;
      if (typeof d.acl_policy === "string") out.aclPolicy = d.acl_policy;
      return out;
    },
    versioned: true,
    id: (i) => String(i.workloadId),
  },
  // A KV v2 secret (all keys of one path). Values are Pulumi secrets end to end.
  secret: {
    typeName: "Secret",
    identity: [f("mount", "string", "secret"), f("path", "string")],
    fields: [f("data", "stringMap")],
    path: (i) => `${String(i.mount)}/data/${String(i.path)}`,
    deletePath: (i) => `${String(i.mount)}/metadata/${String(i.path)}`,
    softDeletePath: (i) => `${String(i.mount)}/data/${String(i.path)}`,
    body: (i) => ({ data: i.data }),
    fromApi(d) {
      const meta = (d.metadata ?? {}) as { version?: unknown; deletion_time?: unknown; destroyed?: unknown };
      if (meta.destroyed === true || (typeof meta.deletion_time === "string" && meta.deletion_time !== "")) return {};
      const out: Record<string, unknown> = { data: d.data ?? {} };
      if (typeof meta.version === "number") out.version = meta.version;
      return out;
    },
    id: (i) => `${String(i.mount)}/${String(i.path)}`,
    metadataRead: {
      path: (i) => `${String(i.mount)}/metadata/${String(i.path)}`,
      fromApi(d) {
        const cur = d.current_version;
        if (typeof cur !== "number" || cur < 1) return {};
        const v = (d.versions as Record<string, { deletion_time?: string; destroyed?: boolean }> | undefined)?.[
          String(cur)
        ];
        if (v?.destroyed === true || (typeof v?.deletion_time === "string" && v.deletion_time !== "")) return {};
        return { version: cur };
      },
      writeOnly: ["data"],
    },
  },
  // ACL policy (HCL) that JWT roles grant to attested workloads.
  policy: {
    typeName: "Policy",
    identity: [f("name", "string")],
    fields: [f("policy", "string")],
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
