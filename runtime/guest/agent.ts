// The enclaivelet run: attest, fetch this workload's secrets, provision them, report to the journal.
// (The runtime has no status endpoint; its audit log records every release with the evidence digest.)
// Order matters for "no partial secrets": everything that talks to the runtime (attestation,
// bundle, certificate signing) happens first and writes nothing; only then is the volume unlocked
// and the files staged and committed together; the hook runs last.
import type { EnclaiveletConfig } from "./config.js";
import { RuntimeClient, RuntimeUnavailableError, PinMismatchError, RuntimeError } from "./client.js";
import { attest, sealedCall, AttestationRefusedError, ProtocolError, type AttestObserver } from "./attest.js";
import { parseBundle, resolveSecret, MissingSecretError, type ProvisioningBundle } from "./bundle.js";
import { selectProvider, type ProviderDeps } from "./evidence/detect.js";
import { EvidenceError, type EvidenceProvider } from "./evidence/types.js";
import { spawnRunner, CommandError, type CommandRunner } from "./exec.js";
import { stdoutLogger, type Logger } from "./log.js";
import { withBackoff, RetriesExhaustedError } from "./retry.js";
import { commitWrites, parseMode, renderEnvFile, ProvisionError, type FileWrite } from "./provision/files.js";
import { unlockVolume } from "./provision/luks.js";
import { planSsh, prepareHostKeys, type SshHostKeys } from "./provision/ssh.js";
import { planTls } from "./provision/tls.js";
import { runHook } from "./provision/hook.js";

export type FailureReason = "refused" | "unreachable" | "pinning" | "evidence" | "protocol" | "provision";

export interface AgentOutcome {
  ok: boolean;
  exitCode: number;
  reason?: FailureReason;
  error?: string;
  written: string[];
  unchanged: string[];
}

export interface AgentDeps extends ProviderDeps {
  log?: Logger;
  runner?: CommandRunner;
  /** Use this evidence provider instead of selecting one from the config. */
  provider?: EvidenceProvider;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  onAttestRequest?: AttestObserver;
  /** SHA-256 (hex) of the user-data the agent read itself (userdata.ts): bound into the evidence. */
  userDataSha256?: string;
}

function classify(e: unknown): { reason: FailureReason; message: string } {
  const message = (e as Error)?.message ?? String(e);
  if (e instanceof AttestationRefusedError) return { reason: "refused", message };
  if (e instanceof RetriesExhaustedError) return { reason: "unreachable", message: `runtime unreachable: ${message}` };
  if (e instanceof RuntimeUnavailableError) return { reason: "unreachable", message };
  if (e instanceof PinMismatchError) return { reason: "pinning", message };
  if (e instanceof EvidenceError) return { reason: "evidence", message };
  if (e instanceof ProtocolError || e instanceof RuntimeError) return { reason: "protocol", message };
  if (e instanceof ProvisionError || e instanceof MissingSecretError || e instanceof CommandError)
    return { reason: "provision", message };
  return { reason: "provision", message };
}

export async function runAgent(cfg: EnclaiveletConfig, deps: AgentDeps = {}): Promise<AgentOutcome> {
  const log = deps.log ?? stdoutLogger;
  const runner = deps.runner ?? spawnRunner;
  const now = deps.now ?? Date.now;
  const client = new RuntimeClient(cfg.runtimeUrl, cfg.runtimeCaSha256, undefined, cfg.runtimeAttestation);
  const backoff = { ...cfg.retry, sleep: deps.sleep };
  log({ level: "info", event: "start", workload: cfg.workloadId, runtime: cfg.runtimeUrl, root: cfg.root });
  try {
    const provider = deps.provider ?? (await selectProvider(cfg.evidence, { runner, simulator: deps.simulator }));
    log({ level: "info", event: "evidence.provider", provider: provider.name });

    // 1. Attest and log in (a fresh nonce per attempt: nonces are single use).
    if (deps.userDataSha256) log({ level: "info", event: "user-data.measured", sha256: deps.userDataSha256 });
    const s = await withBackoff(
      "attest",
      () => attest(client, cfg, provider, log, deps.onAttestRequest, deps.userDataSha256),
      backoff,
      log,
    );

    // 2. Everything from the runtime, in memory; nothing is written yet. SSH host keys are
    //    prepared first (generated in a private temp dir if missing) so their certificates come
    //    back in the same bundle.
    const hostKeys = cfg.ssh ? await prepareHostKeys(cfg.ssh, cfg.root, runner) : undefined;
    const request = hostKeys ? { host_keys: hostKeys.keys.map((k) => k.publicKey) } : {};
    const bundle = parseBundle(
      await withBackoff("provision", () => sealedCall(client, s, "POST", "nitride/provision", request), backoff, log),
    );
    log({
      level: "info",
      event: "bundle.received",
      kv: Object.keys(bundle.kv).length,
      diskKey: bundle.diskKey !== undefined,
      tls: bundle.tls !== undefined,
      ssh: bundle.ssh !== undefined,
    });
    const writes = await plan(cfg, bundle, hostKeys, now(), log);
    if (cfg.volume && !bundle.diskKey)
      throw new ProvisionError("volume", "the bundle has no disk key (is secrets.disk_key enabled for this workload?)");

    // 3. Apply: volume first (files may live on it), then all files at once, then the hook.
    if (cfg.volume && bundle.diskKey) await unlockVolume(cfg.volume, bundle.diskKey, cfg.root, runner, log);
    const committed = await commitWrites(cfg.root, writes, runner, log);
    if (cfg.hook) await runHook(cfg.hook, cfg.root, runner, log);

    log({ level: "info", event: "done", written: committed.written.length, unchanged: committed.unchanged.length });
    return { ok: true, exitCode: 0, ...committed };
  } catch (e) {
    const { reason, message } = classify(e);
    log({ level: "error", event: "failed", reason, error: message });
    return { ok: false, exitCode: 1, reason, error: message, written: [], unchanged: [] };
  }
}

async function plan(
  cfg: EnclaiveletConfig,
  bundle: ProvisioningBundle,
  hostKeys: SshHostKeys | undefined,
  now: number,
  log: Logger,
): Promise<FileWrite[]> {
  const writes: FileWrite[] = [];
  for (const f of cfg.files) {
    writes.push({
      path: f.path,
      content: resolveSecret(bundle, f.secret, f.field, f.base64),
      mode: parseMode(f.mode),
      owner: f.owner,
      group: f.group,
      what: `secret ${f.secret}${f.field ? `#${f.field}` : ""}`,
    });
  }
  for (const f of cfg.envFiles) {
    const vars: Record<string, string> = {};
    for (const [k, ref] of Object.entries(f.vars)) vars[k] = resolveSecret(bundle, ref).toString("utf8");
    writes.push({
      path: f.path,
      content: renderEnvFile(vars),
      mode: parseMode(f.mode),
      owner: f.owner,
      group: f.group,
      what: `environment file (${Object.keys(vars).join(", ")})`,
    });
  }
  if (cfg.tls) {
    const r = await planTls(cfg.tls, cfg.root, bundle.tls, now);
    writes.push(...r.writes);
    log({ level: "info", event: "tls.planned", renew: r.renewed });
  }
  if (cfg.ssh && hostKeys) {
    const r = await planSsh(cfg.ssh, cfg.root, hostKeys, bundle.ssh, now);
    writes.push(...r.writes);
    log({ level: "info", event: "ssh.planned", renewed: r.renewed.length, kept: r.kept.length });
  }
  return writes;
}
