// Runs the buckypaper runtime as a long-lived server process, on this machine or on a host over SSH,
// then initialises and unseals it through its Vault-compatible API. Pulumi-free: the dynamic provider
// in provider/resources.ts RuntimeService forwards to these functions.
//
// Process management is plain POSIX shell (mkdir, setsid/nohup, kill), run locally with `sh -c` or
// remotely with the OpenSSH client, so both modes share one code path.
//
// Secure default (docs/security.md "Deployer credential", "Recovery shares"): after init the root token
// sets up the deployer credential (provider/bootstrap.ts) and is revoked; the Shamir shares leave this
// process only encrypted to operator public keys (runtime/client/recovery-share.ts). Neither the root
// token, nor a share, nor the deployer's private key is ever an output (so never in Pulumi state).
// `insecureKeepRootTokenInState` keeps the old behaviour: root token and unseal keys as secret outputs.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtimeRequest, certFingerprint, fetchPinnedCertificate, type RuntimeConnection } from "./client.js";
import { bootstrapDeployer, readWorkloadAudience, rotateDeployerKey } from "./bootstrap.js";
import { readPrivateFile, writePrivateFile, type DeployerAuth } from "../runtime/client/deployer.js";
import {
  decryptShare,
  encryptShare,
  generateRecoveryKey,
  parseRecoveryPublicKey,
  shareKeyId,
  recoveryKeyId,
} from "../runtime/client/recovery-share.js";
import type { JWK } from "jose";
import { shellQuote } from "./shell.js";
import { retireIfRekeyed, type RetiredShares } from "./recovery-freshness.js";
import { SSH_DEFAULT_PORT, SSH_DEFAULT_USER, type SshTarget } from "./ssh-target.js";

export type { SshTarget };

export interface ServiceInputs {
  /** Absent: run on this machine. */
  ssh?: SshTarget;
  /** Directory that holds the runtime's config, data, log and pid file (created, 0700). */
  stateDir: string;
  /** Command that starts the runtime server, as a shell word list; "{config}" is replaced. */
  serverCommand: string[];
  /** Config file content written to <stateDir>/runtime.json before start. */
  config: string;
  /** URL the runtime answers on, as seen from the deploying machine. */
  url: string;
  keyShares: number;
  keyThreshold: number;
  /** Seconds to wait for the server to answer. */
  startTimeout?: number;
  /**
   * The old behaviour, for those who need it: keep the root token (not revoked) and the plaintext unseal
   * keys as secret outputs in Pulumi state, and set up no deployer credential.
   */
  insecureKeepRootTokenInState?: boolean;
  /** Absolute path where the deployer's private key is written (0600) at init. */
  deployerKeyFile?: string;
  /** The deployer's own Ed25519 public key (PEM); its private key is BUCKYPAPER_DEPLOYER_KEY. No file is written. */
  deployerPublicKey?: string;
  /** Any value; changing it rotates the deployer key on the next `pulumi up`. */
  deployerKeyRotation?: string;
  /** Operators' public JWKs (JSON), one per share: each share is encrypted to one of them. */
  recoveryKeys?: string[];
  /** Without recoveryKeys: the single share is encrypted to a key generated here (private JWK, 0600). */
  localRecoveryKeyFile?: string;
  /** Writes only root may make (e.g. nitride/config), applied at init before the root token is revoked. */
  rootWrites?: { path: string; body: Record<string, unknown> }[];
}

export interface ServiceOutputs extends ServiceInputs {
  /** Only with insecureKeepRootTokenInState. */
  rootToken?: string;
  /** Only with insecureKeepRootTokenInState. */
  unsealKeys?: string[];
  /** Where the deployer credential is (no secret). */
  deployer?: DeployerAuth;
  /** The Shamir shares, each a JWE to one operator key (ciphertext only). */
  recoveryShares?: string[];
  /** What a JWT role binds to admit this runtime's workload tokens (its Nitride audience; not a secret). */
  workloadAudience?: string;
  caPem: string;
  caFingerprint: string;
  running: boolean;
  /** Check value of the unseal key `recoveryShares` (or `unsealKeys`) are shares of (sys/seal-status). */
  unsealKeyCheck?: string;
  /** Shares a rekey replaced, kept with the check of their key (recovery-freshness.ts). */
  retiredRecoveryShares?: RetiredShares[];
}

/** Runs a shell script locally or over SSH; resolves with stdout, rejects with stderr's tail. */
export async function sh(target: SshTarget | undefined, script: string, stdin = ""): Promise<string> {
  let cmd = "sh";
  let args = ["-c", script];
  let cleanup = () => {};
  if (target) {
    const dir = mkdtempSync(join(tmpdir(), "bk-ssh-"));
    cleanup = () => rmSync(dir, { recursive: true, force: true });
    const key = join(dir, "id");
    writeFileSync(key, target.privateKey.endsWith("\n") ? target.privateKey : `${target.privateKey}\n`, {
      mode: 0o600,
    });
    const known = join(dir, "known_hosts");
    writeFileSync(known, target.hostKey ?? "", { mode: 0o600 });
    cmd = "ssh";
    args = [
      "-i",
      key,
      "-p",
      String(target.port ?? SSH_DEFAULT_PORT),
      "-o",
      "BatchMode=yes",
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      `UserKnownHostsFile=${known}`,
      "-o",
      `StrictHostKeyChecking=${target.hostKey ? "yes" : "accept-new"}`,
      "-o",
      "ConnectTimeout=15",
      // "--": a user or host starting with "-" is a destination, never an ssh option.
      "--",
      `${target.user ?? SSH_DEFAULT_USER}@${target.host}`,
      `sh -c ${shellQuote(script)}`,
    ];
  }
  try {
    return await new Promise<string>((resolve, reject) => {
      const p = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      let err = "";
      p.stdout.on("data", (d: Buffer) => (out += d.toString()));
      p.stderr.on("data", (d: Buffer) => (err += d.toString()));
      p.on("error", reject);
      p.stdin.on("error", () => {}); // the script may exit without reading its input
      p.on("close", (code) =>
        code === 0
          ? resolve(out)
          : reject(
              new Error(
                `${target ? `ssh ${target.host}` : "sh"}: exit ${code}: ${err.trim().split("\n").slice(-5).join(" | ")}`,
              ),
            ),
      );
      p.stdin.end(stdin);
    });
  } finally {
    cleanup();
  }
}

/**
 * Shell function `alive PIDFILE`: the process exists and is not a zombie. A killed server whose parent
 * (init, in containers often a lazy reaper) has not reaped it yet still passes `kill -0`.
 */
const ALIVE = [
  `alive() { p="$(cat "$1" 2>/dev/null)"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1`,
  `  if [ -r "/proc/$p/stat" ]; then [ "$(sed -e 's/^.*) //' "/proc/$p/stat" | cut -c1)" != Z ]; fi; }`,
].join("\n");

function startScript(i: ServiceInputs): string {
  const d = shellQuote(i.stateDir);
  const args = i.serverCommand.map((w) => shellQuote(w.replace("{config}", `${i.stateDir}/runtime.json`))).join(" ");
  // The inner shell records its own PID and then becomes the server (exec), so the pid file names the
  // server whether or not setsid had to fork. setsid detaches it from our session so it outlives
  // `pulumi up` (and the SSH connection).
  const inner = shellQuote(
    `echo $$ > ${d}/runtime.pid.new && mv ${d}/runtime.pid.new ${d}/runtime.pid && exec ${args}`,
  );
  return [
    "set -e",
    ALIVE,
    `mkdir -p ${d}`,
    `chmod 700 ${d}`,
    `cat > ${d}/runtime.json`,
    `if alive ${d}/runtime.pid; then exit 0; fi`,
    `rm -f ${d}/runtime.pid`,
    `cd ${d}`,
    `if command -v setsid >/dev/null; then setsid sh -c ${inner} >>${d}/runtime.log 2>&1 </dev/null & else nohup sh -c ${inner} >>${d}/runtime.log 2>&1 </dev/null & fi`,
    `n=0; while [ ! -f ${d}/runtime.pid ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done`,
    `[ -f ${d}/runtime.pid ] || { echo "runtime did not start" >&2; exit 1; }`,
  ].join("\n");
}

function stopScript(i: Pick<ServiceInputs, "stateDir">, removeData: boolean): string {
  const d = shellQuote(i.stateDir);
  return [
    ALIVE,
    `if [ -f ${d}/runtime.pid ]; then pid="$(cat ${d}/runtime.pid)"`,
    `  kill "$pid" 2>/dev/null || true`,
    `  n=0; while alive ${d}/runtime.pid && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done`,
    `  kill -9 "$pid" 2>/dev/null || true; rm -f ${d}/runtime.pid; fi`,
    removeData ? `rm -rf ${d}` : "true",
  ].join("\n");
}

/** Waits for the server process to answer HTTP(S) on its URL; fails fast with the log tail if it died. */
async function waitForServer(i: ServiceInputs, caPem?: string): Promise<void> {
  const deadline = Date.now() + (i.startTimeout ?? 60) * 1000;
  let last: string;
  for (;;) {
    try {
      // Any HTTP answer (200, 501 uninitialised, 503 sealed) means the listener is up.
      await runtimeRequest(conn(i, "-", caPem), "GET", "sys/seal-status", undefined, 5_000);
      return;
    } catch (e) {
      last = (e as Error).message;
      if (/HTTP \d+/.test(last)) return;
    }
    await failIfDead(i, last);
    if (Date.now() > deadline)
      throw new Error(
        `runtime at ${i.url} did not answer within ${i.startTimeout ?? 60}s (${last})${await logTail(i)}`,
      );
    await new Promise((r) => setTimeout(r, i.ssh ? 1000 : 250));
  }
}

async function logTail(i: ServiceInputs): Promise<string> {
  const log = await sh(i.ssh, `tail -n 15 ${shellQuote(i.stateDir)}/runtime.log 2>/dev/null || true`).catch(() => "");
  return log.trim() ? `; runtime log:\n${log}` : "";
}

async function failIfDead(i: ServiceInputs, why: string): Promise<void> {
  const alive = await sh(i.ssh, `${ALIVE}\nalive ${shellQuote(i.stateDir)}/runtime.pid && echo yes || echo no`).catch(
    () => "yes",
  );
  if (alive.trim() === "no") throw new Error(`runtime server exited (${why})${await logTail(i)}`);
}

/**
 * Before init, a TLS runtime serves a throwaway certificate whose SHA-256 it prints to its log; we
 * read it over the same trusted channel that started it (local shell or SSH) and pin it for the init
 * call, whose answer carries the real runtime CA.
 */
async function bootstrapFingerprint(i: ServiceInputs): Promise<string> {
  const d = shellQuote(i.stateDir);
  const tries = (i.startTimeout ?? 60) * 4;
  const script = [
    ALIVE,
    `n=0; while [ $n -lt ${tries} ]; do`,
    `  l="$(grep -o 'Bootstrap TLS certificate SHA-256[^:]*: *[0-9a-fA-F:]*' ${d}/runtime.log 2>/dev/null | tail -n 1)"`,
    `  if [ -n "$l" ]; then echo "\${l##*: }"; exit 0; fi`,
    `  if ! alive ${d}/runtime.pid; then exit 3; fi`,
    `  sleep 0.25; n=$((n+1)); done; exit 4`,
  ].join("\n");
  try {
    return (await sh(i.ssh, script)).trim();
  } catch (e) {
    throw new Error(
      `runtime did not report its bootstrap TLS certificate (${(e as Error).message})${await logTail(i)}`,
      { cause: e },
    );
  }
}

function conn(i: Pick<ServiceInputs, "url">, token: string, caPem?: string): RuntimeConnection {
  return { url: i.url, token, ...(caPem ? { caPem } : {}) };
}

async function unseal(i: ServiceInputs, keys: string[], caPem: string | undefined): Promise<void> {
  for (const key of keys.slice(0, i.keyThreshold)) {
    const r = await runtimeRequest(conn(i, "-", caPem), "POST", "sys/unseal", { key });
    if ((r.body as { sealed?: boolean } | undefined)?.sealed === false) return;
  }
  throw new Error(`runtime at ${i.url} is still sealed after ${i.keyThreshold} key(s)`);
}

/** Starts, initialises and unseals a fresh runtime, then (by default) bootstraps the deployer credential. */
export async function createService(i: ServiceInputs): Promise<ServiceOutputs> {
  // Recipients first: a bad operator key fails before anything starts.
  const recipients = i.insecureKeepRootTokenInState ? [] : await recoveryRecipients(i);
  await sh(i.ssh, startScript(i), i.config);
  try {
    const https = i.url.startsWith("https:");
    const bootCa = https ? await fetchPinnedCertificate(i.url, await bootstrapFingerprint(i)) : undefined;
    await waitForServer(i, bootCa);
    const r = await runtimeRequest(conn(i, "-", bootCa), "POST", "sys/init", {
      secret_shares: i.keyShares,
      secret_threshold: i.keyThreshold,
    });
    const body = r.body as
      { keys_base64?: string[]; keys?: string[]; root_token?: string; runtime_ca_pem?: string } | undefined;
    const keys = body?.keys_base64 ?? body?.keys;
    if (!keys?.length || !body?.root_token)
      throw new Error(`runtime at ${i.url}: sys/init returned no keys (already initialised?)`);
    const caPem = https ? body.runtime_ca_pem : "";
    if (https && !caPem) throw new Error(`runtime at ${i.url}: sys/init returned no runtime CA`);
    await unseal(i, keys, caPem || undefined);
    // Which key the shares split: a refresh after `runtime rekey` retires them (recovery-freshness.ts).
    const unsealKeyCheck = (await serviceStatus({ ...i, caPem: caPem ?? "" } as ServiceOutputs)).unsealKeyCheck;
    const common = {
      ...i,
      caPem: caPem ?? "",
      caFingerprint: caPem ? certFingerprint(caPem) : "",
      running: true,
      unsealKeyCheck,
    };
    if (i.insecureKeepRootTokenInState) {
      const root = conn(i, body.root_token, caPem || undefined);
      for (const w of i.rootWrites ?? []) await runtimeRequest(root, "POST", w.path, w.body);
      const workloadAudience = await readWorkloadAudience(root);
      return defined({ ...common, rootToken: body.root_token, unsealKeys: keys, workloadAudience });
    }
    const recoveryShares = await encryptShares(i, keys, recipients);
    let workloadAudience: string | undefined;
    const deployer = await bootstrapDeployer({
      rootToken: body.root_token,
      url: i.url,
      caPem: caPem || undefined,
      keyFile: deployerKeyFileOf(i),
      publicPem: i.deployerPublicKey,
      rootWrites: i.rootWrites,
      beforeRevoke: async (root) => void (workloadAudience = await readWorkloadAudience(root)),
    });
    return defined({ ...common, deployer, recoveryShares, workloadAudience });
  } catch (e) {
    await sh(i.ssh, stopScript(i, true)).catch(() => {});
    throw e;
  }
}

function deployerKeyFileOf(i: Pick<ServiceInputs, "deployerKeyFile">): string {
  if (!i.deployerKeyFile) throw new Error("deployerKeyFile is required (where the deployer's private key is kept)");
  return i.deployerKeyFile;
}

/** Who a runtime's recovery shares are encrypted to (also the vHSM guest's handlers). */
export type RecoveryInputs = Pick<
  ServiceInputs,
  "recoveryKeys" | "localRecoveryKeyFile" | "keyShares" | "keyThreshold" | "deployerKeyFile" | "url"
>;

/** The operators' public keys, or a local recovery key generated now (private JWK written 0600). */
export async function recoveryRecipients(i: RecoveryInputs): Promise<JWK[]> {
  if (i.recoveryKeys?.length) return i.recoveryKeys.map((k, n) => parseRecoveryPublicKey(k, `recoveryKeys[${n}]`));
  if (!i.localRecoveryKeyFile)
    throw new Error("recoveryKeys or localRecoveryKeyFile is required (who receives the recovery shares)");
  if (i.keyShares !== 1)
    throw new Error(`keyShares is ${i.keyShares}: more than one share needs recoveryKeys (one per share)`);
  deployerKeyFileOf(i);
  const { publicJwk, privateJwk } = await generateRecoveryKey();
  writePrivateFile(i.localRecoveryKeyFile, `${JSON.stringify(privateJwk)}\n`);
  return [publicJwk];
}

export async function encryptShares(i: RecoveryInputs, keys: string[], to: JWK[]): Promise<string[]> {
  if (to.length !== keys.length)
    throw new Error(`keyShares is ${keys.length} but ${to.length} recovery key(s) were given: one per share`);
  return Promise.all(
    keys.map((key, n) =>
      encryptShare({ v: 1, index: n + 1, shares: keys.length, threshold: i.keyThreshold, key }, to[n]),
    ),
  );
}

/** Private recovery keys available on this machine: BUCKYPAPER_RECOVERY_KEY (a JWK) and the local key file. */
function localRecoveryKeys(o: RecoveryInputs): JWK[] {
  const out: JWK[] = [];
  const env = process.env.BUCKYPAPER_RECOVERY_KEY;
  if (env && env.trim()) out.push(JSON.parse(env) as JWK);
  if (o.localRecoveryKeyFile) {
    try {
      out.push(JSON.parse(readPrivateFile(o.localRecoveryKeyFile, "recovery key file")) as JWK);
    } catch {
      // not on this machine: operators unseal by hand
    }
  }
  return out;
}

/** Unseals with the shares that the recovery keys on this machine open; a clear error when too few do. */
async function unsealWithRecovery(o: ServiceOutputs, caPem: string | undefined): Promise<void> {
  await unseal(o, await openLocalShares(o, o.recoveryShares ?? []), caPem);
}

/** The unseal keys in the shares that the recovery keys on this machine open (at least the threshold, else an error). */
export async function openLocalShares(o: RecoveryInputs, shares: string[]): Promise<string[]> {
  const keys = localRecoveryKeys(o);
  const byKid = new Map<string, JWK>();
  for (const k of keys) byKid.set(await recoveryKeyId(k), k);
  const opened: string[] = [];
  for (const jwe of shares) {
    const k = byKid.get(shareKeyId(jwe) ?? "");
    if (k) opened.push((await decryptShare(jwe, k)).key);
  }
  if (opened.length < o.keyThreshold)
    throw new Error(
      `runtime at ${o.url} is sealed and Pulumi holds no unseal key (by design). Operators: unseal it with ` +
        `\`buckypaper runtime unseal --share <share.jwe> --recovery-key <your private JWK>\` (${o.keyThreshold} of ` +
        `${shares.length} shares; \`pulumi stack output\` lists the encrypted shares), then run \`pulumi up\` again`,
    );
  return opened;
}

/** Is it up and unsealed? (refresh) */
export async function serviceRunning(o: ServiceOutputs): Promise<boolean> {
  return (await serviceStatus(o)).running;
}

/** Up and unsealed, and the check value of the unseal key in force (sys/seal-status; none while sealed). */
async function serviceStatus(o: ServiceOutputs): Promise<{ running: boolean; unsealKeyCheck?: string }> {
  try {
    const r = await runtimeRequest(conn(o, "-", o.caPem || undefined), "GET", "sys/seal-status", undefined, 5_000);
    const b = r.body as { sealed?: boolean; unseal_key_check?: unknown } | undefined;
    const check = b?.unseal_key_check;
    return {
      running: b?.sealed === false,
      ...(typeof check === "string" && /^[0-9a-f]{32}$/.test(check) ? { unsealKeyCheck: check } : {}),
    };
  } catch {
    return { running: false };
  }
}

/**
 * (Re)starts a stopped or sealed server — unsealing with the keys in state (insecure opt-out) or with the
 * recovery keys present on this machine — and rotates the deployer key when asked to.
 */
export async function ensureRunning(o: ServiceOutputs, next: ServiceInputs): Promise<ServiceOutputs> {
  if (next.insecureKeepRootTokenInState && !o.rootToken)
    throw new Error(
      "insecureKeepRootTokenInState cannot be turned on for a running runtime: its root token was revoked at bootstrap",
    );
  const merged: ServiceOutputs = {
    ...o,
    ...next,
    rootToken: o.rootToken,
    unsealKeys: o.unsealKeys,
    deployer: o.deployer,
    recoveryShares: o.recoveryShares,
    caPem: o.caPem,
    caFingerprint: o.caFingerprint,
  };
  if (merged.config !== o.config || merged.serverCommand.join("\0") !== o.serverCommand.join("\0")) {
    await sh(o.ssh, stopScript(o, false)); // new settings take effect on restart
  }
  if (!(await serviceRunning(merged))) {
    await sh(merged.ssh, startScript(merged), merged.config);
    await waitForServer(merged, merged.caPem || undefined);
    const status = (await runtimeRequest(conn(merged, "-", merged.caPem || undefined), "GET", "sys/seal-status"))
      .body as { sealed?: boolean };
    if (status?.sealed !== false) {
      if (merged.unsealKeys?.length) await unseal(merged, merged.unsealKeys, merged.caPem || undefined);
      else await unsealWithRecovery(merged, merged.caPem || undefined);
    }
  }
  // State from before the deployer credential (or the opt-out switched off): bootstrap now, with the root token in state.
  if (o.rootToken && !next.insecureKeepRootTokenInState) return migrateToDeployer(merged);
  if (merged.deployer && (o.deployerKeyRotation ?? "") !== (next.deployerKeyRotation ?? "")) {
    await rotateDeployerKey({
      url: merged.url,
      deployer: merged.deployer,
      ...(merged.caPem ? { caPem: merged.caPem } : {}),
    });
  }
  return defined(
    retireIfRekeyed(
      { ...merged, running: true },
      (await serviceStatus(merged)).unsealKeyCheck,
    ) as unknown as ServiceOutputs,
  );
}

/** Without undefined members: the engine's gRPC Struct refuses them ("Unexpected struct type"). */
export function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/**
 * Turning the opt-out off: the root token in state bootstraps the deployer credential and is revoked,
 * and the unseal keys are encrypted to the recovery keys and dropped from the outputs. (Earlier
 * checkpoints of the state still hold them in the clear: rotate the data encryption key if that matters.)
 */
async function migrateToDeployer(m: ServiceOutputs): Promise<ServiceOutputs> {
  if (!m.rootToken || !m.unsealKeys)
    throw new Error("no root token in state to bootstrap the deployer credential with");
  const recoveryShares = await encryptShares(m, m.unsealKeys, await recoveryRecipients(m));
  let workloadAudience = m.workloadAudience;
  const deployer = await bootstrapDeployer({
    rootToken: m.rootToken,
    url: m.url,
    caPem: m.caPem || undefined,
    keyFile: deployerKeyFileOf(m),
    publicPem: m.deployerPublicKey,
    rootWrites: m.rootWrites,
    beforeRevoke: async (root) => void (workloadAudience = await readWorkloadAudience(root)),
  });
  const { rootToken: _r, unsealKeys: _u, ...rest } = m;
  void _r;
  void _u;
  return defined({ ...rest, deployer, recoveryShares, workloadAudience, running: true });
}

export async function deleteService(
  o: Pick<ServiceInputs, "stateDir" | "ssh" | "deployerKeyFile" | "localRecoveryKeyFile" | "deployerPublicKey">,
): Promise<void> {
  await sh(o.ssh, stopScript(o, true));
  // The runtime and its data are gone: so is what unlocked them.
  if (o.deployerKeyFile && !o.deployerPublicKey) rmSync(o.deployerKeyFile, { force: true });
  if (o.localRecoveryKeyFile) rmSync(o.localRecoveryKeyFile, { force: true });
}

// ---- dynamic-provider shaped entry points (see provider/resources.ts RuntimeService) ----

type Props = Record<string, unknown>;

export function checkService(news: Props): { inputs: Props; failures: { property: string; reason: string }[] } {
  const failures: { property: string; reason: string }[] = [];
  const inputs: Props = { keyShares: 1, keyThreshold: 1, running: true, ...news };
  const need = (k: string, ok: boolean, what: string) => ok || failures.push({ property: k, reason: `${k} ${what}` });
  const unknown = (v: unknown) => v === "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
  if (!unknown(inputs.stateDir))
    need(
      "stateDir",
      typeof inputs.stateDir === "string" && inputs.stateDir.startsWith("/") && !String(inputs.stateDir).includes(".."),
      "must be an absolute path without '..'",
    );
  if (!unknown(inputs.url))
    need("url", typeof inputs.url === "string" && /^https?:\/\/./.test(inputs.url), "must be an http(s) URL");
  need(
    "serverCommand",
    Array.isArray(inputs.serverCommand) && inputs.serverCommand.length > 0,
    "must be a non-empty list of words",
  );
  const n = inputs.keyShares as number;
  const t = inputs.keyThreshold as number;
  need("keyShares", Number.isInteger(n) && n >= 1 && n <= 255, "must be an integer 1..255");
  need("keyThreshold", Number.isInteger(t) && t >= 1 && t <= n, "must be an integer 1..keyShares");
  if (!inputs.insecureKeepRootTokenInState) {
    const rk = inputs.recoveryKeys as unknown[] | undefined;
    if (Array.isArray(rk) && rk.length && !rk.some(unknown)) {
      need("recoveryKeys", rk.length === n, `must have one operator public key per share (keyShares is ${n})`);
      rk.forEach((k, idx) => {
        try {
          parseRecoveryPublicKey(k, `recoveryKeys[${idx}]`);
        } catch (e) {
          need(`recoveryKeys[${idx}]`, false, (e as Error).message.replace(/^recoveryKeys\[\d+\] /, ""));
        }
      });
    }
    // Without recoveryKeys, keyShares > 1 and missing key file paths fail at create (the Vhsm component
    // sets them, and refuses keyShares > 1 without recoveryKeys at preview).
  }
  return { inputs, failures };
}

/**
 * Identity changes replace. A stopped or sealed server (reboot, crash) is a change too: diff asks the
 * server, so a plain `pulumi up` restarts and unseals it before anything that depends on it.
 */
export async function diffService(
  olds: Props,
  news: Props,
): Promise<{ changes: boolean; replaces: string[]; deleteBeforeReplace: boolean }> {
  // rootWrites and recoveryKeys are fixed at init (no root token afterwards, no rekey): a change replaces.
  // State from before they existed is migrated in place instead (ensureRunning → migrateToDeployer).
  const replaces = ["stateDir", "url", "ssh", "keyShares", "keyThreshold", "recoveryKeys", "rootWrites"].filter(
    (k) =>
      JSON.stringify(olds[k]) !== JSON.stringify(news[k]) &&
      !((k === "rootWrites" || k === "recoveryKeys") && olds[k] === undefined && olds.rootToken !== undefined),
  );
  let changes =
    replaces.length > 0 ||
    JSON.stringify(olds.serverCommand) !== JSON.stringify(news.serverCommand) ||
    olds.config !== news.config ||
    Boolean(olds.insecureKeepRootTokenInState) !== Boolean(news.insecureKeepRootTokenInState) ||
    (olds.deployerKeyRotation ?? "") !== (news.deployerKeyRotation ?? "");
  if (!changes && !(await serviceRunning(olds as unknown as ServiceOutputs))) changes = true;
  // Same state directory cannot host two servers: stop the old one before starting the new one.
  return { changes, replaces, deleteBeforeReplace: true };
}

export async function readService(id: string, props: Props): Promise<{ id: string; props: Props }> {
  const s = await serviceStatus(props as unknown as ServiceOutputs);
  // Shares of a key the runtime no longer uses (it was rekeyed) are retired, not presented as the way in.
  return { id, props: retireIfRekeyed({ ...props, running: s.running }, s.unsealKeyCheck) };
}
