// The provisioning bundle on the guest side: decoded with the protocol's one definition
// (runtime/protocol/bundle.ts), and how config entries name values in it — secret references
// (runtime/protocol/secret-ref.ts): "secret/data/web/db#password", or without the mount "web/db#password"
// when exactly one granted secret has that path.
import { ProtocolError } from "./attest.js";
import { decodeBundle, type ProvisioningBundle } from "../protocol/bundle.js";
import { WireFormatError } from "../protocol/errors.js";
import { matchSecretRef, parseSecretRef } from "../protocol/secret-ref.js";

export type { ProvisioningBundle };

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
  try {
    return decodeBundle(body);
  } catch (e) {
    if (e instanceof WireFormatError) throw new ProtocolError(`provision: ${e.message}`);
    throw e;
  }
}

/** Resolves "name" or "name#field" to bytes (objects without a field are JSON-encoded). */
export function resolveSecret(b: ProvisioningBundle, ref: string, field?: string, base64 = false): Buffer {
  let parsed;
  let key;
  try {
    parsed = parseSecretRef(ref);
    key = matchSecretRef(parsed, Object.keys(b.kv));
  } catch (e) {
    if (e instanceof WireFormatError) throw new MissingSecretError(ref, e.detail);
    throw e;
  }
  if (key === undefined) throw new MissingSecretError(ref, "not in this workload's bundle");
  const f = field ?? parsed.field;
  let v: unknown = b.kv[key];
  if (f !== undefined) {
    if (typeof v !== "object" || v === null || !(f in v)) throw new MissingSecretError(ref, `has no field '${f}'`);
    v = (v as Record<string, unknown>)[f];
  }
  const text = typeof v === "string" ? v : JSON.stringify(v);
  return base64 ? Buffer.from(text, "base64") : Buffer.from(text, "utf8");
}
