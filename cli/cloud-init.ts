// `buckypaper cloud-init render`: prints the user-data that wires the enclaivelet, to inspect it.
import { parseFlags, parseHexFlag, readFlagFile } from "./args.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import {
  CLOUD_PLATFORMS,
  renderUserData,
  azureCustomData,
  UserDataError,
  type AgentDelivery,
  type CloudPlatform,
  type Tee,
  type UserDataInput,
} from "../runtime/guest/cloud-init/index.js";
import { PROVIDER_NAMES, type ProviderName } from "../runtime/guest/config.js";

const HELP = `usage: buckypaper cloud-init render --platform aws|azure|gcp|proxmox|qemu --runtime-url URL
         --runtime-ca-fingerprint SHA256HEX --workload ID [--tee snp|tdx]
         [--agent-url URL --agent-sha256 HEX [--agent-insecure-tls]] [--provider NAME]
         [--needs-secrets UNIT]... [--hostname NAME] [--plan FILE] [--base64]

Prints #cloud-config user-data (never a secret). Without --agent-url the agent is expected to be baked
into the image at /opt/buckypaper/enclaivelet. --plan names a JSON file with the provisioning sections of
the agent config (volume, ssh, tls, files, envFiles, hook, retry; see docs/enclaivelet.md).
--base64 prints it encoded (Azure customData).`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === "--help" || sub === "-h") {
    io.out(HELP);
    return sub ? Exit.ok : Exit.usage;
  }
  if (sub !== "render") throw new UsageError(`unknown subcommand '${sub}' (expected 'render')`);
  const { values } = parseFlags(rest, {
    platform: { type: "string" },
    "runtime-url": { type: "string" },
    "runtime-ca-fingerprint": { type: "string" },
    workload: { type: "string" },
    tee: { type: "string" },
    "agent-url": { type: "string" },
    "agent-sha256": { type: "string" },
    "agent-insecure-tls": { type: "boolean" },
    provider: { type: "string" },
    "needs-secrets": { type: "string", multiple: true },
    hostname: { type: "string" },
    plan: { type: "string" },
    base64: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    io.out(HELP);
    return Exit.ok;
  }
  for (const f of ["platform", "runtime-url", "runtime-ca-fingerprint", "workload"] as const) {
    if (!values[f]) throw new UsageError(`--${f} is required\n\n${HELP}`);
  }
  const platform = values.platform as CloudPlatform;
  if (!CLOUD_PLATFORMS.includes(platform))
    throw new UsageError(`--platform: must be one of ${CLOUD_PLATFORMS.join(", ")}`);
  if (values.tee !== undefined && values.tee !== "snp" && values.tee !== "tdx")
    throw new UsageError("--tee: must be snp or tdx");
  if (values.provider !== undefined && !PROVIDER_NAMES.includes(values.provider as ProviderName))
    throw new UsageError(`--provider: must be one of ${PROVIDER_NAMES.join(", ")}`);
  const fingerprint = parseHexFlag(
    "--runtime-ca-fingerprint",
    values["runtime-ca-fingerprint"]!.replace(/:/g, ""),
    32,
  ).toString("hex");
  let agent: AgentDelivery = { kind: "preinstalled" };
  if (values["agent-url"] || values["agent-sha256"]) {
    if (!values["agent-url"] || !values["agent-sha256"])
      throw new UsageError("--agent-url and --agent-sha256 go together");
    agent = {
      kind: "download",
      url: values["agent-url"],
      sha256: parseHexFlag("--agent-sha256", values["agent-sha256"], 32).toString("hex"),
      insecureTls: values["agent-insecure-tls"] ?? false,
    };
  }
  let provision: UserDataInput["provision"];
  if (values.plan) {
    try {
      provision = JSON.parse(readFlagFile("--plan", values.plan).toString("utf8"));
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`--plan ${values.plan}: not JSON (${(e as Error).message})`);
    }
    const allowed = ["volume", "ssh", "tls", "files", "envFiles", "hook", "retry"];
    const extra = Object.keys(provision ?? {}).filter((k) => !allowed.includes(k));
    if (typeof provision !== "object" || provision === null || extra.length)
      throw new UsageError(
        `--plan: must be an object with only ${allowed.join(", ")}${extra.length ? ` (unexpected: ${extra.join(", ")})` : ""}`,
      );
  }
  try {
    const r = renderUserData({
      provision,
      platform,
      runtimeUrl: values["runtime-url"]!,
      runtimeCaSha256: fingerprint,
      workloadId: values.workload!,
      tee: values.tee as Tee | undefined,
      agent,
      evidenceProvider: values.provider as ProviderName | undefined,
      servicesNeedingSecrets: values["needs-secrets"],
      hostname: values.hostname,
    });
    io.out(values.base64 ? azureCustomData(r) : r.text);
    return Exit.ok;
  } catch (e) {
    if (e instanceof UserDataError) throw new UsageError(e.message);
    throw e;
  }
}
