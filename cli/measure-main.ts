// Entry of the bundled `buckypaper measure` fast path (dist/cli-fast/, built by scripts/bundle-cli.js):
// measurement is what scripts call in loops, so it skips the command table and the ESM resolution of
// a dozen small modules. bin/buckypaper.js uses it only when it is at least as new as dist/cli/.
import { processIo } from "./io.js";
import { run } from "./measure.js";
import { runCommand } from "./run-command.js";

export function main(argv: string[]): Promise<number> {
  return runCommand("measure", run, argv, processIo);
}
