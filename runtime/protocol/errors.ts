// The one error every decoder in runtime/protocol throws: it names the offending field (a JSON path such
// as "evidence.tpm_quote.pcrs.7") and what was expected, never the value of a secret. Each side maps it to
// its own error (the runtime to a Vault-shaped 400, the enclaivelet to a ProtocolError).
export class WireFormatError extends Error {
  override name = "WireFormatError";
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${field}: ${detail}`);
  }
}

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Refuses keys the format does not define, so a misspelt field ("certTable") is an error, not dropped. */
export function onlyKeys(o: JsonObject, field: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k))
      throw new WireFormatError(`${field}.${k}`, `unknown field (allowed: ${allowed.join(", ")})`);
}

const STD = /^[A-Za-z0-9+/]*={0,2}$/;
const URL = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Strict base64 (standard or URL alphabet, never mixed; padding optional): the text must be the canonical
 * encoding of the bytes it decodes to, so two different strings never stand for the same evidence.
 */
export function decodeBase64(v: unknown, field: string, opts: { allowEmpty?: boolean } = {}): Uint8Array {
  if (v === undefined || v === null) throw new WireFormatError(field, "missing");
  if (typeof v !== "string") throw new WireFormatError(field, "must be a base64 string");
  const alphabet = STD.test(v) ? "base64" : URL.test(v) ? "base64url" : undefined;
  if (!alphabet) throw new WireFormatError(field, "must be base64 (standard or URL alphabet, not mixed)");
  const bare = v.replace(/=+$/, "");
  if (bare.length % 4 === 1 || (v.length !== bare.length && v.length % 4 !== 0))
    throw new WireFormatError(field, "must be base64 (bad length or padding)");
  const bytes = Buffer.from(bare, alphabet);
  if (Buffer.from(bytes).toString(alphabet).replace(/=+$/, "") !== bare)
    throw new WireFormatError(field, "must be canonical base64 (non-zero trailing bits)");
  if (bytes.length === 0 && !opts.allowEmpty) throw new WireFormatError(field, "must not be empty");
  return new Uint8Array(bytes);
}

export function encodeBase64(b: Uint8Array): string {
  return Buffer.from(b).toString("base64");
}

export function requireString(v: unknown, field: string): string {
  if (typeof v !== "string" || v === "") throw new WireFormatError(field, "must be a non-empty string");
  return v;
}
