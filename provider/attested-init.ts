// The trust bootstrap of a runtime that proves what it runs (a vHSM in a confidential VM): verify FIRST, then
// initialise and bootstrap exactly as the process mode does (provider/service.ts createService), with every
// request on a connection whose TLS key the runtime's evidence binds (runtime/client/attested-tls.ts).
//   1. verifyRuntime: a fresh nonce, the runtime's report, appraised against the expected measurement (computed
//      by the deployer from the exact boot inputs) and the platform's root; REPORT_DATA must bind this very
//      connection's key. A refusal throws RuntimeAttestationError naming the failed check: nothing was sent but
//      the evidence request.
//   2. sys/init, unseal with the shares (the in-guest seal also wraps the unseal key with the PSP's derived key,
//      so later boots of the same launch unseal by themselves), encrypt the shares to the operators' keys.
//   3. verify again on the same key, now unsealed: the evidence binds the runtime's instance id (the hash of a
//      secret it drew at sys/init behind its barrier). Kept (public) as `runtimeInstanceId`: from here on every
//      verifier (this provider, `runtime verify --instance-id`, the enclaivelets) requires exactly it, so a twin
//      launched from the same image with the same HOST_DATA and initialised by someone else is refused.
//   4. bootstrapDeployer (deployer credential, root-only writes, root token revoked), pinned to that instance.
// No copied fingerprint, no root token or unseal key in the outputs (unless the insecure opt-out says so).
// Pulumi-free: the vHSM guest's handlers call it in the dynamic-provider process.
import { runtimeRequest, type RuntimeConnection } from "./client.js";
import { bootstrapDeployer, readWorkloadAudience } from "./bootstrap.js";
import { encryptShares, openLocalShares, recoveryRecipients, type RecoveryInputs } from "./service.js";
import {
  RuntimeAttestationError,
  runtimeExpectation,
  verifyRuntime,
  type RuntimeVerification,
} from "../runtime/client/attested-tls.js";
import type { RuntimeAttestation } from "../runtime/client/connection.js";
import type { DeployerAuth } from "../runtime/client/deployer.js";

export interface AttestedInitInputs extends RecoveryInputs {
  url: string;
  /** What the runtime must prove (one expected measurement at least, the platform's roots). */
  attestation: RuntimeAttestation;
  keyShares: number;
  keyThreshold: number;
  insecureKeepRootTokenInState?: boolean;
  deployerPublicKey?: string;
  rootWrites?: { path: string; body: Record<string, unknown> }[];
  /** Per request (the runtime under TCG answers slowly). Default 120 s. */
  timeoutMs?: number;
}

/** What the verification established: public, for the outputs and the summary. */
export interface AttestationSummary {
  /** The runtime's MEASUREMENT, as its evidence reported it (equal to an expected one). */
  measurement: string;
  /** HOST_DATA the runtime's SEV-SNP report carries (hex; absent for other evidence): what its launch was given. */
  hostData?: string;
  /** SHA-256 of the SubjectPublicKeyInfo the runtime's evidence binds: the pin of every request. */
  tlsKeySha256: string;
  /** The instance id the runtime's evidence binds (hex; absent while sealed or before init): public. */
  runtimeInstanceId?: string;
  /** The evidence chains to a simulated root (the local stack). */
  simulated: boolean;
  /** Who verified it, with what: one line. */
  verifiedBy: string;
  /** ISO time of the verification. */
  verifiedAt: string;
  /** Every check that passed, "id: detail". */
  checks: string[];
}

export interface AttestedInitOutputs extends AttestationSummary {
  deployer?: DeployerAuth;
  /** What a JWT role binds to admit this runtime's workload tokens (its Nitride audience; not a secret). */
  workloadAudience?: string;
  recoveryShares?: string[];
  /** Only with insecureKeepRootTokenInState. */
  rootToken?: string;
  unsealKeys?: string[];
  /**
   * The check value of the unseal key the shares split (sys/seal-status `unseal_key_check` once unsealed): what a
   * later refresh compares with, so shares a rekey replaced are not presented as current (recovery-freshness.ts).
   */
  unsealKeyCheck?: string;
}

/** Verifies the runtime; throws RuntimeAttestationError (the failed check) before anything else is sent. */
export async function verifyBeforeSending(
  url: string,
  attestation: RuntimeAttestation,
  timeoutMs = 120_000,
): Promise<AttestationSummary> {
  const expected = runtimeExpectation(attestation, "attestation");
  const v: RuntimeVerification = await verifyRuntime({ url, expected, timeoutMs });
  if (!v.ok || !v.spkiSha256 || !v.measurement) throw new RuntimeAttestationError(url, v.reason ?? "not verified", v);
  const hostData = v.verdict?.claims?.platform === "snp" ? v.verdict.claims.extra?.hostData : undefined;
  return {
    measurement: v.measurement,
    ...(typeof hostData === "string" ? { hostData } : {}),
    tlsKeySha256: v.spkiSha256,
    ...(v.instanceId ? { runtimeInstanceId: v.instanceId } : {}),
    simulated: v.simulated,
    verifiedBy: `the deployer (pulumi up), attested TLS: ${v.simulated ? "simulated SEV-SNP platform" : "AMD"} root → report with the expected measurement → REPORT_DATA binds a fresh nonce and this key`,
    verifiedAt: new Date().toISOString(),
    checks: v.checks.filter((c) => c.ok).map((c) => `${c.id}: ${c.detail}`),
  };
}

/** The expectation without the instance: what a runtime that is sealed (or not yet initialised) can meet. */
function anyInstance(a: RuntimeAttestation): RuntimeAttestation {
  const { runtimeInstanceId, ...rest } = a;
  void runtimeInstanceId;
  return rest;
}

/**
 * Verifies the runtime again, now unsealed, and returns the instance id its evidence binds: learnt over the
 * key verified before init (a restart in between, with another key, fails here rather than learning another).
 */
async function learnInstance(i: AttestedInitInputs, pinned: string): Promise<AttestationSummary> {
  const s = await verifyBeforeSending(i.url, anyInstance(i.attestation), i.timeoutMs);
  if (s.tlsKeySha256 !== pinned)
    throw new Error(
      `runtime at ${i.url} presented another TLS key after init (${s.tlsKeySha256.slice(0, 16)}…, initialised over ${pinned.slice(0, 16)}…): it restarted; replace the resource`,
    );
  if (!s.runtimeInstanceId)
    throw new Error(`runtime at ${i.url}: unsealed after init, but its evidence binds no instance id`);
  return s;
}

const connOf = (i: AttestedInitInputs, token: string): RuntimeConnection => ({
  url: i.url,
  token,
  attestation: i.attestation,
});

/** The check value of the unseal key in force, as the unsealed runtime reports it (undefined while sealed). */
export async function readUnsealKeyCheck(i: AttestedInitInputs): Promise<string | undefined> {
  const r = await runtimeRequest(connOf(i, "-"), "GET", "sys/seal-status", undefined, i.timeoutMs ?? 120_000);
  const v = (r.body as { unseal_key_check?: unknown } | undefined)?.unseal_key_check;
  return typeof v === "string" && /^[0-9a-f]{32}$/.test(v) ? v : undefined;
}

async function unsealWith(i: AttestedInitInputs, keys: string[]): Promise<void> {
  for (const key of keys.slice(0, i.keyThreshold)) {
    const r = await runtimeRequest(connOf(i, "-"), "POST", "sys/unseal", { key }, i.timeoutMs ?? 120_000);
    if ((r.body as { sealed?: boolean } | undefined)?.sealed === false) return;
  }
  throw new Error(`runtime at ${i.url} is still sealed after ${i.keyThreshold} key(s)`);
}

/** Verify, init, unseal, encrypt the shares, bootstrap the deployer (see the file comment). */
export async function initAttestedRuntime(i0: AttestedInitInputs): Promise<AttestedInitOutputs> {
  let i: AttestedInitInputs = { ...i0, attestation: anyInstance(i0.attestation) };
  const before = await verifyBeforeSending(i.url, i.attestation, i.timeoutMs);
  if (before.runtimeInstanceId)
    throw new Error(
      `runtime at ${i.url} is already initialised and unsealed (instance ${before.runtimeInstanceId.slice(0, 16)}…): not a fresh runtime to bootstrap`,
    );
  // Sealed, an initialised runtime binds no instance either: it found the data of an earlier bootstrap (on the clouds
  // a replaced instance attaches the old data volume). Not a fresh runtime — said before a recovery key is made.
  const status = (await runtimeRequest(connOf(i, "-"), "GET", "sys/seal-status", undefined, i.timeoutMs ?? 120_000))
    .body as { initialized?: boolean } | undefined;
  if (status?.initialized === true)
    throw new Error(
      `runtime at ${i.url} is already initialised and sealed: it found the data of an earlier bootstrap (a replaced ` +
        "instance that attached the old data volume?), so it is not a fresh runtime to bootstrap and nothing was sent. " +
        "That data opens only with that bootstrap's recovery shares: operators unseal it with them (`buckypaper runtime " +
        "unseal --share <jwe> --recovery-key <jwk>`); to start afresh, replace the data volume too (docs/trust-bootstrap.md)",
    );
  // Recipients before init (a bad operator key fails before the runtime is initialised); a local recovery
  // key is generated only for a runtime that proved what it runs.
  const recipients = i.insecureKeepRootTokenInState ? [] : await recoveryRecipients(i);
  const timeout = i.timeoutMs ?? 120_000;
  const r = await runtimeRequest(
    connOf(i, "-"),
    "POST",
    "sys/init",
    { secret_shares: i.keyShares, secret_threshold: i.keyThreshold },
    timeout,
  );
  const body = r.body as { keys_base64?: string[]; keys?: string[]; root_token?: string } | undefined;
  const keys = body?.keys_base64 ?? body?.keys;
  if (!keys?.length || !body?.root_token)
    throw new Error(`runtime at ${i.url}: sys/init returned no keys (already initialised?)`);
  await unsealWith(i, keys);
  // From here on every request requires this instance (the root writes, the deployer bootstrap, later runs).
  const summary = await learnInstance(i, before.tlsKeySha256);
  i = { ...i, attestation: { ...i.attestation, runtimeInstanceId: summary.runtimeInstanceId } };
  const unsealKeyCheck = await readUnsealKeyCheck(i);
  if (i.insecureKeepRootTokenInState) {
    for (const w of i.rootWrites ?? [])
      await runtimeRequest(connOf(i, body.root_token), "POST", w.path, w.body, timeout);
    const workloadAudience = await readWorkloadAudience(connOf(i, body.root_token));
    return {
      ...summary,
      rootToken: body.root_token,
      unsealKeys: keys,
      ...(unsealKeyCheck ? { unsealKeyCheck } : {}),
      ...(workloadAudience ? { workloadAudience } : {}),
    };
  }
  const recoveryShares = await encryptShares(i, keys, recipients);
  let workloadAudience: string | undefined;
  if (!i.deployerKeyFile) throw new Error("deployerKeyFile is required (where the deployer's private key is kept)");
  const deployer = await bootstrapDeployer({
    rootToken: body.root_token,
    url: i.url,
    attestation: i.attestation,
    keyFile: i.deployerKeyFile,
    ...(i.deployerPublicKey ? { publicPem: i.deployerPublicKey } : {}),
    ...(i.rootWrites ? { rootWrites: i.rootWrites } : {}),
    beforeRevoke: async (root) => void (workloadAudience = await readWorkloadAudience(root)),
  });
  return {
    ...summary,
    deployer,
    recoveryShares,
    ...(unsealKeyCheck ? { unsealKeyCheck } : {}),
    ...(workloadAudience ? { workloadAudience } : {}),
  };
}

/**
 * After a restart of an initialised runtime: verify again (a new TLS key, maybe another launch), then check
 * the seal. The same launch on the same chip unseals itself (derived key); otherwise the recovery shares that
 * the recovery keys on this machine open unseal it — or the error tells the operators what to do.
 */
export async function reattestRuntime(
  i0: AttestedInitInputs & {
    recoveryShares?: string[];
    unsealKeys?: string[];
    runtimeInstanceId?: string;
    unsealKeyCheck?: string;
  },
): Promise<AttestationSummary & { autoUnsealed: boolean; unsealKeyCheck?: string }> {
  const kept = i0.runtimeInstanceId ?? i0.attestation.runtimeInstanceId;
  const i = { ...i0, attestation: { ...i0.attestation, ...(kept ? { runtimeInstanceId: kept } : {}) } };
  // Sealed, a runtime reports no instance: the seal status and the unseal shares go to the verified image
  // (the shares open only the barrier they were split from); the instance is required once it is unsealed.
  const sealedOk = { ...i, attestation: anyInstance(i.attestation) };
  await verifyBeforeSending(i.url, sealedOk.attestation, i.timeoutMs);
  const status = (
    await runtimeRequest(connOf(sealedOk, "-"), "GET", "sys/seal-status", undefined, i.timeoutMs ?? 120_000)
  ).body as { sealed?: boolean; initialized?: boolean } | undefined;
  if (status?.initialized === false)
    throw new Error(`runtime at ${i.url} answers as not initialised: its data disk is not the one bootstrapped`);
  const autoUnsealed = status?.sealed === false;
  if (!autoUnsealed) {
    const keys = i.unsealKeys?.length ? i.unsealKeys : await openLocalShares(i, i.recoveryShares ?? []);
    try {
      await unsealWith(sealedOk, keys);
    } catch (e) {
      // The shares in state are init's: after `buckypaper runtime rekey` they open nothing live, and only the
      // operators hold the new ones.
      throw new Error(
        `${(e as Error).message}. The shares this resource holds are from init${
          typeof i0.unsealKeyCheck === "string" ? ` (key check ${i0.unsealKeyCheck.slice(0, 8)}…)` : ""
        }: if the runtime was rekeyed since, they no longer unseal it — operators unseal it with their current shares ` +
          "(`buckypaper runtime unseal`), then `pulumi refresh` retires the old ones from the state",
        { cause: e },
      );
    }
  }
  // State from before instance ids carries none: the runtime's own is learnt now (see docs/trust-bootstrap.md).
  const summary = await verifyBeforeSending(i.url, i.attestation, i.timeoutMs);
  if (!summary.runtimeInstanceId)
    throw new Error(`runtime at ${i.url}: unsealed, but its evidence binds no instance id`);
  const unsealKeyCheck = await readUnsealKeyCheck({
    ...i,
    attestation: { ...i.attestation, runtimeInstanceId: summary.runtimeInstanceId },
  });
  return { ...summary, autoUnsealed, ...(unsealKeyCheck ? { unsealKeyCheck } : {}) };
}
