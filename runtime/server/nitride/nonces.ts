// Challenge nonces: 32 random bytes, bound to one workload, single use, short TTL. They live in the
// mount's storage (not memory) so any replica on the same database can consume a nonce another one
// issued; consumption is a read-and-delete inside one transaction, so a nonce is accepted at most once.
import { createHash, randomBytes } from "node:crypto";
import type { Storage } from "../storage/types.js";
import { jsonBytes, readJson } from "../vault/fields.js";

interface NonceRecord {
  workload_id: string;
  expires_at: number;
}

const keyFor = (nonce: Uint8Array) => `nonces/${createHash("sha256").update(nonce).digest("hex")}`;
const SWEEP_EVERY_MS = 30_000;

export type ConsumeResult = "ok" | "unknown" | "expired" | "other-workload";

export class NonceStore {
  private lastSweep = 0;

  async issue(storage: Storage, workloadId: string, ttlS: number): Promise<{ nonce: Buffer; expiresAt: number }> {
    const nonce = randomBytes(32);
    const expiresAt = Math.floor(Date.now() / 1000) + ttlS;
    await storage.put(
      keyFor(nonce),
      jsonBytes({ workload_id: workloadId, expires_at: expiresAt } satisfies NonceRecord),
    );
    if (Date.now() - this.lastSweep > SWEEP_EVERY_MS) {
      this.lastSweep = Date.now();
      void this.sweep(storage).catch(() => undefined);
    }
    return { nonce, expiresAt };
  }

  /** Consumes the nonce whatever the outcome, so a refused attempt cannot be retried with it. */
  async consume(storage: Storage, nonce: Uint8Array, workloadId: string): Promise<ConsumeResult> {
    const rec = await storage.transaction(async (tx) => {
      const r = await readJson<NonceRecord>(tx, keyFor(nonce));
      if (r) await tx.delete(keyFor(nonce));
      return r;
    });
    if (!rec) return "unknown";
    if (rec.expires_at < Math.floor(Date.now() / 1000)) return "expired";
    if (rec.workload_id !== workloadId) return "other-workload";
    return "ok";
  }

  /** Deletes expired nonces (best effort; an expired nonce is refused anyway). */
  async sweep(storage: Storage): Promise<number> {
    const now = Math.floor(Date.now() / 1000);
    let n = 0;
    for (const k of await storage.list("nonces/")) {
      const r = await readJson<NonceRecord>(storage, `nonces/${k}`);
      if (r && r.expires_at < now) {
        await storage.delete(`nonces/${k}`);
        n++;
      }
    }
    return n;
  }
}
