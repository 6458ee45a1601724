// `buckypaper enclaivelet`: the in-guest agent's command line (run, detect; see
// runtime/enclaivelet/command.ts), plus `package`, which builds the guest artifact that user-data
// downloads and pins by SHA-256.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseFlags } from "./args.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import { run as runCommand, USAGE } from "../runtime/guest/command.js";
import { buildArtifact } from "../runtime/guest/artifact.js";

const PACKAGE_USAGE = "usage: buckypaper enclaivelet package --out FILE.tar.gz [--node PATH]";

export async function run(argv: string[], io: CliIo): Promise<number> {
  if (argv[0] === "--help" || argv[0] === "-h" || argv.length === 0) {
    io.out(
      `${USAGE.replace(/enclaivelet /g, "buckypaper enclaivelet ")}\n       ${PACKAGE_USAGE.slice(7)}\n\npackage  build the guest artifact (Node runtime + agent) and print its SHA-256`,
    );
    return argv.length === 0 ? Exit.usage : Exit.ok;
  }
  if (argv[0] !== "package") return runCommand(argv, io);
  if (argv.includes("--help") || argv.includes("-h")) {
    io.out(`${PACKAGE_USAGE}\n\nbuild the guest artifact (Node runtime + agent) and print its SHA-256`);
    return Exit.ok;
  }
  const { values } = parseFlags(argv.slice(1), { out: { type: "string" }, node: { type: "string" } });
  if (!values.out) throw new UsageError(`--out is required\n${PACKAGE_USAGE}`);
  // dist/cli/enclaivelet.js → the repository root
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const a = await buildArtifact({ repoRoot, out: values.out, nodeBinary: values.node });
  io.out(`${a.sha256}  ${a.file}`);
  io.err(
    `${a.files} modules, packages: ${a.packages.join(", ") || "none"}; node ${values.node ?? process.execPath}\nuse: buckypaper cloud-init render … --agent-url <where you serve it> --agent-sha256 ${a.sha256}`,
  );
  return Exit.ok;
}
