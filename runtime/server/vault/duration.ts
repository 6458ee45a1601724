// Vault's duration fields on the runtime: the wire grammar (runtime/protocol/duration.ts) with a fallback
// for "not given" and its errors as Vault-shaped 400s naming the field.
import { DurationError, parseDurationSeconds } from "../../protocol/duration.js";
import { LogicalError } from "./backend.js";

/** Seconds; `undefined`/null/"" → fallback. Throws a 400 naming the field on bad input. */
export function parseDuration(field: string, value: unknown, fallback = 0): number {
  try {
    return parseDurationSeconds(value) ?? fallback;
  } catch (e) {
    // Vault's wording ("<field>: invalid duration '<value>'"); the grammar is runtime/protocol/duration.ts.
    if (e instanceof DurationError)
      throw new LogicalError(400, `${field}: invalid duration '${String(value).slice(0, 40)}'`);
    throw e;
  }
}

/**
 * The engines' view of a duration field: unset or zero means "not given", so callers fall back to
 * their own defaults. Whole seconds; throws a 400 naming the field.
 */
export function parseOptionalDuration(value: unknown, field: string): number | undefined {
  const seconds = parseDuration(field, value, 0);
  return seconds === 0 ? undefined : seconds;
}
