// Workload definitions: what a workload must prove (reference values + appraisal policy) and what it
// gets once it has (KV secrets, a PKI role, an SSH role, a disk key). Every change is a new version;
// old versions stay readable so an audit record's ref_version can be resolved later.
import { createHash, randomUUID } from "node:crypto";
import { LogicalError } from "../vault/backend.js";
import type { Platform } from "../../attestation/types.js";
import { parseSecretRef } from "../../protocol/secret-ref.js";
import { WireFormatError } from "../../protocol/errors.js";
import { parsePolicy, PolicyError, type Policy } from "../../attestation/policy.js";
import type { StorageReader, StorageWriter } from "../storage/types.js";
import { jsonBytes, optBool, optList, optString, readJson } from "../vault/fields.js";
import { parseDuration } from "./duration.js";
import { MAX_TOKEN_TTL_S, tokenAlgorithmField, type TokenAlgorithm } from "./config.js";

export interface TdxReference {
  mrtd: string;
  rtmrs?: string[];
}

export interface WorkloadDefinition {
  description: string;
  /** Platforms the workload may attest from; empty = any. */
  platforms: Platform[];
  reference_values: {
    /** Allowed SNP MEASUREMENTs (48-byte hex). */
    snp_measurements: string[];
    /** Allowed TDX MRTD (+ optional RTMR0..3) combinations. */
    tdx: TdxReference[];
    /** Azure facts: claim name in the verdict's extra claims → expected value. */
    azure: Record<string, string>;
    /** SHA-256 (hex) of the user-data the deployment rendered: the enclaivelet binds the hash of the
     *  user-data it booted with into REPORT_DATA, so changed or injected user-data is refused. */
    user_data_sha256?: string;
  };
  /** Appraisal policy (runtime/attestation/policy.ts); reference values are merged into it. */
  policy: Policy;
  secrets: {
    /** Full KV v2 API paths, e.g. "secret/data/web/db". */
    kv: string[];
    pki?: { role: string; common_name: string; alt_names: string[]; ip_sans: string[]; ttl?: number };
    ssh?: { role: string; principals: string[]; ttl?: number };
    disk_key: boolean;
  };
  /** Workload-token lifetime (seconds); falls back to the Nitride config. */
  token_ttl?: number;
  /**
   * Refuse classical-only (P-384) attestations: the workload must bind an ML-KEM-768 key too, so everything
   * released to it is sealed with the hybrid ML-KEM-768 + P-384 KEM (runtime/protocol/hybrid-seal.ts).
   * Only stored when true, so existing definitions keep their policy hash.
   */
  require_pq_hybrid?: boolean;
  /**
   * This workload's tokens are signed with this algorithm instead of the config's token_algorithm
   * (e.g. ML-DSA-65 for a relying party that verifies post-quantum signatures). Only stored when set.
   */
  token_algorithm?: TokenAlgorithm;
}

export interface WorkloadRecord {
  id: string;
  /**
   * Random per creation (kept across updates, new after a delete): secrets Nitride generates for the
   * workload (the disk key) are keyed by it, so re-creating a name never inherits them.
   */
  creation_id?: string;
  version: number;
  created_time: string;
  updated_time: string;
  definition: WorkloadDefinition;
}

export interface HistoryEntry {
  version: number;
  time: string;
  deleted: boolean;
  definition?: WorkloadDefinition;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const HEX48 = /^[0-9a-f]{96}$/;
const PLATFORMS: Platform[] = ["snp", "tdx", "azure-snp", "azure-tdx"];
/** "<mount path>/<role>", e.g. "pki_int/web"; the mount may contain slashes. */
const MOUNT_ROLE_RE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*\/[A-Za-z0-9._-]+$/;

export function checkWorkloadId(id: string | undefined, field = "workload_id"): string {
  if (!id || !ID_RE.test(id))
    throw new LogicalError(400, `${field}: must be 1-63 characters of letters, digits, '.', '_' or '-'`);
  return id;
}

function hex48List(v: unknown, field: string): string[] {
  const list = optList({ v }, "v");
  return list.map((x, i) => {
    const h = x.toLowerCase().replace(/^0x/, "");
    if (!HEX48.test(h)) throw new LogicalError(400, `${field}[${i}]: must be 48 bytes of hex (96 digits)`);
    return h;
  });
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw new LogicalError(400, `${field}: must be an object`);
  return v as Record<string, unknown>;
}

function sha256Hex(v: unknown): string {
  if (typeof v !== "string" || !/^[0-9a-fA-F]{64}$/.test(v))
    throw new LogicalError(400, "reference_values.user_data_sha256: must be 64 hex digits (SHA-256 of the user-data)");
  return v.toLowerCase();
}

/** Validates an operator's workload body into a definition; errors name the offending field. */
export function definitionFrom(data: Record<string, unknown>): WorkloadDefinition {
  const platforms = optList(data, "platforms").map((p, i) => {
    if (!PLATFORMS.includes(p as Platform))
      throw new LogicalError(400, `platforms[${i}]: must be one of ${PLATFORMS.join(", ")}`);
    return p as Platform;
  });
  const rv = obj(data.reference_values, "reference_values");
  const tdxIn = rv.tdx ?? [];
  if (!Array.isArray(tdxIn)) throw new LogicalError(400, "reference_values.tdx: must be a list of {mrtd, rtmrs?}");
  const tdx = tdxIn.map((t, i) => {
    const o = obj(t, `reference_values.tdx[${i}]`);
    const [mrtd] = hex48List([o.mrtd], `reference_values.tdx[${i}].mrtd`);
    const ref: TdxReference = { mrtd };
    if (o.rtmrs !== undefined) {
      ref.rtmrs = hex48List(o.rtmrs, `reference_values.tdx[${i}].rtmrs`);
      if (ref.rtmrs.length !== 4) throw new LogicalError(400, `reference_values.tdx[${i}].rtmrs: must list RTMR0..3`);
    }
    return ref;
  });
  const azureIn = obj(rv.azure, "reference_values.azure");
  const azure: Record<string, string> = {};
  for (const [k, x] of Object.entries(azureIn)) {
    if (typeof x !== "string" && typeof x !== "number" && typeof x !== "boolean")
      throw new LogicalError(400, `reference_values.azure.${k}: must be a string, number or boolean`);
    azure[k] = String(x);
  }
  let policy: Policy;
  try {
    policy = parsePolicy(data.policy ?? {});
  } catch (e) {
    if (e instanceof PolicyError) throw new LogicalError(400, e.message);
    throw e;
  }
  const s = obj(data.secrets, "secrets");
  const kv = optList(s, "kv").map((p, i) => {
    // The secret-reference grammar (runtime/protocol/secret-ref.ts), full form without a field.
    try {
      parseSecretRef(p, `secrets.kv[${i}]`, { requireMount: true, noField: true });
    } catch (e) {
      if (e instanceof WireFormatError)
        throw new LogicalError(
          400,
          `secrets.kv[${i}]: must be a KV v2 data path like "secret/data/app/db" (${e.detail})`,
        );
      throw e;
    }
    return p;
  });
  const secrets: WorkloadDefinition["secrets"] = { kv, disk_key: optBool(s, "disk_key", false) };
  if (s.pki !== undefined) {
    const p = obj(s.pki, "secrets.pki");
    const role = optString(p, "role");
    if (!role || !MOUNT_ROLE_RE.test(role))
      throw new LogicalError(400, `secrets.pki.role: must be "<pki mount>/<role>", e.g. "pki_int/web"`);
    const cn = optString(p, "common_name");
    if (!cn) throw new LogicalError(400, "secrets.pki.common_name: missing");
    secrets.pki = {
      role,
      common_name: cn,
      alt_names: optList(p, "alt_names"),
      ip_sans: optList(p, "ip_sans"),
      ttl: parseDuration(p.ttl, "secrets.pki.ttl"),
    };
  }
  if (s.ssh !== undefined) {
    const p = obj(s.ssh, "secrets.ssh");
    const role = optString(p, "role");
    if (!role || !MOUNT_ROLE_RE.test(role))
      throw new LogicalError(400, `secrets.ssh.role: must be "<ssh mount>/<role>", e.g. "ssh/host"`);
    const principals = optList(p, "principals");
    if (!principals.length) throw new LogicalError(400, "secrets.ssh.principals: at least one host name is required");
    secrets.ssh = { role, principals, ttl: parseDuration(p.ttl, "secrets.ssh.ttl") };
  }
  const def: WorkloadDefinition = {
    description: optString(data, "description") ?? "",
    platforms,
    reference_values: {
      snp_measurements: hex48List(rv.snp_measurements, "reference_values.snp_measurements"),
      tdx,
      azure,
      ...(rv.user_data_sha256 !== undefined ? { user_data_sha256: sha256Hex(rv.user_data_sha256) } : {}),
    },
    policy,
    secrets,
  };
  if (optBool(data, "require_pq_hybrid", false)) def.require_pq_hybrid = true;
  if (data.token_algorithm !== undefined && data.token_algorithm !== "")
    def.token_algorithm = tokenAlgorithmField(data.token_algorithm, "token_algorithm");
  const ttl = parseDuration(data.token_ttl, "token_ttl");
  if (ttl !== undefined) {
    if (ttl > MAX_TOKEN_TTL_S)
      throw new LogicalError(400, `token_ttl: at most ${MAX_TOKEN_TTL_S}s (workload tokens are short-lived)`);
    def.token_ttl = ttl;
  }
  if (
    !def.reference_values.snp_measurements.length &&
    !tdx.length &&
    !Object.keys(azure).length &&
    !policy.snp?.measurements?.length
  ) {
    throw new LogicalError(
      400,
      "reference_values: at least one reference value (snp_measurements, tdx or azure) is required",
    );
  }
  return def;
}

/** Canonical JSON (sorted keys) so equal definitions hash equal. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/** SHA-256 over what decides acceptance: platforms, reference values and policy. */
export function policyHash(d: WorkloadDefinition): string {
  return createHash("sha256")
    .update(canonicalJson({ platforms: d.platforms, reference_values: d.reference_values, policy: d.policy }))
    .digest("hex");
}

const currentKey = (id: string) => `workloads/${id}`;
const historyKey = (id: string, v: number) => `workload-history/${id}/${String(v).padStart(10, "0")}`;

export async function readWorkload(s: StorageReader, id: string): Promise<WorkloadRecord | undefined> {
  return readJson<WorkloadRecord>(s, currentKey(id));
}

export async function listWorkloads(s: StorageReader): Promise<string[]> {
  return (await s.list("workloads/")).filter((k) => !k.endsWith("/"));
}

async function latestVersion(tx: StorageReader, id: string): Promise<number> {
  const keys = await tx.list(`workload-history/${id}/`);
  return keys.length ? Number(keys[keys.length - 1]) : 0;
}

export async function writeWorkload(tx: StorageWriter, id: string, def: WorkloadDefinition): Promise<WorkloadRecord> {
  const prev = await readJson<WorkloadRecord>(tx, currentKey(id));
  const version = (await latestVersion(tx, id)) + 1;
  const now = new Date().toISOString();
  const rec: WorkloadRecord = {
    id,
    creation_id: prev ? prev.creation_id : randomUUID(),
    version,
    created_time: prev?.created_time ?? now,
    updated_time: now,
    definition: def,
  };
  await tx.put(currentKey(id), jsonBytes(rec));
  await tx.put(
    historyKey(id, version),
    jsonBytes({ version, time: now, deleted: false, definition: def } satisfies HistoryEntry),
  );
  return rec;
}

/** Deletes the current definition; history keeps a tombstone so versions are never reused. */
export async function deleteWorkload(tx: StorageWriter, id: string): Promise<boolean> {
  if (!(await tx.get(currentKey(id)))) return false;
  // The workload's generated secrets die with it (a disk key of a deleted workload is destroyed).
  await tx.delete(`disk-keys/${id}`);
  for (const k of await tx.list(`disk-keys/${id}/`)) await tx.delete(`disk-keys/${id}/${k}`);
  const version = (await latestVersion(tx, id)) + 1;
  await tx.delete(currentKey(id));
  await tx.put(
    historyKey(id, version),
    jsonBytes({ version, time: new Date().toISOString(), deleted: true } satisfies HistoryEntry),
  );
  return true;
}

export async function workloadHistory(s: StorageReader, id: string): Promise<HistoryEntry[]> {
  const out: HistoryEntry[] = [];
  for (const k of await s.list(`workload-history/${id}/`)) {
    const e = await readJson<HistoryEntry>(s, `workload-history/${id}/${k}`);
    if (e) out.push(e);
  }
  return out;
}

export async function workloadVersion(
  s: StorageReader,
  id: string,
  version: number,
): Promise<HistoryEntry | undefined> {
  return readJson<HistoryEntry>(s, historyKey(id, version));
}

/** Each registered name alone, the comma-joined list, and "" (none): what a request may carry. */
function namesOrList(names: string[]): string[] {
  return [...new Set(["", ...names, names.join(",")])];
}

function ruleWithParameters(path: string, params: Record<string, string[]>): string {
  const body = Object.entries(params)
    .map(([k, vals]) => `    ${JSON.stringify(k)} = [${vals.map((v) => JSON.stringify(v)).join(", ")}]`)
    .join("\n");
  return `path "${path}" {\n  capabilities = ["update"]\n  allowed_parameters = {\n${body}\n  }\n}`;
}

/** The ACL policy a workload's login token carries: read its KV paths, use its PKI/SSH roles, fetch its bundle. */
export function workloadAclPolicy(nitrideMount: string, d: WorkloadDefinition): string {
  const lines = [`path "${nitrideMount}provision" { capabilities = ["read", "update"] }`];
  for (const p of d.secrets.kv) lines.push(`path "${p}" { capabilities = ["read"] }`);
  // The role allows a whole domain; the workload may only ask for the names it was registered with
  // (one VM must not obtain another's certificate), so the rule pins the identity parameters.
  if (d.secrets.pki) {
    const { mount, role } = splitMountRole(d.secrets.pki.role);
    const p = d.secrets.pki;
    lines.push(
      ruleWithParameters(`${mount}/issue/${role}`, {
        common_name: [p.common_name],
        alt_names: namesOrList(p.alt_names),
        ip_sans: namesOrList(p.ip_sans),
        ttl: [],
        format: [],
        private_key_format: [],
        exclude_cn_from_sans: [],
      }),
    );
  }
  if (d.secrets.ssh) {
    const { mount, role } = splitMountRole(d.secrets.ssh.role);
    lines.push(
      ruleWithParameters(`${mount}/sign/${role}`, {
        public_key: [],
        cert_type: ["host"],
        valid_principals: namesOrList(d.secrets.ssh.principals),
        ttl: [],
      }),
    );
  }
  return `${lines.join("\n")}\n`;
}

/** Where a workload's disk key is kept: per creation, so a re-created name starts without one. */
export function diskKeyStorageKey(rec: WorkloadRecord): string {
  return rec.creation_id ? `disk-keys/${rec.id}/${rec.creation_id}` : `disk-keys/${rec.id}`;
}

export function splitMountRole(mr: string): { mount: string; role: string } {
  const i = mr.lastIndexOf("/");
  return { mount: mr.slice(0, i), role: mr.slice(i + 1) };
}
