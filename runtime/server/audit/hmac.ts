// Vault-style audit hashing: every string value in request/response data (and every token) is
// replaced by "hmac-sha256:<hex>" under a per-runtime key, so the log proves what was sent without
// revealing it; an operator can confirm a known value with sys/audit-hash.
import { createHmac } from "node:crypto";

export function auditHash(key: Buffer, value: string): string {
  return "hmac-sha256:" + createHmac("sha256", key).update(value, "utf8").digest("hex");
}

/** Deep copy of v with every string HMAC'd (numbers, booleans, null and structure kept). */
export function hashStrings(key: Buffer, v: unknown): unknown {
  if (typeof v === "string") return auditHash(key, v);
  if (v instanceof Uint8Array) return auditHash(key, Buffer.from(v).toString("base64"));
  if (Array.isArray(v)) return v.map((x) => hashStrings(key, x));
  if (v && typeof v === "object")
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, hashStrings(key, x)]));
  return v;
}
