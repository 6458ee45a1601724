// Nitride's and the engines' view of Vault durations (runtime/vault/duration.ts): unset or zero means
// "not given", so callers can fall back to their own defaults.
import { parseDuration as parseVaultDuration } from "../vault/duration.js";

/** Whole seconds; undefined/""/0 → undefined. Throws a 400 naming the field. */
export function parseDuration(value: unknown, field: string): number | undefined {
  const seconds = parseVaultDuration(field, value, 0);
  return seconds === 0 ? undefined : seconds;
}
