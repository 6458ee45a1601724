// Nitride's token-signing key ring (ES384). The first key is generated on first use inside a storage
// transaction, so replicas on one database agree on it; rotation keeps retired keys published in the
// JWKS until every token they signed has expired.
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import type { JWK } from "jose";
import type { Storage } from "../storage/types.js";
import { jsonBytes, readJson } from "./fields.js";
import { MAX_TOKEN_TTL_S } from "./config.js";

interface StoredKey { kid: string; created: number; retired_at?: number; private_jwk: JWK; public_jwk: JWK }
interface KeyRing { keys: StoredKey[] }

const RING_KEY = "keys/signing";
/** Replicas re-read the ring this often, so a rotation elsewhere is picked up quickly. */
const CACHE_MS = 5_000;
/** Grace after a retired key's last possible token expired (clock skew). */
const RETIRE_GRACE_S = 300;

function newKey(): StoredKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const kid = randomBytes(12).toString("base64url");
  return {
    kid, created: Math.floor(Date.now() / 1000),
    private_jwk: privateKey.export({ format: "jwk" }) as JWK,
    public_jwk: { ...(publicKey.export({ format: "jwk" }) as JWK), kid, alg: "ES384", use: "sig" },
  };
}

function live(ring: KeyRing, now: number): StoredKey[] {
  return ring.keys.filter((k) => k.retired_at === undefined || k.retired_at + MAX_TOKEN_TTL_S + RETIRE_GRACE_S > now);
}

export class SigningKeys {
  private cache: { ring: KeyRing; at: number } | undefined;
  private keyObjects = new Map<string, KeyObject>();

  private async ring(storage: Storage): Promise<KeyRing> {
    if (this.cache && Date.now() - this.cache.at < CACHE_MS) return this.cache.ring;
    let ring = await readJson<KeyRing>(storage, RING_KEY);
    if (!ring || !ring.keys.some((k) => k.retired_at === undefined)) {
      ring = await storage.transaction(async (tx) => {
        const r = (await readJson<KeyRing>(tx, RING_KEY)) ?? { keys: [] };
        if (!r.keys.some((k) => k.retired_at === undefined)) {
          r.keys.push(newKey());
          await tx.put(RING_KEY, jsonBytes(r));
        }
        return r;
      });
    }
    this.cache = { ring, at: Date.now() };
    return ring;
  }

  /** The key new tokens are signed with. */
  async current(storage: Storage): Promise<{ kid: string; key: KeyObject }> {
    const ring = await this.ring(storage);
    const k = ring.keys.find((x) => x.retired_at === undefined)!;
    let key = this.keyObjects.get(k.kid);
    if (!key) this.keyObjects.set(k.kid, (key = createPrivateKey({ key: k.private_jwk as import("node:crypto").JsonWebKey, format: "jwk" })));
    return { kid: k.kid, key };
  }

  /** Public keys of every key whose tokens may still be valid. */
  async jwks(storage: Storage): Promise<{ keys: JWK[] }> {
    const ring = await this.ring(storage);
    return { keys: live(ring, Math.floor(Date.now() / 1000)).map((k) => k.public_jwk) };
  }

  /** Retires the current key and starts a new one; drops keys nothing can still depend on. */
  async rotate(storage: Storage): Promise<{ kid: string; retired: string[] }> {
    const now = Math.floor(Date.now() / 1000);
    const ring = await storage.transaction(async (tx) => {
      const r = (await readJson<KeyRing>(tx, RING_KEY)) ?? { keys: [] };
      for (const k of r.keys) if (k.retired_at === undefined) k.retired_at = now;
      r.keys = live(r, now);
      r.keys.push(newKey());
      await tx.put(RING_KEY, jsonBytes(r));
      return r;
    });
    this.cache = { ring, at: Date.now() };
    return { kid: ring.keys[ring.keys.length - 1].kid, retired: ring.keys.filter((k) => k.retired_at !== undefined).map((k) => k.kid) };
  }
}
