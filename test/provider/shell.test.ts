// The one POSIX shell quoter (provider/shell.ts): quoted words go through a real `sh -c` and come out
// byte for byte, whatever they contain; NUL is refused.
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import fc from "fast-check";
import { ShellQuoteError, shellJoin, shellQuote } from "../../provider/shell.js";

/** What `sh` passes as argv for a command line: printf each word on its own NUL-terminated record. */
function throughShell(commandLine: string): string[] {
  const out = execFileSync("sh", ["-c", `printf '%s\\0' ${commandLine}`], { encoding: "buffer" });
  return out.toString("utf8").split("\0").slice(0, -1);
}

const HOSTILE = [
  "",
  " ",
  "'",
  "''",
  "'\\''",
  '"',
  "\\",
  "$HOME",
  "${IFS}",
  "`id`",
  "$(id)",
  "a; rm -rf / #",
  "a && b || c | d & e",
  "*",
  "?",
  "[a]",
  "~",
  "-n",
  "--",
  "a\nb",
  "\r\t\v\f",
  "!",
  "#",
  "x'; echo pwned; '",
  "ünïcødé ✓ 🚀",
  "a=b c",
];

describe("shell quoting", () => {
  it.each(HOSTILE.map((s) => [s]))("sh -c sees %j as exactly one word", (s) => {
    expect(throughShell(shellQuote(s))).toEqual([s]);
  });

  it("joins an argv, leaving plain words bare and quoting the rest", () => {
    expect(shellJoin(["qemu-system-x86_64", "-m", "2048", "-append", "console=ttyS0 root=/dev/vda"])).toBe(
      "qemu-system-x86_64 -m 2048 -append 'console=ttyS0 root=/dev/vda'",
    );
    expect(throughShell(shellJoin(HOSTILE))).toEqual(HOSTILE);
  });

  it("refuses a NUL byte instead of letting exec cut the word short", () => {
    expect(() => shellQuote("a\0b")).toThrow(ShellQuoteError);
    expect(() => shellJoin(["ok", "a\0b"])).toThrow(ShellQuoteError);
  });

  it("fuzz: any NUL-free string survives sh -c unchanged", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ unit: "binary", maxLength: 30 }).filter((s) => !s.includes("\0")),
          { minLength: 1, maxLength: 4 },
        ),
        (words) => {
          expect(throughShell(shellJoin(words))).toEqual(words);
        },
      ),
      { numRuns: 150 },
    );
  });
});
