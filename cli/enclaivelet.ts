// `buckypaper enclaivelet`: placeholder until its issue lands; exits 2 with a clear message.
import { UsageError, type CliIo } from "./io.js";

export async function run(_argv: string[], _io: CliIo): Promise<number> {
  throw new UsageError("'enclaivelet' is not implemented yet in this build");
}
