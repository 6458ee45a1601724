// Entry point of the guest artifact (`/opt/buckypaper/enclaivelet/bin/enclaivelet run --config F`):
// the same command as `buckypaper enclaivelet`, without the rest of the kit.
import { run } from "./command.js";

const write = (stream: NodeJS.WriteStream) => (t: string) => void stream.write(t.endsWith("\n") ? t : t + "\n");
process.exitCode = await run(process.argv.slice(2), { out: write(process.stdout), err: write(process.stderr) });
