// The one duration grammar (runtime/protocol/duration.ts) against Vault's TypeDurationSecond
// (parseutil.ParseDurationSecond + int(dur.Seconds()) + "cannot provide negative value"), and the
// provider, runtime and CLI sides agreeing on it.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DurationError, isDuration, parseDurationSeconds } from "../../../runtime/protocol/duration.js";
import { parseDuration as runtimeParseDuration } from "../../../runtime/server/vault/duration.js";
import { check, sameValue } from "../../../provider/handlers.js";
import { kinds } from "../../../provider/kinds.js";

// [input, seconds Vault stores] — examples from Vault's docs (ttl="72h", "768h", "30m", "1h30m", integer
// seconds, "7d") and Go's time.ParseDuration ("1.5h", "300ms", "-1.5h", "2h45m").
const ACCEPTED: [unknown, number][] = [
  [0, 0],
  [3600, 3600],
  ["3600", 3600],
  ["+90", 90],
  ["007", 7],
  ["0", 0],
  ["72h", 259200],
  ["768h", 2764800],
  ["30m", 1800],
  ["90s", 90],
  ["1h30m", 5400],
  ["2h45m", 9900],
  ["1.5h", 5400],
  [".5m", 30],
  ["1.m", 60],
  ["1h0.5s", 3600],
  ["1.9s", 1],
  ["500ms", 0],
  ["1500ms", 1],
  ["2000000us", 2],
  ["3000000000ns", 3],
  ["1µs", 0],
  ["1μs", 0],
  ["-500ms", 0],
  ["+1h", 3600],
  ["7d", 604800],
  ["0d", 0],
  ["+2d", 172800],
  ["1h1h", 7200],
];

// Refused by Vault as well (and by every side here).
const REFUSED: unknown[] = [
  "1h30", // missing unit after 30 — the provider used to accept it
  "1d12h", // days only as "<n>d" alone
  "12h1d",
  "1.5d",
  "d",
  "h",
  "1x",
  "1 h",
  " 1h",
  "1h ",
  "1H",
  "-1",
  "-1h",
  "-2d",
  -1,
  1.5, // a JSON number with a fraction: Vault's json.Number → ParseInt fails → ParseDuration("1.5") "missing unit"
  Number.NaN,
  Number.POSITIVE_INFINITY,
  "1e3",
  "0x10",
  ".",
  "1..5h",
  "+",
  "-",
  "++1h",
  "1h+30m",
  "3000000h", // > 2^63 ns
  "9223372037s",
  true,
  {},
  [],
];

describe("duration grammar", () => {
  it.each(ACCEPTED)("accepts %j as %i s", (input, seconds) => {
    expect(parseDurationSeconds(input)).toBe(seconds);
    expect(isDuration(input)).toBe(true);
  });

  it.each(REFUSED.map((x) => [x]))("refuses %j with a DurationError", (input) => {
    expect(() => parseDurationSeconds(input)).toThrow(DurationError);
    expect(isDuration(input)).toBe(false);
  });

  it("treats undefined, null and '' as not given", () => {
    for (const v of [undefined, null, ""]) expect(parseDurationSeconds(v)).toBeUndefined();
  });

  it("names the input and the reason, cut to 40 characters", () => {
    expect(() => parseDurationSeconds("1h30")).toThrow(/invalid duration '1h30': missing unit after '30'/);
    expect(() => parseDurationSeconds("12h1d")).toThrow(/days are written '<integer>d' alone/);
    expect(() => parseDurationSeconds("1d12h")).toThrow(/unknown unit 'd'/);
    const long = "9".repeat(200) + "x";
    try {
      parseDurationSeconds(long);
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message.length).toBeLessThan(140);
    }
  });

  it("the runtime and the provider agree with it on every form of the table", () => {
    const role = kinds.pkiRole;
    expect(role.fields.find((f) => f.name === "ttl")?.type).toBe("duration");
    for (const [input, seconds] of ACCEPTED) {
      expect(runtimeParseDuration("ttl", input, 42)).toBe(seconds);
      if (typeof input === "string" && input !== "")
        expect(sameValue({ name: "ttl", api: "ttl", type: "duration" }, input, seconds)).toBe(true);
    }
    for (const input of REFUSED) {
      expect(() => runtimeParseDuration("ttl", input, 42)).toThrow(/ttl: invalid duration/);
    }
    expect(runtimeParseDuration("ttl", undefined, 42)).toBe(42);
  });

  it("the provider's check refuses what the runtime refuses, naming the field", () => {
    for (const input of ["1h30", "1d12h", "1.5d", "-1h"]) {
      const r = check("pkiRole", {
        connection: { url: "https://rt", token: "t" },
        mount: "pki",
        name: "web",
        ttl: input,
      });
      expect(r.failures.find((f) => f.property === "ttl")?.reason).toMatch(/^ttl must be a duration/);
    }
    for (const input of ["1.5h", "500ms", "72h", "7d", 3600]) {
      const r = check("pkiRole", {
        connection: { url: "https://rt", token: "t" },
        mount: "pki",
        name: "web",
        ttl: input,
      });
      expect(r.failures.filter((f) => f.property === "ttl")).toEqual([]);
    }
  });

  it("fuzz: never throws anything but DurationError, and accepted values are whole non-negative seconds", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.stringMatching(/^[+-]?[0-9.]{0,6}(ns|us|ms|s|m|h|d|x)?([0-9.]{0,4}(ms|s|m|h))?$/),
          fc.double(),
          fc.integer(),
        ),
        (v) => {
          try {
            const s = parseDurationSeconds(v);
            if (s !== undefined) expect(Number.isSafeInteger(s) && s >= 0).toBe(true);
          } catch (e) {
            expect(e).toBeInstanceOf(DurationError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("fuzz: a Go duration built from h/m/s parts parses to the sum of its parts", () => {
    fc.assert(
      fc.property(fc.nat(1000), fc.nat(1000), fc.nat(100000), (h, m, s) => {
        expect(parseDurationSeconds(`${h}h${m}m${s}s`)).toBe(h * 3600 + m * 60 + s);
      }),
    );
  });
});
