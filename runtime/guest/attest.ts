// The attestation handshake with Nitride and the Vault login that follows:
//   challenge (nonce) → ephemeral P-384 + ML-KEM-768 keys
//   → REPORT_DATA = reportDataFor(nonce, hybridBindingMaterial(SPKI, ML-KEM ek)) → evidence
//   → attest (workload token, JWT) → auth/<jwt mount>/login (Vault token).
// The ephemeral private keys stay in memory; responses carrying secrets are sealed to both of them with the
// hybrid ML-KEM-768 + P-384 KEM (runtime/attestation/hybrid-seal.ts), so a recorded bundle cannot be opened
// by an adversary who later breaks P-384 alone.
import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import { compactDecrypt } from "jose";
import { hybridBindingMaterial, reportDataFor, reportDataForVtpm } from "../attestation/binding.js";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { hybridOpen, isHybridSeal } from "../attestation/hybrid-seal.js";
import { Vtpm, wireVtpm } from "./evidence/vtpm.js";
import { EvidenceError } from "./evidence/types.js";
import type { EnclaiveletConfig } from "./config.js";
import { RuntimeClient, RuntimeError, RuntimeUnavailableError } from "./client.js";
import type { EvidenceProvider } from "./evidence/types.js";
import type { WireEvidence } from "../protocol/evidence.js";
import { SEAL_CONTENT_ENCRYPTION, SEAL_KEY_MANAGEMENT, SEAL_REQUEST_HEADERS } from "../protocol/seal.js";
import type { Logger } from "./log.js";

/** Nitride refused the evidence: final, never retried. Lists the failed checks (no secrets). */
export class AttestationRefusedError extends Error {
  override name = "AttestationRefusedError";
  constructor(
    readonly status: number,
    readonly failedChecks: { id: string; detail: string }[],
    reason: string,
  ) {
    super(
      `attestation refused (HTTP ${status}): ${failedChecks.length ? failedChecks.map((c) => `${c.id}: ${c.detail}`).join("; ") : reason}`,
    );
  }
}

export class ProtocolError extends Error {
  override name = "ProtocolError";
}

export interface EphemeralKey {
  privateKey: KeyObject;
  spkiDer: Buffer;
  /** ML-KEM-768 key pair (hybrid PQ sealing); absent for a classical-only key. */
  mlkem?: { publicKey: Uint8Array; secretKey: Uint8Array };
}

/** What REPORT_DATA binds for this key: the SPKI (classical) or both keys (hybrid). */
export function boundKeyMaterial(k: EphemeralKey): Buffer {
  return k.mlkem ? hybridBindingMaterial(k.spkiDer, k.mlkem.publicKey) : k.spkiDer;
}

export interface AttestedSession {
  workloadToken: string;
  vaultToken: string;
  ephemeral: EphemeralKey;
  verdict: unknown;
}

/** The request headers asking for an answer sealed to our ephemeral key. */
export const SEAL_HEADER = SEAL_REQUEST_HEADERS;

export function newEphemeralKey(o: { hybrid?: boolean } = {}): EphemeralKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const spkiDer = publicKey.export({ type: "spki", format: "der" });
  return o.hybrid === false ? { privateKey, spkiDer } : { privateKey, spkiDer, mlkem: ml_kem768.keygen() };
}

function decodeNonce(v: unknown): Buffer {
  if (typeof v !== "string" || !/^[A-Za-z0-9_=+/-]+$/.test(v))
    throw new ProtocolError("challenge: answer has no nonce");
  const n = Buffer.from(v, /[-_]/.test(v) || !/[+/=]/.test(v) ? "base64url" : "base64");
  if (n.length < 16) throw new ProtocolError(`challenge: nonce too short (${n.length} bytes)`);
  return n;
}

/** Optional observer used by tests to capture what was sent (evidence is not secret). */
export type AttestObserver = (request: {
  workload_id: string;
  nonce: string;
  evidence: WireEvidence;
  ephemeral_public_key: string;
  mlkem_public_key?: string;
  user_data_sha256?: string;
}) => void;

export async function attest(
  client: RuntimeClient,
  cfg: EnclaiveletConfig,
  provider: EvidenceProvider,
  log: Logger,
  observe?: AttestObserver,
  /** SHA-256 (hex) of the user-data this guest booted with: bound into REPORT_DATA (binding v2). */
  userDataSha256?: string,
): Promise<AttestedSession> {
  let challenge;
  try {
    challenge = await client.request("POST", "nitride/challenge", { body: { workload_id: cfg.workloadId } });
  } catch (e) {
    // AWS/GCP register the workload after the VM exists (its policy names the instance): until then the
    // workload is unknown, which is worth waiting for, not a refusal. Nothing is sent before a challenge.
    if (e instanceof RuntimeError && e.status === 404)
      throw new RuntimeUnavailableError(
        `nitride/challenge: workload ${cfg.workloadId} is not registered (yet): ${e.errors.join("; ") || "HTTP 404"}`,
      );
    throw e;
  }
  const nonceText = envelope(challenge.body).nonce;
  const nonce = decodeNonce(nonceText);
  const ephemeral = newEphemeralKey({ hybrid: cfg.pqHybrid });
  // AWS/GCE: the vTPM's attestation key is bound into REPORT_DATA too, and the quote carries SHA-256 of it.
  const vtpm = cfg.evidence.vtpm ? new Vtpm(cfg.evidence.vtpm) : undefined;
  const akPublic = vtpm ? await vtpm.attestationKey() : undefined;
  const userData = userDataSha256 !== undefined ? Buffer.from(userDataSha256, "hex") : undefined;
  const reportData = akPublic
    ? reportDataForVtpm(nonce, boundKeyMaterial(ephemeral), akPublic, userData)
    : reportDataFor(nonce, boundKeyMaterial(ephemeral), userData);
  const evidence = await provider.collect(reportData);
  if (vtpm) {
    if (evidence.kind !== "snp" && evidence.kind !== "tdx")
      throw new EvidenceError("vtpm", "kind", `a vTPM quote rides only on snp/tdx evidence, not ${evidence.kind}`);
    const t = await vtpm.collect(createHash("sha256").update(reportData).digest());
    evidence.vtpm = wireVtpm(t);
    // Without the document an AWS workload is refused (aws.document); say why here, where the cause is visible.
    if (t.nitroDocumentError)
      log({ level: "warn", event: "evidence.nitro-document-unavailable", error: t.nitroDocumentError });
  }
  log({ level: "info", event: "evidence.collected", provider: provider.name, kind: evidence.kind });
  const request = {
    workload_id: cfg.workloadId,
    nonce: nonceText as string,
    evidence,
    ephemeral_public_key: ephemeral.spkiDer.toString("base64"),
    ...(ephemeral.mlkem ? { mlkem_public_key: Buffer.from(ephemeral.mlkem.publicKey).toString("base64") } : {}),
    ...(userDataSha256 !== undefined ? { user_data_sha256: userDataSha256 } : {}),
  };
  observe?.(request);
  const attested = await refusable(() => client.request("POST", "nitride/attest", { body: request }));
  let body = envelope(attested.body);
  // The workload registers its instance's EK (vtpm.ekPublics): prove the AK lives in that TPM by activating the
  // credential Nitride made for the EK and the AK's Name — the token comes with the answer.
  if (attested.status === 202 && body.ek_credential !== undefined) {
    if (!vtpm) throw new ProtocolError("attest: Nitride asks for EK credential activation but this agent has no vTPM");
    const answer = await activate(vtpm, body.ek_credential, log);
    const answered = await refusable(() =>
      client.request("POST", "nitride/attest/credential", {
        body: { workload_id: cfg.workloadId, nonce: nonceText, ...answer },
      }),
    );
    body = envelope(answered.body);
  }
  if (typeof body?.token !== "string") throw new ProtocolError("attest: answer has no token");
  log({ level: "info", event: "attest.ok", workload: cfg.workloadId });

  const login = await client.request("POST", `auth/${cfg.jwtMount}/login`, {
    body: { role: cfg.jwtRole, jwt: body.token },
  });
  const vaultToken = (login.body as { auth?: { client_token?: unknown } })?.auth?.client_token;
  if (typeof vaultToken !== "string")
    throw new ProtocolError(`auth/${cfg.jwtMount}/login: answer has no auth.client_token`);
  log({ level: "info", event: "login.ok", mount: cfg.jwtMount, role: cfg.jwtRole });
  return { workloadToken: body.token, vaultToken, ephemeral, verdict: body.verdict };
}

/** A Nitride call whose 400/401/403 is a final refusal naming the failed checks. */
async function refusable<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof RuntimeError && (e.status === 403 || e.status === 400 || e.status === 401)) {
      const verdict = envelope(e.body).verdict as
        { checks?: { id: string; ok: boolean; detail: string }[] } | undefined;
      const failed = (verdict?.checks ?? []).filter((c) => !c.ok).map((c) => ({ id: c.id, detail: c.detail }));
      throw new AttestationRefusedError(e.status, failed, e.errors.join("; ") || "no reason given");
    }
    throw e;
  }
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * TPM2_ActivateCredential on Nitride's EK credential. A TPM that cannot activate it answers with the reason, so
 * Nitride records the refusal (vtpm.ek-credential) instead of the attempt silently expiring.
 */
async function activate(vtpm: Vtpm, challenge: unknown, log: Logger): Promise<{ secret: string } | { error: string }> {
  const c = (challenge ?? {}) as Record<string, unknown>;
  const field = (k: string, re: RegExp) => {
    const v = c[k];
    if (typeof v !== "string" || !re.test(v)) throw new ProtocolError(`attest: ek_credential.${k} is malformed`);
    return v;
  };
  const ekName = Buffer.from(field("ek_name", /^[0-9a-f]{44,132}$/), "hex");
  const credentialBlob = Buffer.from(field("credential_blob", B64), "base64");
  const encryptedSecret = Buffer.from(field("encrypted_secret", B64), "base64");
  try {
    const secret = await vtpm.activateCredential({ ekName, credentialBlob, encryptedSecret });
    log({ level: "info", event: "ek-credential.activated", ek: ekName.toString("hex").slice(0, 16) });
    return { secret: secret.toString("base64") };
  } catch (e) {
    if (!(e instanceof EvidenceError)) throw e;
    log({ level: "warn", event: "ek-credential.failed", error: e.message });
    return { error: e.message };
  }
}

/** Vault answers wrap results in {data: …}; accept the bare form too. */
function envelope(body: unknown): Record<string, unknown> {
  const o = (body ?? {}) as Record<string, unknown>;
  return typeof o.data === "object" && o.data !== null ? (o.data as Record<string, unknown>) : o;
}

/** Opens a `{sealed: <compact JWE>}` answer with the ephemeral key; other answers pass through. */
export async function unseal(body: unknown, key: EphemeralKey): Promise<unknown> {
  const sealed = (body as { sealed?: unknown })?.sealed;
  if (sealed === undefined) return body;
  if (typeof sealed !== "string") throw new ProtocolError("sealed answer is not a compact JWE");
  // A hybrid key accepts only hybrid seals: a classical seal would be a downgrade.
  if (key.mlkem) {
    if (!isHybridSeal(sealed))
      throw new ProtocolError(
        "sealed answer is not hybrid (ML-KEM-768 + P-384) although our login bound an ML-KEM key",
      );
    try {
      return await hybridOpen(sealed, { p384PrivateKey: key.privateKey, mlkemSecretKey: key.mlkem.secretKey });
    } catch (e) {
      throw new ProtocolError(`cannot open the hybrid sealed answer: ${(e as Error).name}`);
    }
  }
  try {
    const { plaintext, protectedHeader } = await compactDecrypt(sealed, key.privateKey, {
      keyManagementAlgorithms: [SEAL_KEY_MANAGEMENT, "ECDH-ES"],
      contentEncryptionAlgorithms: [SEAL_CONTENT_ENCRYPTION],
    });
    void protectedHeader;
    return JSON.parse(new TextDecoder().decode(plaintext));
  } catch (e) {
    throw new ProtocolError(`cannot open the sealed answer: ${(e as Error).name}`);
  }
}

/** A Vault call with the login token whose answer may be sealed to our key. */
export async function sealedCall(
  client: RuntimeClient,
  s: AttestedSession,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const res = await client.request(method, path, { token: s.vaultToken, body, headers: { ...SEAL_HEADER } });
  return unseal(res.body, s.ephemeral);
}
