// The CLI's I/O seam: commands write through CliIo so tests can run them in-process.
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** Is `out` a terminal (not a file, a pipe or a CI log)? Secrets in clear go only there. Absent: no. */
  isTerminal?(): boolean;
}

export const processIo: CliIo = {
  out: (t) => process.stdout.write(t.endsWith("\n") ? t : t + "\n"),
  err: (t) => process.stderr.write(t.endsWith("\n") ? t : t + "\n"),
  isTerminal: () => process.stdout.isTTY === true,
};

/** Thrown for bad flags or unreadable input: the CLI prints the message and exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Exit codes shared by every command. */
export const Exit = { ok: 0, rejected: 1, usage: 2 } as const;

export type CommandRunner = (argv: string[], io: CliIo) => Promise<number>;
