// `buckypaper verify snp|tdx|azure`: verify attestation evidence and appraise it against a policy.
// Each kind lives in its own module, loaded on demand (cli/verify-snp.ts, verify-tdx.ts, verify-azure.ts).
import { Exit, UsageError, type CliIo, type CommandRunner } from "./io.js";

const KINDS: Record<string, { summary: string; load: () => Promise<{ run: CommandRunner }> }> = {
  snp: {
    summary: "AMD SEV-SNP attestation report (VCEK/VLEK, ARK/ASK/ASVK, KDS)",
    load: () => import("./verify-snp.js"),
  },
  tdx: {
    summary: "Intel TDX DCAP quote (v4/v5), optional PCS collateral",
    load: () => import("./verify-" + "tdx.js") as Promise<{ run: CommandRunner }>,
  },
  azure: {
    summary: "Azure confidential VM evidence (HCL report, runtime claims, vTPM quote)",
    load: () => import("./verify-" + "azure.js") as Promise<{ run: CommandRunner }>,
  },
};

const USAGE = `usage: buckypaper verify <kind> [flags]   ('buckypaper verify <kind> --help' for its flags)

kinds:
${Object.entries(KINDS)
  .map(([k, v]) => `  ${k.padEnd(6)} ${v.summary}`)
  .join("\n")}

Exit: 0 accepted, 1 rejected (reasons printed), 2 usage or unreadable input.`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind === undefined || kind === "--help" || kind === "-h" || kind === "help") {
    io.out(USAGE);
    return kind === undefined ? Exit.usage : Exit.ok;
  }
  const entry = KINDS[kind];
  if (!entry) throw new UsageError(`unknown evidence kind '${kind}'\n${USAGE}`);
  let mod: { run: CommandRunner };
  try {
    mod = await entry.load();
  } catch (e) {
    io.err(`buckypaper verify ${kind}: not available in this build (${(e as Error).message})`);
    return Exit.usage;
  }
  return mod.run(rest, io);
}
