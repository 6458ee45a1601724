// The provisioning bundle: the answer to POST /v1/nitride/provision (sealed to the attested ephemeral key),
// everything one attested workload is entitled to. The runtime builds a WireBundle; the enclaivelet decodes
// it with decodeBundle (strict: a part that is present but malformed is an error naming the field, never
// silently skipped, so a missing certificate is reported as such rather than as "no TLS configured").
import { WireFormatError, decodeBase64, isObject, onlyKeys, requireString } from "./errors.js";
import { parseSecretRef } from "./secret-ref.js";

/** A TLS certificate issued from the workload's PKI role (fields as Vault's pki/issue answers them). */
export interface WireBundleTls {
  certificate: string;
  private_key: string;
  private_key_type?: string;
  issuing_ca?: string;
  ca_chain?: string[];
  serial_number?: string;
  expiration?: number;
}

/** An SSH host certificate: for a submitted host key (public_key) or for a key the runtime generated (private_key). */
export interface WireHostCertificate {
  public_key?: string;
  private_key?: string;
  signed_key: string;
  serial_number?: string;
}

export interface WireBundleSsh {
  host_certificates: WireHostCertificate[];
  ca_public_key?: string;
  principals?: string[];
}

export interface WireBundle {
  workload_id: string;
  version: number;
  /** KV v2 data path ("secret/data/app/db") → the secret's data object. */
  kv: Record<string, Record<string, unknown>>;
  tls?: WireBundleTls;
  ssh?: WireBundleSsh;
  /** 32 random bytes, base64: the workload's data-volume key. */
  disk_key?: string;
}

/** The bundle as the enclaivelet uses it (disk key as bytes). */
export interface ProvisioningBundle {
  workloadId: string;
  version: number;
  kv: Record<string, Record<string, unknown>>;
  tls?: WireBundleTls;
  ssh?: WireBundleSsh;
  diskKey?: Buffer;
}

/** Which answer fields carry secrets (the runtime seals an answer that has any). */
export const BUNDLE_SECRET_FIELDS = ["kv", "tls", "ssh", "disk_key"] as const;

const optString = (v: unknown, field: string): string | undefined => {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new WireFormatError(field, "must be a string");
  return v;
};

function decodeTls(v: unknown, field: string): WireBundleTls {
  if (!isObject(v)) throw new WireFormatError(field, "must be an object {certificate, private_key, …}");
  const out: WireBundleTls = {
    certificate: requireString(v.certificate, `${field}.certificate`),
    private_key: requireString(v.private_key, `${field}.private_key`),
  };
  for (const k of ["private_key_type", "issuing_ca", "serial_number"] as const) {
    const s = optString(v[k], `${field}.${k}`);
    if (s !== undefined) out[k] = s;
  }
  if (v.ca_chain !== undefined && v.ca_chain !== null) {
    if (!Array.isArray(v.ca_chain) || !v.ca_chain.every((c) => typeof c === "string"))
      throw new WireFormatError(`${field}.ca_chain`, "must be a list of PEM strings");
    out.ca_chain = v.ca_chain as string[];
  }
  if (v.expiration !== undefined && v.expiration !== null) {
    if (typeof v.expiration !== "number") throw new WireFormatError(`${field}.expiration`, "must be a number");
    out.expiration = v.expiration;
  }
  return out;
}

function decodeSsh(v: unknown, field: string): WireBundleSsh {
  if (!isObject(v)) throw new WireFormatError(field, "must be an object {host_certificates, ca_public_key}");
  if (!Array.isArray(v.host_certificates))
    throw new WireFormatError(`${field}.host_certificates`, "must be a list of host certificates");
  const host_certificates = v.host_certificates.map((c, i): WireHostCertificate => {
    const f = `${field}.host_certificates[${i}]`;
    if (!isObject(c)) throw new WireFormatError(f, "must be an object {public_key | private_key, signed_key}");
    onlyKeys(c, f, ["public_key", "private_key", "signed_key", "serial_number"]);
    const out: WireHostCertificate = { signed_key: requireString(c.signed_key, `${f}.signed_key`) };
    for (const k of ["public_key", "private_key", "serial_number"] as const) {
      const s = optString(c[k], `${f}.${k}`);
      if (s !== undefined) out[k] = s;
    }
    return out;
  });
  const out: WireBundleSsh = { host_certificates };
  const ca = optString(v.ca_public_key, `${field}.ca_public_key`);
  if (ca !== undefined) out.ca_public_key = ca;
  if (v.principals !== undefined && v.principals !== null) {
    if (!Array.isArray(v.principals) || !v.principals.every((p) => typeof p === "string"))
      throw new WireFormatError(`${field}.principals`, "must be a list of strings");
    out.principals = v.principals as string[];
  }
  return out;
}

/** Decodes a provisioning answer (Vault's {data: bundle} envelope or the bare bundle). */
export function decodeBundle(body: unknown, field = "bundle"): ProvisioningBundle {
  const o = isObject(body) && isObject(body.data) ? body.data : body;
  if (!isObject(o)) throw new WireFormatError(field, "must be an object");
  onlyKeys(o, field, ["workload_id", "version", "kv", "tls", "ssh", "disk_key"]);
  const workloadId = requireString(o.workload_id, `${field}.workload_id`);
  if (typeof o.version !== "number" || !Number.isSafeInteger(o.version) || o.version < 1)
    throw new WireFormatError(`${field}.version`, "must be a positive integer");
  if (!isObject(o.kv)) throw new WireFormatError(`${field}.kv`, "must be an object of KV v2 data path → data");
  const kv: Record<string, Record<string, unknown>> = {};
  for (const [path, data] of Object.entries(o.kv)) {
    parseSecretRef(path, `${field}.kv`, { requireMount: true, noField: true });
    if (!isObject(data)) throw new WireFormatError(`${field}.kv["${path}"]`, "must be the secret's data object");
    kv[path] = data;
  }
  const out: ProvisioningBundle = { workloadId, version: o.version, kv };
  if (o.tls !== undefined && o.tls !== null) out.tls = decodeTls(o.tls, `${field}.tls`);
  if (o.ssh !== undefined && o.ssh !== null) out.ssh = decodeSsh(o.ssh, `${field}.ssh`);
  if (o.disk_key !== undefined && o.disk_key !== null) {
    const key = decodeBase64(o.disk_key, `${field}.disk_key`);
    if (key.length !== 32) throw new WireFormatError(`${field}.disk_key`, `must be 32 bytes (got ${key.length})`);
    out.diskKey = Buffer.from(key);
  }
  return out;
}
