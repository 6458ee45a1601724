// Runs one loaded subcommand with the CLI's error contract: usage errors exit 2, an unreachable or
// untrusted runtime exits 1, and anything else that stops a command is one clear line and exit 1
// (the stack only with BUCKYPAPER_DEBUG=1). Shared by main.ts and the bundled `measure` fast path.
import { Exit, UsageError, type CliIo, type CommandRunner } from "./io.js";

export async function runCommand(name: string, run: CommandRunner, argv: string[], io: CliIo): Promise<number> {
  try {
    return await run(argv, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`buckypaper ${name}: ${e.message}`);
      return Exit.usage;
    }
    // The runtime could not be reached or trusted: a clear message, not a stack trace.
    if ((e as Error)?.name === "RuntimeClientError") {
      io.err(`buckypaper ${name}: ${(e as Error).message}`);
      return Exit.rejected;
    }
    // A file that cannot be written, a port that cannot be bound…: one line and a non-zero exit.
    if (process.env.BUCKYPAPER_DEBUG) throw e;
    io.err(`buckypaper ${name}: ${(e as Error)?.message ?? String(e)} (BUCKYPAPER_DEBUG=1 shows the stack)`);
    return Exit.rejected;
  }
}
