// The new unseal key of a sys/rekey started with require_verification, between the old-key quorum and the
// new-key quorum (sys/rekey/verify). It is held only in this process's memory — never written to storage, in
// clear or wrapped — so a restart or a seal discards it and the old key stays in force (Vault: "if you cancel
// the rekey process or seal Vault before verification is complete the new shares will be discarded and the
// current shares will remain valid"). The attempt stored in the barrier (rekey.ts) names this holder, so a
// process that does not hold the key (another replica, this runtime after a restart) refuses verification
// instead of completing it with anything else.
import { randomUUID } from "node:crypto";

export interface HeldRekey {
  /** The stored attempt this key belongs to (a cancelled or replaced attempt makes it stale). */
  attemptNonce: string;
  /** The current verification round's nonce (Vault renews it on a failed round and on DELETE sys/rekey/verify). */
  verificationNonce: string;
  /** The key the old shares reassembled: the storage transaction checks it still opens the keyring. */
  oldKey: Buffer;
  newKey: Buffer;
  shares: number;
  threshold: number;
  /** Shares of the new key submitted in this round, each once. */
  progress: Buffer[];
}

export class PendingRekeyVerification {
  /** This process's name in the stored attempt: a fresh one per process, so no other process can claim the key. */
  readonly holder = randomUUID();
  #held: HeldRekey | undefined;

  /** Holds a new key (replacing and zeroing any earlier one). */
  hold(h: HeldRekey): void {
    this.discard();
    this.#held = h;
  }

  /** The held key of the attempt with this nonce, or undefined (none held, or held for another attempt). */
  get(attemptNonce: string): HeldRekey | undefined {
    return this.#held?.attemptNonce === attemptNonce ? this.#held : undefined;
  }

  /** Zeroes and forgets the held key; with an attempt nonce, only when it belongs to that attempt. */
  discard(attemptNonce?: string): void {
    const h = this.#held;
    if (!h || (attemptNonce !== undefined && h.attemptNonce !== attemptNonce)) return;
    h.oldKey.fill(0);
    h.newKey.fill(0);
    for (const p of h.progress) p.fill(0);
    h.progress = [];
    this.#held = undefined;
  }
}
