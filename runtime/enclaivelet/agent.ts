// The enclaivelet run: attest, fetch this workload's secrets, provision them, report status.
// Order matters for "no partial secrets": everything that talks to the runtime (attestation,
// bundle, certificate signing) happens first and writes nothing; only then is the volume unlocked
// and the files staged and committed together; the hook runs last.
import type { EnclaiveletConfig } from "./config.js";
import { RuntimeClient, RuntimeUnavailableError, PinMismatchError, RuntimeError } from "./client.js";
import { attest, sealedCall, AttestationRefusedError, ProtocolError, type AttestObserver, type AttestedSession } from "./attest.js";
import { parseBundle, resolveSecret, MissingSecretError, type ProvisioningBundle } from "./bundle.js";
import { selectProvider, type ProviderDeps } from "./evidence/detect.js";
import { EvidenceError, type EvidenceProvider } from "./evidence/types.js";
import { spawnRunner, CommandError, type CommandRunner } from "./exec.js";
import { stdoutLogger, type Logger } from "./log.js";
import { withBackoff, RetriesExhaustedError } from "./retry.js";
import { commitWrites, parseMode, renderEnvFile, ProvisionError, type FileWrite } from "./provision/files.js";
import { unlockVolume } from "./provision/luks.js";
import { planSsh } from "./provision/ssh.js";
import { planTls, currentCertStillGood } from "./provision/tls.js";
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
}

function classify(e: unknown): { reason: FailureReason; message: string } {
  const message = (e as Error)?.message ?? String(e);
  if (e instanceof AttestationRefusedError) return { reason: "refused", message };
  if (e instanceof RetriesExhaustedError) return { reason: "unreachable", message: `runtime unreachable: ${message}` };
  if (e instanceof RuntimeUnavailableError) return { reason: "unreachable", message };
  if (e instanceof PinMismatchError) return { reason: "pinning", message };
  if (e instanceof EvidenceError) return { reason: "evidence", message };
  if (e instanceof ProtocolError || e instanceof RuntimeError) return { reason: "protocol", message };
  if (e instanceof ProvisionError || e instanceof MissingSecretError || e instanceof CommandError) return { reason: "provision", message };
  return { reason: "provision", message };
}

export async function runAgent(cfg: EnclaiveletConfig, deps: AgentDeps = {}): Promise<AgentOutcome> {
  const log = deps.log ?? stdoutLogger;
  const runner = deps.runner ?? spawnRunner;
  const now = deps.now ?? Date.now;
  const client = new RuntimeClient(cfg.runtimeUrl, cfg.runtimeCaSha256);
  const backoff = { ...cfg.retry, sleep: deps.sleep };
  let session: AttestedSession | undefined;
  log({ level: "info", event: "start", workload: cfg.workloadId, runtime: cfg.runtimeUrl, root: cfg.root });
  try {
    const provider = deps.provider ?? (await selectProvider(cfg.evidence, { runner, simulator: deps.simulator }));
    log({ level: "info", event: "evidence.provider", provider: provider.name });

    // 1. Attest and log in (a fresh nonce per attempt: nonces are single use).
    session = await withBackoff("attest", () => attest(client, cfg, provider, log, deps.onAttestRequest), backoff, log);
    const s = session;

    // 2. Everything from the runtime, in memory; nothing is written yet.
    const bundle = parseBundle(await withBackoff("provision", () => sealedCall(client, s, "GET", "nitride/provision"), backoff, log));
    log({ level: "info", event: "bundle.received", kv: Object.keys(bundle.kv).length, diskKey: bundle.diskKey !== undefined, tls: bundle.tls !== undefined });
    const writes = await plan(cfg, bundle, s, client, runner, now(), backoff, log);
    if (cfg.volume && !bundle.diskKey) throw new ProvisionError("volume", "the bundle has no disk key (is disk_key enabled for this workload?)");

    // 3. Apply: volume first (files may live on it), then all files at once, then the hook.
    if (cfg.volume && bundle.diskKey) await unlockVolume(cfg.volume, bundle.diskKey, cfg.root, runner, log);
    const committed = await commitWrites(cfg.root, writes, runner, log);
    if (cfg.hook) await runHook(cfg.hook, cfg.root, runner, log);

    const outcome: AgentOutcome = { ok: true, exitCode: 0, ...committed };
    log({ level: "info", event: "done", written: committed.written.length, unchanged: committed.unchanged.length });
    await reportStatus(client, session, cfg, outcome, log);
    return outcome;
  } catch (e) {
    const { reason, message } = classify(e);
    const outcome: AgentOutcome = { ok: false, exitCode: 1, reason, error: message, written: [], unchanged: [] };
    log({ level: "error", event: "failed", reason, error: message });
    if (session) await reportStatus(client, session, cfg, outcome, log);
    return outcome;
  }
}

async function plan(
  cfg: EnclaiveletConfig, bundle: ProvisioningBundle, s: AttestedSession, client: RuntimeClient, runner: CommandRunner, now: number,
  backoff: Parameters<typeof withBackoff>[2], log: Logger,
): Promise<FileWrite[]> {
  const writes: FileWrite[] = [];
  for (const f of cfg.files) {
    writes.push({ path: f.path, content: resolveSecret(bundle, f.secret, f.field, f.base64), mode: parseMode(f.mode), owner: f.owner, group: f.group, what: `secret ${f.secret}${f.field ? `#${f.field}` : ""}` });
  }
  for (const f of cfg.envFiles) {
    const vars: Record<string, string> = {};
    for (const [k, ref] of Object.entries(f.vars)) vars[k] = resolveSecret(bundle, ref).toString("utf8");
    writes.push({ path: f.path, content: renderEnvFile(vars), mode: parseMode(f.mode), owner: f.owner, group: f.group, what: `environment file (${Object.keys(vars).join(", ")})` });
  }
  if (cfg.tls) {
    const tls = cfg.tls;
    if (bundle.tls && !(await currentCertStillGood(tls, cfg.root, now))) {
      // The runtime issued the key pair (PKI `issue`) and sealed it to our ephemeral key.
      const owner = { owner: tls.owner, group: tls.group };
      writes.push({ path: tls.keyPath, content: Buffer.from(bundle.tls.private_key.trim() + "\n"), mode: 0o600, ...owner, what: "tls private key" });
      writes.push({ path: tls.certPath, content: Buffer.from(bundle.tls.certificate.trim() + "\n"), mode: 0o644, ...owner, what: "tls certificate" });
      const chain = bundle.tls.ca_chain?.length ? bundle.tls.ca_chain : bundle.tls.issuing_ca ? [bundle.tls.issuing_ca] : [];
      if (tls.chainPath && chain.length) writes.push({ path: tls.chainPath, content: Buffer.from(chain.map((c) => c.trim()).join("\n") + "\n"), mode: 0o644, ...owner, what: "tls issuing chain" });
    } else if (!bundle.tls) {
      const r = await planTls(tls, cfg.root, async (csr) => {
        const body = (await withBackoff("pki.sign", () => sealedCall(client, s, "POST", `${tls.mount}/sign/${tls.role}`, {
          csr, common_name: tls.commonName, ...(tls.altNames.length ? { alt_names: tls.altNames.join(",") } : {}), ...(tls.ttl ? { ttl: tls.ttl } : {}),
        }), backoff, log)) as { data?: { certificate?: string; issuing_ca?: string; ca_chain?: string[] } };
        if (!body?.data?.certificate) throw new ProtocolError(`${tls.mount}/sign/${tls.role}: answer has no certificate`);
        return { certificate: body.data.certificate, issuing_ca: body.data.issuing_ca, ca_chain: body.data.ca_chain };
      }, now);
      writes.push(...r.writes);
    }
    log({ level: "info", event: "tls.planned", renew: writes.some((w) => w.path === tls.certPath) });
  }
  if (cfg.ssh) {
    const ssh = cfg.ssh;
    const r = await planSsh(ssh, cfg.root, runner, async (publicKey) => {
      const body = (await withBackoff("ssh.sign", () => sealedCall(client, s, "POST", `${ssh.mount}/sign/${ssh.role}`, {
        public_key: publicKey, cert_type: "host", ...(ssh.principals.length ? { valid_principals: ssh.principals.join(",") } : {}),
      }), backoff, log)) as { data?: { signed_key?: string } };
      if (!body?.data?.signed_key) throw new ProtocolError(`${ssh.mount}/sign/${ssh.role}: answer has no signed_key`);
      return body.data.signed_key;
    }, now);
    writes.push(...r.writes);
    log({ level: "info", event: "ssh.planned", renewed: r.renewed.length, kept: r.kept.length });
  }
  return writes;
}

/** Tells the runtime how provisioning went (best effort: the journal is the record of last resort). */
async function reportStatus(client: RuntimeClient, s: AttestedSession, cfg: EnclaiveletConfig, o: AgentOutcome, log: Logger): Promise<void> {
  try {
    await client.request("POST", "nitride/status", {
      token: s.vaultToken,
      body: { workload_id: cfg.workloadId, ok: o.ok, ...(o.reason ? { reason: o.reason, error: o.error } : {}), written: o.written.length, unchanged: o.unchanged.length },
    });
    log({ level: "info", event: "status.reported" });
  } catch (e) {
    log({ level: "warn", event: "status.not-reported", reason: (e as Error).message });
  }
}
