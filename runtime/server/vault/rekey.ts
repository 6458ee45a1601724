// sys/rekey: an operator quorum replaces the unseal key shares (their number, threshold and holders) with
// Vault's API (`vault operator rekey -init -key-shares N -key-threshold T`, then one `vault operator rekey
// -nonce …` per share holder). The attempt carries a nonce every share must name; at the threshold the shares
// are combined and checked against the keyring, and Core.rekeyUnsealKey draws a new unseal key inside the
// runtime and moves everything the old one protected to it in one storage transaction (keyring, auto-unseal
// wrapping, peer-unseal shares, seal config). The new shares exist only in the answer to the request that
// completed the quorum. Like Vault the endpoints need no token (the shares are the authority) and work only
// while unsealed. The attempt lives in the barrier (one key), so every worker and replica sees one attempt.
//
// Target: the barrier key (sys/rekey). The runtime's operator shares ARE shares of the barrier's unseal key —
// the derived-key auto-unseal and the peer shares are two more ways to the same key, not a seal holding it —
// so there is no separate recovery key and sys/rekey-recovery-key answers as Vault does for a Shamir seal.
// Not supported, each refused with an error naming the field: pgp_keys (as at sys/init: the CLI encrypts
// shares to operator keys on the client), backup (it needs pgp_keys), require_verification.
import { randomUUID } from "node:crypto";
import { combine } from "shamir-secret-sharing";
import { LogicalError } from "./backend.js";
import type { CoreView } from "./core-view.js";
import { parseShare } from "./generate-root.js";
import { checkShareConfig } from "./share-config.js";

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
}

/** Vault's RekeyUpdateResponse once complete. */
export interface RekeyResult {
  nonce: string;
  complete: true;
  keys: string[];
  keys_base64: string[];
  pgp_fingerprints: null;
  backup: false;
  verification_required: false;
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
  if (data.require_verification === true || data.require_verification === "true")
    throw new LogicalError(
      400,
      "require_verification: not supported by this runtime; the new shares take effect when the rekey completes",
    );
}

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
      progress: a?.progress.length ?? 0,
      required: this.core.sealStatus().t,
      pgp_fingerprints: null,
      backup: false,
      verification_required: false,
    };
  }

  async status(): Promise<RekeyStatus> {
    return this.view(await this.read());
  }

  /** init (PUT): starts an attempt for the new configuration. */
  async start(data: Record<string, unknown>): Promise<RekeyStatus> {
    refuseUnsupported(data);
    const shares = count(data, "secret_shares");
    const threshold = count(data, "secret_threshold");
    checkShareConfig(shares, threshold);
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
    };
    await this.core.barrier.transaction(async (tx) => {
      if (await tx.get(ATTEMPT_KEY)) throw new LogicalError(400, "rekey already in progress");
      await tx.put(ATTEMPT_KEY, Buffer.from(JSON.stringify(attempt)));
    });
    return this.view(attempt);
  }

  /**
   * init (DELETE): drops the attempt and every share submitted to it. As Vault 1.21: the attempt's nonce is
   * required, unless the attempt is older than ten minutes (a lost nonce cannot block rekeying for good).
   */
  async cancel(data: Record<string, unknown>): Promise<void> {
    const nonce = typeof data.nonce === "string" ? data.nonce : "";
    await this.core.barrier.transaction(async (tx) => {
      const raw = await tx.get(ATTEMPT_KEY);
      if (!raw) return;
      const a = JSON.parse(raw.toString("utf8")) as Attempt;
      if (a.nonce !== nonce && Date.now() - a.created < REKEY_CANCEL_WITHOUT_NONCE_MS)
        throw new LogicalError(
          400,
          "nonce: cancelling a rekey started less than 10 minutes ago needs its nonce (shown by the rekey status)",
        );
      await tx.delete(ATTEMPT_KEY);
    });
  }

  /** update: one current share with the attempt's nonce; at the threshold the rekey, and the new shares. */
  async update(data: Record<string, unknown>): Promise<RekeyStatus | RekeyResult> {
    const key = data.key;
    const nonce = data.nonce;
    if (typeof key !== "string" || key.trim() === "") throw new LogicalError(400, "key: required");
    if (typeof nonce !== "string" || nonce === "") throw new LogicalError(400, "nonce: required");
    const share = parseShare(key.trim(), this.core.sealStatus().n === 1);
    const required = this.core.sealStatus().t;
    const outcome = await this.core.barrier.transaction(async (tx) => {
      const raw = await tx.get(ATTEMPT_KEY);
      if (!raw) throw new LogicalError(400, "no rekey in progress");
      const a = JSON.parse(raw.toString("utf8")) as Attempt;
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
    let oldKey: Buffer | undefined;
    try {
      oldKey =
        parts.length === 1 ? Buffer.from(parts[0]) : Buffer.from(await combine(parts.map((p) => new Uint8Array(p))));
    } catch {
      oldKey = undefined;
    }
    for (const p of parts) p.fill(0);
    try {
      if (!oldKey || !(await this.core.barrier.verifyUnsealKey(oldKey)))
        throw new LogicalError(400, "rekey aborted: the key shares do not reconstruct the unseal key (progress reset)");
      // Exactly one caller completes an attempt: the one whose transaction removes it (with the rekey itself).
      const fresh = await this.core.rekeyUnsealKey(oldKey, a.secret_shares, a.secret_threshold, async (tx) => {
        const raw = await tx.get(ATTEMPT_KEY);
        if (!raw || (JSON.parse(raw.toString("utf8")) as Attempt).nonce !== a.nonce)
          throw new LogicalError(400, "no rekey in progress");
        await tx.delete(ATTEMPT_KEY);
      });
      const result: RekeyResult = {
        nonce: a.nonce,
        complete: true,
        keys: fresh.map((k) => k.toString("hex")),
        keys_base64: fresh.map((k) => k.toString("base64")),
        pgp_fingerprints: null,
        backup: false,
        verification_required: false,
      };
      for (const k of fresh) k.fill(0);
      return result;
    } finally {
      oldKey?.fill(0);
    }
  }
}
