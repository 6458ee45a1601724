// A value that must never reach cloud-init user-data (the operator and the cloud can read it).
// Components wrap secret inputs in `Secret`; the renderer's input types have no place for one, and
// at run time the renderer walks its whole input and throws on any Secret it meets (for callers that
// bypass the types with `any` or JSON).
const SECRET_BRAND: unique symbol = Symbol.for("buckypaper.secret");

export class Secret<T = string> {
  readonly [SECRET_BRAND] = true as const;
  readonly #value: T;

  constructor(
    value: T,
    readonly label = "secret",
  ) {
    this.#value = value;
  }

  /** The only way to get the value out; never call it on a path to user-data. */
  reveal(): T {
    return this.#value;
  }

  toString(): string {
    return `[Secret ${this.label}]`;
  }

  /** Serialising a secret is always a bug: fail loudly instead of leaking it. */
  toJSON(): never {
    throw new SecretInUserDataError(this.label, "(serialisation)");
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}

export function secret<T>(value: T, label?: string): Secret<T> {
  return new Secret(value, label);
}

export function isSecret(v: unknown): v is Secret<unknown> {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[SECRET_BRAND] === true;
}

export class SecretInUserDataError extends Error {
  override name = "SecretInUserDataError";
  constructor(
    readonly label: string,
    readonly field: string,
  ) {
    super(
      `refusing to render a secret into user-data: ${field} holds ${label === "secret" ? "a secret" : `secret '${label}'`} (secrets are delivered by attestation, never by cloud-init)`,
    );
  }
}

/** Type-level refusal: any Secret anywhere in T makes the argument type `never`. */
export type NoSecrets<T> =
  T extends Secret<unknown>
    ? never
    : T extends (infer U)[]
      ? NoSecrets<U>[]
      : T extends object
        ? { [K in keyof T]: NoSecrets<T[K]> }
        : T;

/** Walks a value and throws on the first Secret, naming its path. */
export function assertNoSecrets(value: unknown, field = "input", seen = new Set<unknown>()): void {
  if (isSecret(value)) throw new SecretInUserDataError(value.label, field);
  if (typeof value !== "object" || value === null || seen.has(value)) return;
  seen.add(value);
  if (Array.isArray(value)) value.forEach((v, i) => assertNoSecrets(v, `${field}[${i}]`, seen));
  else for (const [k, v] of Object.entries(value)) assertNoSecrets(v, `${field}.${k}`, seen);
}

// Belt and braces for text: material that is a secret by its shape is refused even when nobody
// wrapped it. The renderer scans each free-form field (for an error that names it) and then the
// whole rendered user-data, so a field nobody thought of (hostname, a URL) cannot carry one either.
const SECRET_SHAPES: [RegExp, string][] = [
  [/-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/, "a PEM private key"],
  [/-----BEGIN OPENSSH PRIVATE KEY-----/, "an OpenSSH private key"],
  [/\bhv[sbr]\.[A-Za-z0-9_-]{20,}/, "a Vault token"],
  // Vault's legacy service/batch tokens: "s." / "b." and 24 base62 characters.
  [/(?<![A-Za-z0-9._-])[sb]\.[A-Za-z0-9]{24}(?![A-Za-z0-9])/, "a Vault token"],
  [/\beyJ[A-Za-z0-9_-]{6,}\.eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*/, "a JWT"],
  [/\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b/, "an AWS access key id"],
  [/aws_secret_access_key\s*["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}/i, "an AWS secret access key"],
];

/** Long base64 / base64url runs: decoded and scanned too (a base64-wrapped PEM key is still a key). */
const BASE64_RUN = /[A-Za-z0-9+/_-]{40,}={0,2}/g;

function shapeIn(text: string, depth = 0): string | undefined {
  for (const [re, what] of SECRET_SHAPES) if (re.test(text)) return what;
  if (depth >= 2) return undefined;
  for (const m of text.matchAll(BASE64_RUN)) {
    const decoded = Buffer.from(m[0].replace(/-/g, "+").replace(/_/g, "/"), "base64").toString("latin1");
    const inner = shapeIn(decoded, depth + 1);
    if (inner) return `${inner} (base64-encoded)`;
  }
  return undefined;
}

export function assertNoSecretShapes(text: string, field: string): void {
  const what = shapeIn(text);
  if (what) throw new SecretInUserDataError(what, field);
}

/**
 * URLs in user-data carry no credentials: no user:password@ and no query string (tokens and
 * signatures travel there, e.g. ?token= or a presigned URL's X-Amz-Signature).
 */
export function assertPublicUrl(url: string, field: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return; // the caller's own syntax check reports it
  }
  if (u.username || u.password) throw new SecretInUserDataError("credentials in the URL (user:password@)", field);
  if (u.search) throw new SecretInUserDataError("a URL query string (it may carry a token or signature)", field);
}
