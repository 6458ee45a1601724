// Validation errors raised while the program runs, i.e. at `pulumi preview`: they name the component,
// the offending field and the allowed values, as the AWS CDK guidelines ask.
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly component: string,
    readonly field: string,
    problem: string,
    readonly allowed?: readonly (string | number)[],
  ) {
    super(`${component}: ${field} ${problem}${allowed && allowed.length ? `; allowed: ${allowed.join(", ")}` : ""}`);
  }
}

/** Throws unless value is one of allowed. */
export function requireOneOf<T extends string | number>(
  component: string,
  field: string,
  value: T,
  allowed: readonly T[],
): T {
  if (!allowed.includes(value))
    throw new ConfigError(component, field, `is '${value}', which is not supported`, allowed);
  return value;
}
