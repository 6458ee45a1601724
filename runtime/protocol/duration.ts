// The one duration grammar of the wire (provider, runtime, CLI): Vault's TypeDurationSecond, i.e.
// go-secure-stdlib parseutil.ParseDurationSecond followed by the framework's int(dur.Seconds()):
//   - a JSON integer: seconds (a JSON number with a fraction is refused, as Vault's json.Number is);
//   - a string of a base-10 integer, optionally signed ("90", "+90"): seconds;
//   - a string "<integer>d" ("7d"): days — only this exact form, "1d12h" is refused as Vault refuses it;
//   - otherwise a Go time.ParseDuration string: "1h30m", "1.5h", "500ms", "2h45m30.5s", units ns us µs ms s m h;
//   - the result is truncated toward zero to whole seconds ("1.9s" → 1, "500ms" → 0) and a negative
//     result is refused (Vault: "cannot provide negative value").
// Unlike Vault, a value whose nanoseconds overflow int64 is refused instead of wrapping around, and
// undefined/null/"" mean "not given" (the caller picks the default).

export class DurationError extends Error {
  override name = "DurationError";
  constructor(
    readonly input: string,
    readonly reason: string,
  ) {
    super(`invalid duration '${input}': ${reason}`);
  }
}

const NS_PER_S = 1_000_000_000n;
const MAX_NS = (1n << 63n) - 1n;
const UNIT_NS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  "\u00b5s": 1_000n,
  "\u03bcs": 1_000n,
  ms: 1_000_000n,
  s: NS_PER_S,
  m: 60n * NS_PER_S,
  h: 3600n * NS_PER_S,
};
const INT = /^[+-]?\d+$/;

/** Go's time.ParseDuration, in nanoseconds (exact: fractions are scaled in integers and truncated). */
function goDurationNs(s: string, shown: string): bigint {
  let i = 0;
  let neg = false;
  if (s[0] === "+" || s[0] === "-") {
    neg = s[0] === "-";
    i = 1;
  }
  if (s.slice(i) === "0") return 0n;
  if (i === s.length) throw new DurationError(shown, "no number");
  let total = 0n;
  while (i < s.length) {
    const num = /^(\d*)(?:\.(\d*))?/.exec(s.slice(i))!;
    const [whole, frac] = [num[1], num[2] ?? ""];
    if (whole === "" && frac === "") throw new DurationError(shown, `expected a number at offset ${i}`);
    i += num[0].length;
    const unitText = /^[^\d.]*/.exec(s.slice(i))![0];
    if (unitText === "") throw new DurationError(shown, `missing unit after '${num[0]}' (ns, us, ms, s, m, h)`);
    const unit = UNIT_NS[unitText];
    if (unit === undefined)
      throw new DurationError(shown, `unknown unit '${unitText.slice(0, 8)}' (ns, us, ms, s, m, h; or '<n>d' alone)`);
    i += unitText.length;
    total += BigInt(whole || "0") * unit;
    if (frac !== "") total += (BigInt(frac) * unit) / 10n ** BigInt(frac.length);
    if (total > MAX_NS) throw new DurationError(shown, "out of range");
  }
  return neg ? -total : total;
}

function fromSeconds(seconds: bigint, shown: string): number {
  if (seconds < 0n) throw new DurationError(shown, "must not be negative");
  if (seconds * NS_PER_S > MAX_NS) throw new DurationError(shown, "out of range");
  return Number(seconds);
}

/** Whole seconds, or `undefined` when not given (undefined, null, ""). Throws DurationError. */
export function parseDurationSeconds(value: unknown): number | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new DurationError(String(value), "a number must be whole seconds");
    return fromSeconds(BigInt(value), String(value));
  }
  if (typeof value !== "string") throw new DurationError(typeof value, "must be a string or a number of seconds");
  const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
  if (INT.test(value)) return fromSeconds(BigInt(value), shown);
  if (value.endsWith("d")) {
    const days = value.slice(0, -1);
    if (!INT.test(days)) throw new DurationError(shown, "days are written '<integer>d' alone, e.g. '7d'");
    return fromSeconds(BigInt(days) * 86_400n, shown);
  }
  const ns = goDurationNs(value, shown);
  // int(dur.Seconds()): truncation toward zero, so "-500ms" is 0 (as in Vault) and "-1s" is refused.
  return fromSeconds(ns / NS_PER_S, shown);
}

/** True when `value` is a duration the runtime accepts (or is not given). */
export function isDuration(value: unknown): boolean {
  try {
    parseDurationSeconds(value);
    return true;
  } catch (e) {
    if (e instanceof DurationError) return false;
    throw e;
  }
}
