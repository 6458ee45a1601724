// Nitride's token-signing key ring (ES384 by default, EdDSA/Ed25519 or ML-DSA-65 when nitride/config
// asks for it). The first key is generated on first use inside a storage transaction, so replicas on one
// database agree on it; rotation (also when the configured algorithm changes) keeps retired keys
// published in the JWKS until every token they signed has expired.
// A workload may ask for another algorithm than the config's (its token_algorithm): that algorithm gets
// an "extra" active key of its own, created on first use, retired with the primary on every rotation.
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import type { JWK } from "jose";
import type { Storage } from "../storage/types.js";
import { jsonBytes, readJson } from "../vault/fields.js";
import { akpPrivateKey, generateAkpKeyPair } from "../../attestation/ml-dsa-jose.js";
import { MAX_TOKEN_TTL_S, type TokenAlgorithm } from "./config.js";

/** `alg` is absent in rings written before EdDSA existed: those keys are ES384. */
interface StoredKey {
  kid: string;
  alg?: TokenAlgorithm;
  created: number;
  retired_at?: number;
  /** An active key for a workload-chosen algorithm, beside the primary (config) key. */
  extra?: true;
  /** ML-DSA-65: the AKP JWK with "priv" (the 32-byte seed), RFC 9964. */
  private_jwk: JWK | Record<string, unknown>;
  public_jwk: JWK | Record<string, unknown>;
}

/** The active key of one algorithm, ready to sign: a KeyObject (ES384/EdDSA) or an ML-DSA-65 secret key. */
export type TokenSigningKey =
  { kid: string; alg: "ES384" | "EdDSA"; key: KeyObject } | { kid: string; alg: "ML-DSA-65"; key: Uint8Array };
interface KeyRing {
  keys: StoredKey[];
}

const RING_KEY = "keys/signing";
/** Replicas re-read the ring this often, so a rotation elsewhere is picked up quickly. */
const CACHE_MS = 5_000;
/** Grace after a retired key's last possible token expired (clock skew). */
const RETIRE_GRACE_S = 300;

const algOf = (k: StoredKey): TokenAlgorithm => k.alg ?? "ES384";

function newKey(alg: TokenAlgorithm, extra = false): StoredKey {
  const created = Math.floor(Date.now() / 1000);
  if (alg === "ML-DSA-65") {
    const kid = randomBytes(12).toString("base64url");
    const { privateJwk, publicJwk } = generateAkpKeyPair();
    return {
      kid,
      alg,
      created,
      ...(extra ? { extra: true as const } : {}),
      private_jwk: { ...privateJwk },
      public_jwk: { ...publicJwk, kid, use: "sig" },
    };
  }
  const { privateKey, publicKey } =
    alg === "EdDSA" ? generateKeyPairSync("ed25519") : generateKeyPairSync("ec", { namedCurve: "P-384" });
  const kid = randomBytes(12).toString("base64url");
  return {
    kid,
    alg,
    created,
    ...(extra ? { extra: true as const } : {}),
    private_jwk: privateKey.export({ format: "jwk" }) as JWK,
    public_jwk: { ...(publicKey.export({ format: "jwk" }) as JWK), kid, alg, use: "sig" },
  };
}

/** The primary active key (the config's algorithm); extra keys serve workloads that chose another. */
const activeOf = (ring: KeyRing) => ring.keys.find((k) => k.retired_at === undefined && !k.extra);
const activeExtraOf = (ring: KeyRing, alg: TokenAlgorithm) =>
  ring.keys.find((k) => k.retired_at === undefined && k.extra && algOf(k) === alg);

function live(ring: KeyRing, now: number): StoredKey[] {
  return ring.keys.filter((k) => k.retired_at === undefined || k.retired_at + MAX_TOKEN_TTL_S + RETIRE_GRACE_S > now);
}

export class SigningKeys {
  private cache: { ring: KeyRing; at: number } | undefined;
  private keyObjects = new Map<string, KeyObject | Uint8Array>();

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
   * `alg` only chooses the algorithm of the very first key. With `workloadAlg` (a workload's own
   * token_algorithm) the key is of exactly that algorithm: the primary if it is one, else an extra key.
   */
  async current(
    storage: Storage,
    alg: TokenAlgorithm = "ES384",
    workloadAlg?: TokenAlgorithm,
  ): Promise<TokenSigningKey> {
    let ring = await this.ring(storage, alg);
    let k = activeOf(ring)!;
    if (workloadAlg !== undefined && algOf(k) !== workloadAlg) {
      let extra = activeExtraOf(ring, workloadAlg);
      if (!extra) {
        ring = await storage.transaction(async (tx) => {
          const r = (await readJson<KeyRing>(tx, RING_KEY)) ?? { keys: [] };
          if (!activeExtraOf(r, workloadAlg)) {
            r.keys.push(newKey(workloadAlg, true));
            await tx.put(RING_KEY, jsonBytes(r));
          }
          return r;
        });
        this.cache = { ring, at: Date.now() };
        extra = activeExtraOf(ring, workloadAlg)!;
      }
      k = extra;
    }
    return this.signingKey(k);
  }

  private signingKey(k: StoredKey): TokenSigningKey {
    let key = this.keyObjects.get(k.kid);
    const alg = algOf(k);
    if (alg === "ML-DSA-65") {
      if (!key) this.keyObjects.set(k.kid, (key = akpPrivateKey(k.private_jwk, "private_jwk").secretKey));
      return { kid: k.kid, alg, key: key as Uint8Array };
    }
    if (!key)
      this.keyObjects.set(
        k.kid,
        (key = createPrivateKey({ key: k.private_jwk as import("node:crypto").JsonWebKey, format: "jwk" })),
      );
    return { kid: k.kid, alg, key: key as KeyObject };
  }

  /** Algorithm of the active key (undefined before the first key exists). */
  async activeAlgorithm(storage: Storage): Promise<TokenAlgorithm | undefined> {
    const ring = await readJson<KeyRing>(storage, RING_KEY);
    const k = ring && activeOf(ring);
    return k ? algOf(k) : undefined;
  }

  /**
   * Public keys of every key whose tokens may still be valid. ML-DSA-65 keys (kty "AKP", RFC 9964) only
   * with `pq`: go-jose (Vault 1.21, OpenBao, hashicorp/cap) refuses a whole JWKS that contains a key type
   * it does not know, which would break every classical token's verification (test/compat/vault-jwt).
   */
  async jwks(storage: Storage, alg: TokenAlgorithm = "ES384", opts: { pq: boolean }): Promise<{ keys: JWK[] }> {
    const ring = await this.ring(storage, alg);
    const keys = live(ring, Math.floor(Date.now() / 1000)).filter((k) => opts.pq || algOf(k) !== "ML-DSA-65");
    return { keys: keys.map((k) => k.public_jwk as JWK) };
  }

  /** Algorithms of the keys in the JWKS (what OIDC discovery advertises). */
  async algorithms(storage: Storage, alg: TokenAlgorithm = "ES384"): Promise<TokenAlgorithm[]> {
    const ring = await this.ring(storage, alg);
    return [...new Set(live(ring, Math.floor(Date.now() / 1000)).map(algOf))];
  }

  /**
   * Retires the current key (and any extra keys) and starts a new one (of `alg`); drops keys nothing can
   * still depend on. Extra keys come back on their workloads' next attestation.
   */
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
