// `buckypaper measure tdx`: placeholder until the TDX measurement CLI lands (owned by the TDX work).
import { UsageError, type CliIo } from "./io.js";

export async function run(_argv: string[], _io: CliIo): Promise<number> {
  throw new UsageError("'measure tdx' is not implemented yet in this build");
}
