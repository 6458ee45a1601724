// The one grammar for naming a KV v2 secret across the kit (workload definitions, the provisioning
// bundle's keys, the enclaivelet's file/env plans, the Pulumi components):
//
//   ref   = [ mount "/data/" ] path [ "#" field ]
//   mount = segment *( "/" segment )      e.g. "secret", "team/kv"
//   path  = segment *( "/" segment )      e.g. "workloads/web/app"
//   segment = 1*( ALPHA / DIGIT / "_" / "." / "-" ), never "." or ".."
//   field = 1*( any character )           a key of the secret's data object
//
// "secret/data/workloads/web/app#DB_PASSWORD" is the full form: the KV v2 API path of the secret (what a
// workload is granted, and the key of the secret in its provisioning bundle) plus the field to take. The
// mount may be omitted ("workloads/web/app#DB_PASSWORD") only where one bundle of granted secrets is the
// context: it then names the one granted secret with that path, whatever its mount (ambiguity is an error).
// The first "/data/" separates mount from path, so a mount-less path cannot contain a "data" segment
// followed by more segments — write the full form for such paths.
import { WireFormatError } from "./errors.js";

export interface SecretRef {
  /** KV v2 mount; absent in the short form. */
  mount?: string;
  /** Path of the secret under the mount (without "data/"). */
  path: string;
  /** Field of the secret's data to take; absent = the whole data object. */
  field?: string;
}

const SEGMENT = /^[A-Za-z0-9_.-]+$/;

function checkSegments(s: string, what: string, field: string): void {
  if (s === "") throw new WireFormatError(field, `${what} is empty`);
  for (const seg of s.split("/"))
    if (!SEGMENT.test(seg) || seg === "." || seg === "..")
      throw new WireFormatError(
        field,
        `${what} '${s.slice(0, 80)}' must be '/'-separated segments of letters, digits, '_', '.', '-' (no empty, '.' or '..' segment)`,
      );
}

/**
 * Parses a secret reference. `opts.requireMount` refuses the short form; `opts.noField` refuses a "#field"
 * (a KV v2 data path, as in a workload's grant). `field` names the input in errors.
 */
export function parseSecretRef(
  ref: unknown,
  field = "secret",
  opts: { requireMount?: boolean; noField?: boolean } = {},
): SecretRef {
  if (typeof ref !== "string" || ref === "") throw new WireFormatError(field, "must be a non-empty secret reference");
  const hash = ref.indexOf("#");
  const name = hash < 0 ? ref : ref.slice(0, hash);
  const fieldName = hash < 0 ? undefined : ref.slice(hash + 1);
  if (fieldName !== undefined) {
    if (opts.noField) throw new WireFormatError(field, `a KV v2 data path takes no '#field'`);
    if (fieldName === "") throw new WireFormatError(field, `'#' must be followed by a field name`);
  }
  const sep = name.indexOf("/data/");
  const mount = sep > 0 ? name.slice(0, sep) : undefined;
  const path = sep > 0 ? name.slice(sep + "/data/".length) : name;
  if (mount === undefined && opts.requireMount)
    throw new WireFormatError(field, `must be a KV v2 data path like "secret/data/app/db"`);
  if (mount !== undefined) checkSegments(mount, "the mount", field);
  checkSegments(path, "the path", field);
  return { ...(mount !== undefined ? { mount } : {}), path, ...(fieldName !== undefined ? { field: fieldName } : {}) };
}

/** The text form: "<mount>/data/<path>[#field]" (or "<path>[#field]" without a mount). */
export function formatSecretRef(r: SecretRef): string {
  const name = r.mount !== undefined ? `${r.mount}/data/${r.path}` : r.path;
  return r.field !== undefined ? `${name}#${r.field}` : name;
}

/** The KV v2 API path of a secret ("secret/data/app/db"), as granted to a workload and keyed in its bundle. */
export function kvDataPath(mount: string, path: string): string {
  return formatSecretRef({ mount, path });
}

/**
 * Which key of a bundle's `kv` map a reference names: the exact data path with a mount; without one, the
 * single granted secret whose path equals the reference's. Returns undefined when none; throws on ambiguity.
 */
export function matchSecretRef(ref: SecretRef, keys: readonly string[], field = "secret"): string | undefined {
  if (ref.mount !== undefined) {
    const want = kvDataPath(ref.mount, ref.path);
    return keys.includes(want) ? want : undefined;
  }
  const hits = keys.filter((k) => {
    try {
      return parseSecretRef(k, "kv", { requireMount: true, noField: true }).path === ref.path;
    } catch {
      return false;
    }
  });
  if (hits.length > 1)
    throw new WireFormatError(field, `'${ref.path}' is ambiguous: matches ${hits.join(", ")}; name the mount`);
  return hits[0];
}
