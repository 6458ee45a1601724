// The EK credential round trip of an attestation (policy vtpm.ekPublics; runtime/attestation/tpm/ek-credential.ts):
//   attest  → evidence accepted but for `vtpm.ek-credential` (pending) → a credential made for the registered EK and
//             the AK's Name, with a fresh 32-byte secret → HTTP 202 {ek_credential}; no token
//   attest/credential → {workload_id, nonce, secret} → the secret equals → the token, as attest would have issued it
// The pending record is keyed by the attestation's nonce (already consumed by attest, so unique and single-use
// per session), lives in the mount's barrier-encrypted storage (any replica can answer), holds only SHA-256 of
// the secret, expires with the challenge TTL, and is deleted by the first answer whatever its outcome: a wrong
// answer cannot be retried. The token it finally issues is bound (cnf) to the ephemeral key of the same session.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { JWK } from "jose";
import type { Storage } from "../storage/types.js";
import type { Check, Verdict } from "../../attestation/types.js";
import { jsonBytes, readJson } from "../vault/fields.js";
import { makeCredential, type MadeCredential } from "../../attestation/tpm/credential.js";
import {
  EK_CREDENTIAL_CHECK,
  ekCredentialTarget,
  type EkCredentialTarget,
} from "../../attestation/tpm/ek-credential.js";
import { parseTpmPublic, parseTpmsAttest } from "../../attestation/tpm/abi.js";
import type { Evidence } from "../../attestation/types.js";
import { vtpmOf } from "../../attestation/tpm/appraise.js";

export interface PendingCredential {
  workload_id: string;
  expires_at: number;
  /** SHA-256 (hex) of the secret the credential carries. */
  secret_sha256: string;
  ek_name: string;
  /** What the token will carry, fixed at attest time. */
  policy_hash: string;
  ref_version: number;
  verdict: Verdict;
  ephemeral_jwk: JWK;
  mlkem_public_key?: string;
}

export interface CredentialChallenge {
  /** TPM Name (hex) of the EK the credential is made for: the guest activates with that EK. */
  ek_name: string;
  /** base64 TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (TPM2_ActivateCredential's credentialBlob and secret). */
  credential_blob: string;
  encrypted_secret: string;
  expires_at: number;
}

const keyFor = (nonce: Uint8Array) => `ek-credentials/${createHash("sha256").update(nonce).digest("hex")}`;
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest();

/** The registered EK and the AK's Name for this evidence (the AK was verified by the appraisal). */
export function credentialTarget(evidence: Evidence, ekPublics: string[]): EkCredentialTarget {
  const ev = vtpmOf(evidence)!;
  const ak = parseTpmPublic(ev.akPublic);
  let qualifiedSigner: Uint8Array | undefined;
  try {
    qualifiedSigner = parseTpmsAttest(ev.quote).qualifiedSigner;
  } catch {
    qualifiedSigner = undefined;
  }
  return ekCredentialTarget(ekPublics, ak, qualifiedSigner);
}

const SWEEP_EVERY_MS = 30_000;

export class EkCredentialStore {
  private lastSweep = 0;

  /** Makes the credential and records what the answer must be. */
  async issue(
    storage: Storage,
    nonce: Uint8Array,
    target: EkCredentialTarget,
    ttlS: number,
    rec: Omit<PendingCredential, "expires_at" | "secret_sha256" | "ek_name">,
  ): Promise<CredentialChallenge> {
    const secret = randomBytes(32);
    const made: MadeCredential = makeCredential(target.ek, target.akName, secret);
    const expiresAt = Math.floor(Date.now() / 1000) + ttlS;
    const ekName = Buffer.from(target.ek.name).toString("hex");
    await storage.put(
      keyFor(nonce),
      jsonBytes({
        ...rec,
        expires_at: expiresAt,
        secret_sha256: sha256(secret).toString("hex"),
        ek_name: ekName,
      } satisfies PendingCredential),
    );
    if (Date.now() - this.lastSweep > SWEEP_EVERY_MS) {
      this.lastSweep = Date.now();
      void this.sweep(storage).catch(() => undefined);
    }
    return {
      ek_name: ekName,
      credential_blob: made.credentialBlob.toString("base64"),
      encrypted_secret: made.encryptedSecret.toString("base64"),
      expires_at: expiresAt,
    };
  }

  /** Reads and deletes the pending record in one transaction: at most one answer per credential. */
  async take(storage: Storage, nonce: Uint8Array): Promise<PendingCredential | undefined> {
    return storage.transaction(async (tx) => {
      const r = await readJson<PendingCredential>(tx, keyFor(nonce));
      if (r) await tx.delete(keyFor(nonce));
      return r;
    });
  }

  /** Deletes expired records (best effort: an expired one is refused anyway). */
  async sweep(storage: Storage): Promise<number> {
    const now = Math.floor(Date.now() / 1000);
    let n = 0;
    for (const k of await storage.list("ek-credentials/")) {
      const r = await readJson<PendingCredential>(storage, `ek-credentials/${k}`);
      if (r && r.expires_at < now) {
        await storage.delete(`ek-credentials/${k}`);
        n++;
      }
    }
    return n;
  }
}

/** The outcome of an answer, as the verdict's vtpm.ek-credential check. */
export function answerCheck(
  p: PendingCredential,
  workloadId: string,
  answer: { secret?: Buffer; error?: string },
): Check {
  const id = EK_CREDENTIAL_CHECK;
  const ek = `EK ${p.ek_name.slice(0, 16)}…`;
  if (p.workload_id !== workloadId) return { id, ok: false, detail: "the credential was issued for another workload" };
  if (p.expires_at < Math.floor(Date.now() / 1000))
    return { id, ok: false, detail: "the credential expired before it was answered" };
  if (answer.error !== undefined)
    return { id, ok: false, detail: `the guest could not activate the credential for ${ek}: ${answer.error}` };
  const want = Buffer.from(p.secret_sha256, "hex");
  const got = sha256(answer.secret ?? Buffer.alloc(0));
  if (!answer.secret?.length || !timingSafeEqual(want, got))
    return {
      id,
      ok: false,
      detail: `the answer is not the credential's secret: the AK does not live in the TPM of the registered ${ek} (another TPM, e.g. a software TPM)`,
    };
  return {
    id,
    ok: true,
    detail: `the AK activated a credential made for the registered ${ek}: it is a key of that TPM (the EK itself is vouched for by its registration, e.g. the EC2 API)`,
  };
}
