// `buckypaper enclaivelet run --config FILE`: the in-guest agent (systemd runs it at boot).
// `buckypaper enclaivelet detect [--config FILE]`: which evidence sources this machine offers.
import { parseFlags } from "./args.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import { loadConfig, parseConfig, ConfigError, PROVIDER_NAMES, type ProviderName, type EnclaiveletConfig } from "../runtime/enclaivelet/config.js";
import { runAgent } from "../runtime/enclaivelet/agent.js";
import { candidateProviders } from "../runtime/enclaivelet/evidence/detect.js";
import { formatLogLine } from "../runtime/enclaivelet/log.js";

const HELP = `usage: buckypaper enclaivelet run --config FILE [--provider ${PROVIDER_NAMES.join("|")}] [--root DIR]
       buckypaper enclaivelet detect [--config FILE]

run      attest to Nitride, fetch this workload's secrets and provision them (exit 0 ok, 1 failed)
detect   list the evidence sources present on this machine`;

function load(file: string | undefined, required: boolean): EnclaiveletConfig | undefined {
  try {
    if (file) return loadConfig(file);
    if (required) throw new UsageError(`--config is required\n\n${HELP}`);
    return undefined;
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(`config ${e.message}`);
    throw e;
  }
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === "--help" || sub === "-h") {
    io.out(HELP);
    return sub ? Exit.ok : Exit.usage;
  }
  const { values } = parseFlags(rest, { config: { type: "string" }, provider: { type: "string" }, root: { type: "string" }, help: { type: "boolean", short: "h" } });
  if (values.help) {
    io.out(HELP);
    return Exit.ok;
  }
  if (sub === "run") {
    let cfg = load(values.config, true)!;
    if (values.provider !== undefined) {
      if (!PROVIDER_NAMES.includes(values.provider as ProviderName)) throw new UsageError(`--provider: must be one of ${PROVIDER_NAMES.join(", ")}`);
      cfg = { ...cfg, evidence: { ...cfg.evidence, provider: values.provider as ProviderName } };
    }
    if (values.root !== undefined) {
      try {
        cfg = { ...cfg, root: parseConfig({ ...JSON.parse(JSON.stringify(cfg)), root: values.root }).root };
      } catch (e) {
        throw new UsageError(`--root: ${(e as Error).message}`);
      }
    }
    const outcome = await runAgent(cfg, { log: (e) => io.out(formatLogLine(e)) });
    return outcome.exitCode;
  }
  if (sub === "detect") {
    const cfg = load(values.config, false) ?? parseConfig({ runtimeUrl: "https://unused.invalid", runtimeCaSha256: "0".repeat(64), workloadId: "detect" });
    for (const p of candidateProviders(cfg.evidence)) io.out(`${p.name.padEnd(13)} ${(await p.available()) ? "available" : "absent"}`);
    return Exit.ok;
  }
  throw new UsageError(`unknown subcommand '${sub}'\n\n${HELP}`);
}
