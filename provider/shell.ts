// The one POSIX shell quoter of the kit: every command line we build for `sh -c`, ssh or
// @pulumi/command (pvesh, qemu, the runtime service scripts) quotes its words here.
// Single quotes make every byte literal except the single quote itself, written as '\'' (close,
// escaped quote, reopen). NUL cannot be carried by any shell word, so it is refused instead of
// being silently cut off by the exec.

export class ShellQuoteError extends Error {
  override name = "ShellQuoteError";
}

/** One shell word holding exactly `s`. */
export function shellQuote(s: string): string {
  if (s.includes("\0")) throw new ShellQuoteError("a shell word cannot contain a NUL byte");
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Words that need no quoting (kept bare so rendered command lines stay readable). */
const BARE = /^[A-Za-z0-9_./=,:@+-]+$/;

/** An argv as one command line: plain words bare, everything else single-quoted. */
export function shellJoin(argv: readonly string[]): string {
  return argv.map((a) => (BARE.test(a) ? a : shellQuote(a))).join(" ");
}
