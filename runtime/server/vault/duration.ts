// Vault's duration fields: integer seconds (number or numeric string) or Go-style "1h30m", "90s".
import { LogicalError } from "./backend.js";

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds; `undefined`/"" → fallback. Throws a 400 naming the field on bad input. */
export function parseDuration(field: string, value: unknown, fallback = 0): number {
  if (value === undefined || value === null || value === "") return fallback;
  if (typeof value === "number" && Number.isFinite(value) && value >= 0) return Math.floor(value);
  if (typeof value === "string") {
    if (/^\d+$/.test(value)) return Number(value);
    const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
    let total = 0,
      m: RegExpExecArray | null,
      end = 0;
    while ((m = re.exec(value))) {
      total += Number(m[1]) * UNITS[m[2]];
      end = re.lastIndex;
    }
    if (end === value.length && end > 0) return Math.floor(total);
  }
  throw new LogicalError(400, `${field}: invalid duration '${String(value).slice(0, 40)}'`);
}

/**
 * The engines' view of a duration field: unset or zero means "not given", so callers fall back to
 * their own defaults. Whole seconds; throws a 400 naming the field.
 */
export function parseOptionalDuration(value: unknown, field: string): number | undefined {
  const seconds = parseDuration(field, value, 0);
  return seconds === 0 ? undefined : seconds;
}
