// Vault-style durations: a number of seconds, or a Go duration string ("72h", "1h30m", "15m", "90s").
import { LogicalError } from "../vault/backend.js";

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Parses a duration field into whole seconds; undefined/""/0 → undefined. Throws a 400 naming the field. */
export function parseDuration(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null || value === "" || value === 0 || value === "0") return undefined;
  if (typeof value === "number" && Number.isFinite(value) && value >= 0) return Math.floor(value);
  if (typeof value === "string") {
    const s = value.trim();
    if (/^\d+$/.test(s)) return Number(s);
    const re = /(\d+(?:\.\d+)?)([smhd])/gy;
    let total = 0;
    let consumed = 0;
    for (let m = re.exec(s); m; m = re.exec(s)) {
      total += Number(m[1]) * UNIT_SECONDS[m[2]];
      consumed = re.lastIndex;
    }
    if (consumed === s.length && consumed > 0) return Math.floor(total);
  }
  throw new LogicalError(400, `${field}: not a duration (want seconds or e.g. "72h", "15m")`);
}
