// The enclaivelet command line, shared by `buckypaper enclaivelet` and the guest artifact's entry.
//   run --config FILE [--provider NAME] [--root DIR]   attest and provision (exit 0 ok, 1 failed, 2 usage)
//   detect [--config FILE]                             list the evidence sources present here
//   vtpm-evidence --nonce HEX [--config FILE]          the vTPM part of run's evidence, as JSON
import { parseArgs } from "node:util";
import {
  loadConfig,
  parseConfig,
  ConfigError,
  PROVIDER_NAMES,
  type ProviderName,
  type EnclaiveletConfig,
} from "./config.js";
import { runAgent } from "./agent.js";
import { candidateProviders } from "./evidence/detect.js";
import { Vtpm, wireVtpm } from "./evidence/vtpm.js";
import { EvidenceError } from "./evidence/types.js";
import { formatLogLine } from "./log.js";
import { measuredConfig, readUserData, USER_DATA_SOURCES, UserDataReadError, type UserDataSource } from "./userdata.js";

export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
}

export const USAGE = `usage: enclaivelet run (--config FILE | --user-data ${USER_DATA_SOURCES.join("|")}|FILE) [--provider ${PROVIDER_NAMES.join("|")}] [--root DIR]
       enclaivelet detect [--config FILE]
       enclaivelet vtpm-evidence --nonce HEX [--config FILE]

run      attest to Nitride, fetch this workload's secrets and provision them (exit 0 ok, 1 failed);
         with --user-data the agent reads the user-data itself, takes its config from it and binds
         its SHA-256 into the evidence (measured user-data)
detect   list the evidence sources present on this machine
vtpm-evidence
         the vTPM part of run's evidence, as run collects it (the persisted AK, a quote over the boot PCRs
         with HEX — 1..64 bytes — as qualifying data, the TCG event log; evidence.vtpm of --config picks the
         TCTI and the cloud's extras, default device:/dev/tpmrm0), printed as one JSON line {"vtpm": …}
         in runtime-api.md's evidence.vtpm form. run's qualifying data is SHA-256 of REPORT_DATA; this one is
         the caller's, so the output proves the boot chain to whoever chose the nonce, nothing about a
         hardware report. Needs no SEV-SNP/TDX device (a vTPM on a machine without one: tests, diagnosis)`;

class Usage extends Error {}

export async function run(argv: string[], io: CommandIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    if (e instanceof Usage || e instanceof ConfigError) {
      io.err(`enclaivelet: ${e instanceof ConfigError ? `config ${e.message}` : e.message}`);
      return 2;
    }
    throw e;
  }
}

async function dispatch(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === "--help" || sub === "-h") {
    io.out(USAGE);
    return sub ? 0 : 2;
  }
  let values: {
    config?: string;
    "user-data"?: string;
    provider?: string;
    root?: string;
    nonce?: string;
    help?: boolean;
  };
  try {
    values = parseArgs({
      args: rest,
      strict: true,
      options: {
        config: { type: "string" },
        "user-data": { type: "string" },
        provider: { type: "string" },
        root: { type: "string" },
        nonce: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    throw new Usage((e as Error).message);
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  if (sub === "run") {
    if (!values.config === !values["user-data"])
      throw new Usage(`exactly one of --config and --user-data is required\n\n${USAGE}`);
    let raw: EnclaiveletConfig;
    let userDataSha256: string | undefined;
    if (values["user-data"] !== undefined) {
      const src = values["user-data"];
      const source = USER_DATA_SOURCES.includes(src as UserDataSource)
        ? (src as UserDataSource)
        : src.startsWith("/")
          ? { file: src }
          : undefined;
      if (!source) throw new Usage(`--user-data: must be ${USER_DATA_SOURCES.join(", ")} or an absolute file path`);
      let bytes: Buffer;
      try {
        bytes = await readUserData(source);
      } catch (e) {
        if (!(e instanceof UserDataReadError)) throw e;
        io.out(formatLogLine({ level: "error", event: "failed", reason: "user-data", error: e.message }));
        return 1;
      }
      const m = measuredConfig(bytes);
      raw = m.config;
      userDataSha256 = m.sha256;
    } else raw = loadConfig(values.config!);
    if (values.provider !== undefined && !PROVIDER_NAMES.includes(values.provider as ProviderName))
      throw new Usage(`--provider: must be one of ${PROVIDER_NAMES.join(", ")}`);
    const cfg: EnclaiveletConfig = {
      ...raw,
      ...(values.root !== undefined ? { root: rootFlag(values.root) } : {}),
      evidence: { ...raw.evidence, ...(values.provider ? { provider: values.provider as ProviderName } : {}) },
    };
    return (await runAgent(cfg, { log: (e) => io.out(formatLogLine(e)), userDataSha256 })).exitCode;
  }
  if (sub === "detect") {
    const cfg = values.config
      ? loadConfig(values.config)
      : parseConfig({ runtimeUrl: "https://unused.invalid", runtimeCaSha256: "0".repeat(64), workloadId: "detect" });
    for (const p of candidateProviders(cfg.evidence))
      io.out(`${p.name.padEnd(13)} ${(await p.available()) ? "available" : "absent"}`);
    return 0;
  }
  if (sub === "vtpm-evidence") return vtpmEvidence(values, io);
  throw new Usage(`unknown subcommand '${sub}'\n\n${USAGE}`);
}

/** `vtpm-evidence`: Vtpm.collect + wireVtpm, the same two calls run's attest makes, with the caller's nonce. */
async function vtpmEvidence(values: { config?: string; nonce?: string }, io: CommandIo): Promise<number> {
  const hex = values.nonce ?? "";
  if (!/^(?:[0-9a-fA-F]{2}){1,64}$/.test(hex)) throw new Usage("--nonce: must be 1..64 bytes in hex");
  const vtpmCfg = values.config ? loadConfig(values.config).evidence.vtpm : undefined;
  const vtpm = new Vtpm(vtpmCfg ?? { tcti: "device:/dev/tpmrm0" });
  try {
    const t = await vtpm.collect(Buffer.from(hex, "hex"));
    if (t.nitroDocumentError) io.err(`enclaivelet: no NitroTPM document: ${t.nitroDocumentError}`);
    io.out(JSON.stringify({ vtpm: wireVtpm(t) }));
    return 0;
  } catch (e) {
    if (!(e instanceof EvidenceError)) throw e;
    io.out(formatLogLine({ level: "error", event: "failed", reason: "vtpm", error: e.message }));
    return 1;
  }
}

function rootFlag(v: string): string {
  if (!v.startsWith("/")) throw new Usage("--root: must be an absolute path");
  return v;
}
