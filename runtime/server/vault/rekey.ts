// sys/rekey: an operator quorum replaces the unseal key shares (their number, threshold and holders) with
// Vault's API (`vault operator rekey -init -key-shares N -key-threshold T`, then one `vault operator rekey
// -nonce …` per share holder). The attempt carries a nonce every share must name; at the threshold the shares
// are combined and checked against the keyring, a new unseal key is drawn inside the runtime and split into the
// operators' shares, and Core.rekeyUnsealKey moves everything the old key protected to it in one storage
// transaction (keyring, auto-unseal wrapping, peer-unseal shares, seal config). The new shares exist only in the
// answer to the request that completed the quorum. Like Vault the endpoints need no token (the shares are the
// authority) and work only while unsealed. The attempt lives in the barrier (one key), so every worker and
// replica sees one attempt.
//
// require_verification (Vault's `-verify`): the old-key quorum returns the new shares with a verification nonce
// but commits nothing; the new key waits in this process's memory (rekey-verification.ts, never in storage) until
// a threshold of the NEW shares is given to sys/rekey/verify, and only then does the same transaction put it in
// force. A restart or a seal loses it and the old key stays in force. Deviation from Vault: only the process
// that completed the old-key quorum can verify (a runtime of several workers refuses require_verification at
// init; another replica, or this runtime after a restart, refuses verification and the attempt must be
// cancelled), because the key lives in one process's memory and this runtime has no active node to forward to.
//
// Target: the barrier key (sys/rekey). The runtime's operator shares ARE shares of the barrier's unseal key —
// the derived-key auto-unseal and the peer shares are two more ways to the same key, not a seal holding it —
// so there is no separate recovery key and sys/rekey-recovery-key answers as Vault does for a Shamir seal.
// Not supported, each refused with an error naming the field: pgp_keys (as at sys/init: the CLI encrypts
// shares to operator keys on the client) and backup (it needs pgp_keys).
import { randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { LogicalError } from "./backend.js";
import type { CoreView } from "./core-view.js";
import { parseShare } from "./generate-root.js";
import type { HeldRekey } from "./rekey-verification.js";
import { checkShareConfig, combineShares, splitKey } from "./share-config.js";

const ATTEMPT_KEY = "core/rekey";
/** Vault 1.21: a rekey younger than this is cancelled only with its nonce. */
export const REKEY_CANCEL_WITHOUT_NONCE_MS = 10 * 60_000;

interface Attempt {
  nonce: string;
  /** The new configuration. */
  secret_shares: number;
  secret_threshold: number;
  /** ms since epoch. */
  created: number;
  /** Current shares submitted so far (base64), each once. */
  progress: string[];
  /** require_verification: the new key waits for a quorum of its own shares (sys/rekey/verify). */
  verification_required?: boolean;
  /**
   * Set when the old-key quorum completed an attempt that requires verification: the round's nonce and the
   * process holding the new key in memory (the key itself is never stored).
   */
  verification?: { nonce: string; holder: string };
}

/** Vault's RekeyStatusResponse. */
export interface RekeyStatus {
  nonce: string;
  started: boolean;
  t: number;
  n: number;
  progress: number;
  required: number;
  pgp_fingerprints: string[] | null;
  backup: boolean;
  verification_required: boolean;
  /** Vault omits it while there is no verification round. */
  verification_nonce?: string;
}

/** Vault's RekeyUpdateResponse once complete. */
export interface RekeyResult {
  nonce: string;
  complete: true;
  keys: string[];
  keys_base64: string[];
  pgp_fingerprints: null;
  backup: false;
  verification_required: boolean;
  verification_nonce?: string;
}

/** Vault's RekeyVerificationStatusResponse. */
export interface RekeyVerificationStatus {
  nonce: string;
  started: boolean;
  t: number;
  n: number;
  progress: number;
}

/** Vault's RekeyVerificationUpdateResponse once complete. */
export interface RekeyVerificationResult {
  nonce: string;
  complete: true;
}

/** A share count or threshold: a JSON integer or a numeric string (what the CLI and curl send). */
function count(data: Record<string, unknown>, field: string): number {
  const v = data[field];
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n))
    throw new LogicalError(
      400,
      `${field}: required, an integer (the new ${field === "secret_shares" ? "number of key shares" : "key threshold"})`,
    );
  return n;
}

/** The unsupported options: refused by name, never silently dropped (an operator would think them in force). */
function refuseUnsupported(data: Record<string, unknown>): void {
  const pgp = data.pgp_keys;
  if (pgp !== undefined && pgp !== null && pgp !== "" && !(Array.isArray(pgp) && pgp.length === 0))
    throw new LogicalError(
      400,
      "pgp_keys: PGP-encrypted key shares are not supported (as at sys/init); encrypt the new shares to operator keys on the client ('buckypaper runtime rekey --recovery-keys')",
    );
  if (data.backup === true || data.backup === "true")
    throw new LogicalError(
      400,
      "backup: not supported (a backup is of PGP-encrypted shares, and pgp_keys is not supported)",
    );
}

/** require_verification: a JSON boolean or its string (form-encoded clients); anything else is refused. */
function requireVerification(data: Record<string, unknown>): boolean {
  const v = data.require_verification;
  if (v === undefined || v === null || v === false || v === "false" || v === "") return false;
  if (v === true || v === "true") return true;
  throw new LogicalError(400, "require_verification: must be a boolean");
}

const noneInProgress = () => new LogicalError(400, "no rekey in progress");

export class Rekey {
  constructor(private readonly core: CoreView) {}

  private async read(): Promise<Attempt | undefined> {
    const raw = await this.core.barrier.get(ATTEMPT_KEY);
    return raw ? (JSON.parse(raw.toString("utf8")) as Attempt) : undefined;
  }

  private view(a: Attempt | undefined): RekeyStatus {
    return {
      nonce: a?.nonce ?? "",
      started: a !== undefined,
      t: a?.secret_threshold ?? 0,
      n: a?.secret_shares ?? 0,
      // Vault keeps the quorum's count through the verification round (its CLI shows "(verification in progress)")
      progress: a?.verification ? this.core.sealStatus().t : (a?.progress.length ?? 0),
      required: this.core.sealStatus().t,
      pgp_fingerprints: null,
      backup: false,
      verification_required: a?.verification_required ?? false,
      ...(a?.verification ? { verification_nonce: a.verification.nonce } : {}),
    };
  }

  async status(): Promise<RekeyStatus> {
    return this.view(await this.read());
  }

  /** init (PUT): starts an attempt for the new configuration. */
  async start(data: Record<string, unknown>): Promise<RekeyStatus> {
    refuseUnsupported(data);
    const verify = requireVerification(data);
    const shares = count(data, "secret_shares");
    const threshold = count(data, "secret_threshold");
    checkShareConfig(shares, threshold);
    if (verify && !this.core.pendingRekey)
      throw new LogicalError(
        400,
        "require_verification: needs a runtime with workers = 1 (the new key awaiting verification lives only in the memory of the process that completed the quorum, which verification shares sent to another worker could not reach)",
      );
    // Before the derived-key request below: a running attempt refuses a new one without asking the PSP.
    if (await this.read()) throw new LogicalError(400, "rekey already in progress");
    // A replica that could not renew the auto-unseal wrapping is refused now, not after the quorum gathered.
    (await this.core.rekeyWrappingKey())?.fill(0);
    const attempt: Attempt = {
      nonce: randomUUID(),
      secret_shares: shares,
      secret_threshold: threshold,
      created: Date.now(),
      progress: [],
      ...(verify ? { verification_required: true } : {}),
    };
    await this.core.barrier.transaction(async (tx) => {
      if (await tx.get(ATTEMPT_KEY)) throw new LogicalError(400, "rekey already in progress");
      await tx.put(ATTEMPT_KEY, Buffer.from(JSON.stringify(attempt)));
    });
    return this.view(attempt);
  }

  /**
   * init (DELETE): drops the attempt and every share submitted to it (and a new key awaiting verification). As
   * Vault 1.21: the attempt's nonce is required, unless the attempt is older than ten minutes (a lost nonce
   * cannot block rekeying for good).
   */
  async cancel(data: Record<string, unknown>): Promise<void> {
    const nonce = typeof data.nonce === "string" ? data.nonce : "";
    const dropped = await this.core.barrier.transaction(async (tx) => {
      const raw = await tx.get(ATTEMPT_KEY);
      if (!raw) return undefined;
      const a = JSON.parse(raw.toString("utf8")) as Attempt;
      if (a.nonce !== nonce && Date.now() - a.created < REKEY_CANCEL_WITHOUT_NONCE_MS)
        throw new LogicalError(
          400,
          "nonce: cancelling a rekey started less than 10 minutes ago needs its nonce (shown by the rekey status)",
        );
      await tx.delete(ATTEMPT_KEY);
      return a.nonce;
    });
    if (dropped) this.core.pendingRekey?.discard(dropped);
  }

  /**
   * update: one current share with the attempt's nonce. At the threshold: a new key and its shares — in force at
   * once, or (require_verification) held in memory until sys/rekey/verify gathers a threshold of the new shares.
   */
  async update(data: Record<string, unknown>): Promise<RekeyStatus | RekeyResult> {
    const key = data.key;
    const nonce = data.nonce;
    if (typeof key !== "string" || key.trim() === "") throw new LogicalError(400, "key: required");
    if (typeof nonce !== "string" || nonce === "") throw new LogicalError(400, "nonce: required");
    const share = parseShare(key.trim(), this.core.sealStatus().n === 1);
    const required = this.core.sealStatus().t;
    const outcome = await this.core.barrier.transaction(async (tx) => {
      const raw = await tx.get(ATTEMPT_KEY);
      if (!raw) throw noneInProgress();
      const a = JSON.parse(raw.toString("utf8")) as Attempt;
      if (a.verification)
        throw new LogicalError(
          400,
          `rekey operation already finished; verification must be performed; nonce for the verification operation is "${a.verification.nonce}"`,
        );
      if (a.nonce !== nonce) throw new LogicalError(400, "nonce: does not match the rekey in progress");
      const b64 = share.toString("base64");
      if (a.progress.includes(b64))
        throw new LogicalError(400, "key: this share has already been provided during this rekey operation");
      a.progress.push(b64);
      if (a.progress.length < required) {
        await tx.put(ATTEMPT_KEY, Buffer.from(JSON.stringify(a)));
        return { attempt: a, done: false as const };
      }
      // The shares are used whatever the result (Vault drops the progress); the attempt stays until it
      // completes or is cancelled.
      await tx.put(ATTEMPT_KEY, Buffer.from(JSON.stringify({ ...a, progress: [] })));
      return { attempt: a, done: true as const };
    });
    share.fill(0);
    if (!outcome.done) return this.view(outcome.attempt);
    const a = outcome.attempt;
    const parts = a.progress.map((s) => Buffer.from(s, "base64"));
    const oldKey = await combineShares(parts);
    for (const p of parts) p.fill(0);
    let newKey: Buffer | undefined;
    let fresh: Buffer[] = [];
    try {
      if (!oldKey || !(await this.core.barrier.verifyUnsealKey(oldKey)))
        throw new LogicalError(400, "rekey aborted: the key shares do not reconstruct the unseal key (progress reset)");
      newKey = randomBytes(32);
      // The operators' shares first: once the new key is in force (or held), a split that failed would leave a
      // key no operator holds.
      fresh = await splitKey(newKey, a.secret_shares, a.secret_threshold);
      const verification = a.verification_required ? await this.holdForVerification(a, oldKey, newKey) : undefined;
      if (!verification)
        // Exactly one caller completes an attempt: the one whose transaction removes it (with the rekey itself).
        await this.core.rekeyUnsealKey(oldKey, newKey, a.secret_shares, a.secret_threshold, async (tx) => {
          const raw = await tx.get(ATTEMPT_KEY);
          if (!raw || (JSON.parse(raw.toString("utf8")) as Attempt).nonce !== a.nonce) throw noneInProgress();
          await tx.delete(ATTEMPT_KEY);
        });
      return {
        nonce: a.nonce,
        complete: true,
        keys: fresh.map((k) => k.toString("hex")),
        keys_base64: fresh.map((k) => k.toString("base64")),
        pgp_fingerprints: null,
        backup: false,
        verification_required: verification !== undefined,
        ...(verification ? { verification_nonce: verification } : {}),
      };
    } finally {
      oldKey?.fill(0);
      newKey?.fill(0);
      for (const k of fresh) k.fill(0);
    }
  }

  /**
   * require_verification at the old-key quorum: the new key (and the old one, which the final transaction checks
   * again) go to this process's memory, and the stored attempt records the verification round and its holder —
   * nothing of the new key. Returns the verification nonce. Exactly one caller does this: the one whose
   * transaction finds the attempt without a round.
   */
  private async holdForVerification(a: Attempt, oldKey: Buffer, newKey: Buffer): Promise<string> {
    const pending = this.core.pendingRekey;
    if (!pending) throw new LogicalError(400, "require_verification: needs a runtime with workers = 1");
    const verification = { nonce: randomUUID(), holder: pending.holder };
    // Held before the round is stored, so no verification request finds the round without its key.
    pending.hold({
      attemptNonce: a.nonce,
      verificationNonce: verification.nonce,
      oldKey: Buffer.from(oldKey),
      newKey: Buffer.from(newKey),
      shares: a.secret_shares,
      threshold: a.secret_threshold,
      progress: [],
    });
    try {
      await this.core.barrier.transaction(async (tx) => {
        const raw = await tx.get(ATTEMPT_KEY);
        const cur = raw && (JSON.parse(raw.toString("utf8")) as Attempt);
        if (!cur || cur.nonce !== a.nonce || cur.verification) throw noneInProgress();
        await tx.put(ATTEMPT_KEY, Buffer.from(JSON.stringify({ ...cur, progress: [], verification })));
      });
    } catch (e) {
      pending.discard(a.nonce);
      throw e;
    }
    return verification.nonce;
  }

  /**
   * The attempt whose verification round this process can serve, and its held key. Refused: no attempt, no round,
   * or a round whose key is not in this process's memory (another replica holds it, or it was lost with a restart
   * or a seal — the old key is still in force, and the attempt can only be cancelled).
   */
  private async round(): Promise<{
    a: Attempt & { verification: { nonce: string; holder: string } };
    held: HeldRekey;
  }> {
    const a = await this.read();
    const pending = this.core.pendingRekey;
    if (!a) {
      pending?.discard(); // an attempt cancelled through another process: its key is of no use any more
      throw noneInProgress();
    }
    if (!a.verification) throw new LogicalError(400, "no rekey verification in progress");
    const held = pending?.get(a.nonce);
    if (!held || a.verification.holder !== pending?.holder || held.verificationNonce !== a.verification.nonce)
      throw new LogicalError(
        400,
        "rekey verification not possible here: the new key of this rekey exists only in the memory of the runtime process that completed the quorum " +
          "(another replica, or this runtime before a restart or a seal, which lost it; the current shares are still in force); " +
          "send the verification to that process, or cancel the rekey (DELETE sys/rekey/init with its nonce) and start again",
      );
    return { a: a as Attempt & { verification: { nonce: string; holder: string } }, held };
  }

  /** verify (GET): the verification round; started false while the attempt has none (Vault's answer). */
  async verifyStatus(): Promise<RekeyVerificationStatus> {
    const a = await this.read();
    if (!a) throw new LogicalError(400, "no rekey configuration found");
    const held = a.verification && this.core.pendingRekey?.get(a.nonce);
    return {
      nonce: a.verification?.nonce ?? "",
      started: a.verification !== undefined,
      t: a.secret_threshold,
      n: a.secret_shares,
      progress: held ? held.progress.length : 0,
    };
  }

  /** verify (DELETE): restarts the round (progress dropped, a new nonce), as Vault; the attempt and key stay. */
  async verifyRestart(): Promise<RekeyVerificationStatus> {
    const { a, held } = await this.round();
    await this.renewRound(a.nonce, held);
    return this.verifyStatus();
  }

  /** Drops the round's shares and gives it a new nonce, in memory and in the stored attempt. */
  private async renewRound(attemptNonce: string, held: HeldRekey): Promise<void> {
    for (const p of held.progress) p.fill(0);
    held.progress = [];
    const nonce = randomUUID();
    await this.core.barrier.transaction(async (tx) => {
      const raw = await tx.get(ATTEMPT_KEY);
      const cur = raw && (JSON.parse(raw.toString("utf8")) as Attempt);
      if (!cur || cur.nonce !== attemptNonce || !cur.verification) throw noneInProgress();
      await tx.put(ATTEMPT_KEY, Buffer.from(JSON.stringify({ ...cur, verification: { ...cur.verification, nonce } })));
    });
    held.verificationNonce = nonce;
  }

  /**
   * verify (PUT): one share of the NEW key with the round's nonce. At the new threshold the shares must
   * reassemble the held key exactly; then the rekey transaction puts it in force and the attempt ends. Shares that
   * reassemble anything else (the old key's, a mix) fail the round: progress dropped, a new nonce (Vault).
   */
  async verify(data: Record<string, unknown>): Promise<RekeyVerificationStatus | RekeyVerificationResult> {
    const key = data.key;
    const nonce = data.nonce;
    if (typeof key !== "string" || key.trim() === "") throw new LogicalError(400, "key: required");
    if (typeof nonce !== "string" || nonce === "") throw new LogicalError(400, "nonce: required");
    const { a, held } = await this.round();
    if (nonce !== a.verification.nonce)
      throw new LogicalError(
        400,
        `incorrect nonce supplied; nonce for this verify operation is "${a.verification.nonce}"`,
      );
    const share = parseShare(key.trim(), held.shares === 1);
    if (held.progress.some((p) => p.length === share.length && timingSafeEqual(p, share))) {
      share.fill(0);
      throw new LogicalError(400, "key: this share has already been provided during this verify operation");
    }
    held.progress.push(share);
    if (held.progress.length < held.threshold) return this.verifyStatus();
    const parts = held.progress;
    held.progress = [];
    const candidate = await combineShares(parts);
    for (const p of parts) p.fill(0);
    try {
      const matches =
        candidate !== undefined && candidate.length === held.newKey.length && timingSafeEqual(candidate, held.newKey);
      if (!matches) {
        await this.renewRound(a.nonce, held);
        throw new LogicalError(
          400,
          "rekey verification failed; incorrect key shares supplied (progress reset, a new verification nonce; the current shares are still in force)",
        );
      }
    } finally {
      candidate?.fill(0);
    }
    const verificationNonce = held.verificationNonce;
    // The same transaction as an unverified rekey; it runs once: it removes the attempt and its round.
    await this.core.rekeyUnsealKey(held.oldKey, held.newKey, held.shares, held.threshold, async (tx) => {
      const raw = await tx.get(ATTEMPT_KEY);
      const cur = raw && (JSON.parse(raw.toString("utf8")) as Attempt);
      if (!cur || cur.nonce !== a.nonce || cur.verification?.nonce !== verificationNonce) throw noneInProgress();
      await tx.delete(ATTEMPT_KEY);
    });
    this.core.pendingRekey?.discard(a.nonce);
    return { nonce: verificationNonce, complete: true };
  }
}
