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

// Belt and braces for free-form text (extra files, hook commands): material that is a secret by its
// shape is refused even when nobody wrapped it.
const SECRET_SHAPES: [RegExp, string][] = [
  [/-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/, "a PEM private key"],
  [/-----BEGIN OPENSSH PRIVATE KEY-----/, "an OpenSSH private key"],
  [/\bhvs\.[A-Za-z0-9_-]{20,}/, "a Vault token"],
];

export function assertNoSecretShapes(text: string, field: string): void {
  for (const [re, what] of SECRET_SHAPES) {
    if (re.test(text)) throw new SecretInUserDataError(what, field);
  }
}
