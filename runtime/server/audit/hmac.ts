// Vault-style audit hashing: every string value in request/response data (and every token) is
// replaced by "hmac-sha256:<hex>" under a per-runtime key, so the log proves what was sent without
// revealing it; an operator can confirm a known value with sys/audit-hash.
import { createHmac } from "node:crypto";

export function auditHash(key: Buffer, value: string): string {
  return "hmac-sha256:" + createHmac("sha256", key).update(value, "utf8").digest("hex");
}

/**
 * Deep copy of v with every string and number HMAC'd (booleans, null and structure kept). Numbers are
 * values too (a PIN, an account number): they are hashed in their decimal text form. The walk is
 * iterative: a stored value nested deeper than the stack allows must not turn every later audited
 * read of it into a 500.
 */
export function hashStrings(key: Buffer, v: unknown): unknown {
  const leaf = (x: unknown): unknown => {
    if (typeof x === "string") return auditHash(key, x);
    if (typeof x === "number" || typeof x === "bigint") return auditHash(key, String(x));
    if (x instanceof Uint8Array) return auditHash(key, Buffer.from(x).toString("base64"));
    return x;
  };
  const container = (x: unknown): x is object => typeof x === "object" && x !== null && !(x instanceof Uint8Array);
  if (!container(v)) return leaf(v);
  const fresh = (x: object): Record<string, unknown> | unknown[] => (Array.isArray(x) ? [] : {});
  const root = fresh(v);
  const stack: Array<[object, Record<string, unknown> | unknown[]]> = [[v, root]];
  while (stack.length) {
    const [src, dst] = stack.pop()!;
    for (const [k, x] of Object.entries(src)) {
      let out: unknown;
      if (container(x)) {
        out = fresh(x);
        stack.push([x, out as Record<string, unknown> | unknown[]]);
      } else out = leaf(x);
      // defineProperty: a "__proto__" key from JSON stays a plain own property.
      Object.defineProperty(dst, k, { value: out, enumerable: true, writable: true, configurable: true });
    }
  }
  return root;
}
