// `buckypaper` entry point. Subcommands load lazily so `buckypaper measure` does not pay for
// Pulumi, fastify or the cloud SDKs at start-up.
import { Exit, processIo, type CliIo, type CommandRunner } from "./io.js";
import { runCommand } from "./run-command.js";

interface CommandEntry {
  summary: string;
  load: () => Promise<{ run: CommandRunner }>;
}

const commands: Record<string, CommandEntry> = {
  measure: {
    summary: "compute expected launch measurements (SEV-SNP, SEV, SEV-ES, TDX)",
    load: () => import("./measure.js"),
  },
  verify: {
    summary: "verify attestation evidence (SNP reports, TDX quotes, Azure CVM evidence)",
    load: () => import("./verify.js"),
  },
  runtime: {
    summary: "run and operate the runtime (Nitride + Vault-compatible API)",
    load: () => import("./runtime.js"),
  },
  "cloud-init": {
    summary: "render the cloud-init user-data that wires the enclaivelet",
    load: () => import("./cloud-init.js"),
  },
  enclaivelet: { summary: "the in-guest agent: attest and provision secrets", load: () => import("./enclaivelet.js") },
  image: {
    summary: "build the kit's guest image (kernel, initrd, dm-verity root) and its manifest",
    load: () => import("./image.js"),
  },
  simulate: {
    summary: "simulated SNP/TDX hardware for tests and the local stack",
    load: () => import("./simulate.js"),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length));
  const lines = Object.entries(commands).map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`);
  return `usage: buckypaper <command> [flags]\n\ncommands:\n${lines.join("\n")}\n\nRun 'buckypaper <command> --help' for a command's flags.`;
}

export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    io.out(usage());
    return name ? Exit.ok : Exit.usage;
  }
  const entry = commands[name];
  if (!entry) {
    io.err(`buckypaper: unknown command '${name}'\n\n${usage()}`);
    return Exit.usage;
  }
  let mod: { run: CommandRunner };
  try {
    mod = await entry.load();
  } catch (e) {
    io.err(`buckypaper ${name}: not available in this build (${(e as Error).message})`);
    return Exit.usage;
  }
  return runCommand(name, mod.run, rest, io);
}
