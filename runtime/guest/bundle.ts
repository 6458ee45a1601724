// The provisioning bundle (POST /v1/nitride/provision {host_keys}, sealed to the ephemeral key):
// {workload_id, version, kv: {<kv v2 path>: data}, tls?: {certificate, private_key, ca_chain},
//  ssh?: {host_certificates: [{public_key, signed_key}], ca_public_key}, disk_key?: base64}; and how config
// entries name values in it. KV secrets are keyed by their KV v2 API path ("secret/data/web/db");
// a config may name one by that path or by the part after "/data/" ("web/db"), and pick a field
// with "#": "web/db#password".
import { ProtocolError } from "./attest.js";
import type { IssuedTls } from "./provision/tls.js";
import type { BundleSsh } from "./provision/ssh.js";

export interface ProvisioningBundle {
  kv: Record<string, unknown>;
  diskKey?: Buffer;
  tls?: IssuedTls;
  ssh?: BundleSsh;
  raw: Record<string, unknown>;
}

export class MissingSecretError extends Error {
  override name = "MissingSecretError";
  constructor(
    readonly ref: string,
    detail: string,
  ) {
    super(`secret '${ref}': ${detail}`);
  }
}

export function parseBundle(body: unknown): ProvisioningBundle {
  const o = ((body as { data?: unknown })?.data ?? body) as Record<string, unknown>;
  if (typeof o !== "object" || o === null) throw new ProtocolError("provision: the bundle is not an object");
  const kvIn = o.kv ?? {};
  if (typeof kvIn !== "object" || kvIn === null) throw new ProtocolError("provision: bundle.kv is not an object");
  const kv: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(kvIn as Record<string, unknown>)) {
    // Accept a KV v2 read answer ({data: {...}, metadata}) or the plain secret data.
    const inner = (v as { data?: unknown })?.data;
    kv[k] =
      typeof inner === "object" && inner !== null && (v as { metadata?: unknown }).metadata !== undefined ? inner : v;
  }
  let diskKey: Buffer | undefined;
  if (o.disk_key !== undefined && o.disk_key !== null) {
    if (typeof o.disk_key !== "string") throw new ProtocolError("provision: bundle.disk_key is not base64");
    diskKey = Buffer.from(o.disk_key, /[-_]/.test(o.disk_key) ? "base64url" : "base64");
  }
  const pki = (o.tls ?? o.pki) as ProvisioningBundle["tls"] | undefined;
  const tls = pki && typeof pki.certificate === "string" && typeof pki.private_key === "string" ? pki : undefined;
  const ssh = typeof o.ssh === "object" && o.ssh !== null ? (o.ssh as BundleSsh) : undefined;
  return { kv, diskKey, tls, ssh, raw: o };
}

function findSecret(b: ProvisioningBundle, name: string): unknown {
  if (name in b.kv) return b.kv[name];
  const matches = Object.keys(b.kv).filter((k) => k.endsWith(`/data/${name}`));
  if (matches.length === 1) return b.kv[matches[0]];
  if (matches.length > 1) throw new MissingSecretError(name, `ambiguous: matches ${matches.join(", ")}`);
  throw new MissingSecretError(name, "not in this workload's bundle");
}

/** Resolves "name" or "name#field" to bytes (objects without a field are JSON-encoded). */
export function resolveSecret(b: ProvisioningBundle, ref: string, field?: string, base64 = false): Buffer {
  const [name, refField] = ref.includes("#")
    ? [ref.slice(0, ref.indexOf("#")), ref.slice(ref.indexOf("#") + 1)]
    : [ref, undefined];
  const f = field ?? refField;
  let v = findSecret(b, name);
  if (f !== undefined) {
    if (typeof v !== "object" || v === null || !(f in v)) throw new MissingSecretError(ref, `has no field '${f}'`);
    v = (v as Record<string, unknown>)[f];
  }
  const text = typeof v === "string" ? v : JSON.stringify(v);
  return base64 ? Buffer.from(text, "base64") : Buffer.from(text, "utf8");
}
