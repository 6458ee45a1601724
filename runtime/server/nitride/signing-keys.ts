// Nitride's token-signing key ring (ES384 by default, EdDSA/Ed25519 when nitride/config asks for it).
// The first key is generated on first use inside a storage transaction, so replicas on one database agree
// on it; rotation (also when the configured algorithm changes) keeps retired keys published in the JWKS
// until every token they signed has expired.
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import type { JWK } from "jose";
import type { Storage } from "../storage/types.js";
import { jsonBytes, readJson } from "../vault/fields.js";
import { MAX_TOKEN_TTL_S, type TokenAlgorithm } from "./config.js";

/** `alg` is absent in rings written before EdDSA existed: those keys are ES384. */
interface StoredKey {
  kid: string;
  alg?: TokenAlgorithm;
  created: number;
  retired_at?: number;
  private_jwk: JWK;
  public_jwk: JWK;
}
interface KeyRing {
  keys: StoredKey[];
}

const RING_KEY = "keys/signing";
/** Replicas re-read the ring this often, so a rotation elsewhere is picked up quickly. */
const CACHE_MS = 5_000;
/** Grace after a retired key's last possible token expired (clock skew). */
const RETIRE_GRACE_S = 300;

const algOf = (k: StoredKey): TokenAlgorithm => k.alg ?? "ES384";

function newKey(alg: TokenAlgorithm): StoredKey {
  const { privateKey, publicKey } =
    alg === "EdDSA" ? generateKeyPairSync("ed25519") : generateKeyPairSync("ec", { namedCurve: "P-384" });
  const kid = randomBytes(12).toString("base64url");
  return {
    kid,
    alg,
    created: Math.floor(Date.now() / 1000),
    private_jwk: privateKey.export({ format: "jwk" }) as JWK,
    public_jwk: { ...(publicKey.export({ format: "jwk" }) as JWK), kid, alg, use: "sig" },
  };
}

const activeOf = (ring: KeyRing) => ring.keys.find((k) => k.retired_at === undefined);

function live(ring: KeyRing, now: number): StoredKey[] {
  return ring.keys.filter((k) => k.retired_at === undefined || k.retired_at + MAX_TOKEN_TTL_S + RETIRE_GRACE_S > now);
}

export class SigningKeys {
  private cache: { ring: KeyRing; at: number } | undefined;
  private keyObjects = new Map<string, KeyObject>();

  private async ring(storage: Storage, alg: TokenAlgorithm): Promise<KeyRing> {
    if (this.cache && Date.now() - this.cache.at < CACHE_MS) return this.cache.ring;
    let ring = await readJson<KeyRing>(storage, RING_KEY);
    if (!ring || !activeOf(ring)) {
      ring = await storage.transaction(async (tx) => {
        const r = (await readJson<KeyRing>(tx, RING_KEY)) ?? { keys: [] };
        if (!activeOf(r)) {
          r.keys.push(newKey(alg));
          await tx.put(RING_KEY, jsonBytes(r));
        }
        return r;
      });
    }
    this.cache = { ring, at: Date.now() };
    return ring;
  }

  /**
   * The key new tokens are signed with, whatever its algorithm: a change of the configured algorithm
   * rotates the ring once (nitride/config), so replicas with an older cached config never flip it back.
   * `alg` only chooses the algorithm of the very first key.
   */
  async current(
    storage: Storage,
    alg: TokenAlgorithm = "ES384",
  ): Promise<{ kid: string; alg: TokenAlgorithm; key: KeyObject }> {
    const k = activeOf(await this.ring(storage, alg))!;
    let key = this.keyObjects.get(k.kid);
    if (!key)
      this.keyObjects.set(
        k.kid,
        (key = createPrivateKey({ key: k.private_jwk as import("node:crypto").JsonWebKey, format: "jwk" })),
      );
    return { kid: k.kid, alg: algOf(k), key };
  }

  /** Algorithm of the active key (undefined before the first key exists). */
  async activeAlgorithm(storage: Storage): Promise<TokenAlgorithm | undefined> {
    const ring = await readJson<KeyRing>(storage, RING_KEY);
    const k = ring && activeOf(ring);
    return k ? algOf(k) : undefined;
  }

  /** Public keys of every key whose tokens may still be valid. */
  async jwks(storage: Storage, alg: TokenAlgorithm = "ES384"): Promise<{ keys: JWK[] }> {
    const ring = await this.ring(storage, alg);
    return { keys: live(ring, Math.floor(Date.now() / 1000)).map((k) => k.public_jwk) };
  }

  /** Algorithms of the keys in the JWKS (what OIDC discovery advertises). */
  async algorithms(storage: Storage, alg: TokenAlgorithm = "ES384"): Promise<TokenAlgorithm[]> {
    const ring = await this.ring(storage, alg);
    return [...new Set(live(ring, Math.floor(Date.now() / 1000)).map(algOf))];
  }

  /** Retires the current key and starts a new one (of `alg`); drops keys nothing can still depend on. */
  async rotate(storage: Storage, alg: TokenAlgorithm = "ES384"): Promise<{ kid: string; retired: string[] }> {
    const now = Math.floor(Date.now() / 1000);
    const ring = await storage.transaction(async (tx) => {
      const r = (await readJson<KeyRing>(tx, RING_KEY)) ?? { keys: [] };
      for (const k of r.keys) if (k.retired_at === undefined) k.retired_at = now;
      r.keys = live(r, now);
      r.keys.push(newKey(alg));
      await tx.put(RING_KEY, jsonBytes(r));
      return r;
    });
    this.cache = { ring, at: Date.now() };
    return { kid: activeOf(ring)!.kid, retired: ring.keys.filter((k) => k.retired_at !== undefined).map((k) => k.kid) };
  }
}
