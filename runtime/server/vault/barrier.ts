// The security barrier: every value that reaches physical storage is AES-256-GCM encrypted with the
// active key of a keyring, and the keyring itself is encrypted with the unseal key, which exists only
// in memory after unseal. The storage key is bound as associated data, so a ciphertext moved to
// another key (or bytes flipped on disk) fails authentication instead of decrypting to something.
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import { StorageCorruptionError, type Storage, type StorageWriter } from "../storage/types.js";
import { SealedError } from "./errors.js";

const MAGIC = 0x42; // 'B'
const VERSION = 1;
const HEADER = 2 + 4 + 12; // magic, version, term (u32), nonce
const TAG = 16;
export const KEYRING_KEY = "core/keyring";
/** The unseal key wrapped by an auto-unseal key (e.g. the SNP derived key): ciphertext, read before unseal. */
export const AUTO_UNSEAL_KEY = "core/auto-unseal";
/** Keys stored outside the barrier (needed before unseal, not secret). */
export const PLAINTEXT_KEYS = new Set(["core/seal-config", KEYRING_KEY, AUTO_UNSEAL_KEY]);

const AUTO_UNSEAL_AAD = "bk-auto-unseal-v1\0";

/** Wraps the 32-byte unseal key with a 32-byte auto-unseal key (AES-256-GCM, the seal type as associated data). */
export function wrapUnsealKey(wrappingKey: Uint8Array, sealType: string, unsealKey: Buffer): Buffer {
  return seal(Buffer.from(wrappingKey), 0, `${AUTO_UNSEAL_AAD}${sealType}`, unsealKey);
}

/** Undefined when the wrapping key is not the one that wrapped it (other chip, other measurement). */
export function unwrapUnsealKey(wrappingKey: Uint8Array, sealType: string, blob: Buffer): Buffer | undefined {
  if (wrappingKey.length !== 32) return undefined;
  return open(Buffer.from(wrappingKey), `${AUTO_UNSEAL_AAD}${sealType}`, blob);
}

interface Keyring {
  activeTerm: number;
  keys: Record<string, string>; /* term → b64 key */
  /** term → RFC 3339 time the term was installed (sys/key-status install_time); absent in older keyrings. */
  installed?: Record<string, string>;
}

/** Go's zero time, which the vault CLI parses: an install time this keyring never recorded. */
const UNKNOWN_TIME = "0001-01-01T00:00:00Z";

export class InvalidUnsealKeyError extends Error {
  override name = "InvalidUnsealKeyError";
  constructor() {
    super("unseal failed: the combined key does not open the keyring (wrong or mismatched key shares)");
  }
}

/**
 * The unseal key this barrier was opened with no longer opens the stored keyring: another replica on the same
 * storage rekeyed it (sys/rekey), or the stored keyring was replaced. Raised when this replica needs the keyring
 * again (a term it does not hold, a rotation) instead of serving "storage corruption".
 */
export class StaleUnsealKeyError extends Error {
  override name = "StaleUnsealKeyError";
  constructor() {
    super(
      "this replica's unseal key no longer opens the keyring (the storage was rekeyed through another replica, or its keyring replaced); restart this replica: it unseals with the current key (auto-unseal, peers or the new shares)",
    );
  }
}

function aad(key: string): Buffer {
  return Buffer.from(`bk-barrier-v1\0${key}`, "utf8");
}

export function seal(aesKey: Buffer, term: number, storageKey: string, plaintext: Buffer): Buffer {
  const nonce = randomBytes(12);
  const header = Buffer.alloc(HEADER);
  header[0] = MAGIC;
  header[1] = VERSION;
  header.writeUInt32BE(term, 2);
  nonce.copy(header, 6);
  const c = createCipheriv("aes-256-gcm", aesKey, nonce);
  c.setAAD(Buffer.concat([header.subarray(0, 6), aad(storageKey)]));
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([header, ct, c.getAuthTag()]);
}

function termOf(blob: Buffer): number | undefined {
  if (blob.length < HEADER + TAG || blob[0] !== MAGIC || blob[1] !== VERSION) return undefined;
  return blob.readUInt32BE(2);
}

/** Returns undefined when authentication fails. */
export function open(aesKey: Buffer, storageKey: string, blob: Buffer): Buffer | undefined {
  if (termOf(blob) === undefined) return undefined;
  try {
    const d = createDecipheriv("aes-256-gcm", aesKey, blob.subarray(6, HEADER));
    d.setAAD(Buffer.concat([blob.subarray(0, 6), aad(storageKey)]));
    d.setAuthTag(blob.subarray(blob.length - TAG));
    return Buffer.concat([d.update(blob.subarray(HEADER, blob.length - TAG)), d.final()]);
  } catch {
    return undefined;
  }
}

const UNSEAL_KEY_CHECK_LABEL = "buckypaper-unseal-key-check-v1";

/** Entries kept in the decrypted-value cache (cleared on seal). */
const CACHE_LIMIT = 10_000;

export class Barrier implements Storage {
  private keys: Map<number, Buffer> | undefined;
  private activeTerm = 0;
  private installed: Record<string, string> = {};
  /** Kept while unsealed to rotate the keyring and to pick up terms added by another replica. */
  private unsealKey: Buffer | undefined;
  /**
   * Plaintexts of recently read values, keyed by storage key and valid only while the stored
   * ciphertext is byte-identical: every read still goes to storage (replicas stay consistent), a
   * hit only skips the AES-GCM work. Holds what an unsealed runtime holds in memory anyway.
   */
  private cache = new Map<string, { ct: Buffer; pt: Buffer }>();

  constructor(readonly physical: Storage) {}

  get sealed(): boolean {
    return this.keys === undefined;
  }

  async initialized(): Promise<boolean> {
    return (await this.physical.get(KEYRING_KEY)) !== undefined;
  }

  /** Creates a fresh keyring protected by unsealKey and leaves the barrier unsealed. */
  async initialize(unsealKey: Buffer): Promise<void> {
    const ring: Keyring = {
      activeTerm: 1,
      keys: { "1": randomBytes(32).toString("base64") },
      installed: { "1": new Date().toISOString() },
    };
    await this.physical.transaction(async (tx) => {
      if (await tx.get(KEYRING_KEY)) throw new Error("barrier is already initialized");
      await tx.put(KEYRING_KEY, seal(unsealKey, 0, KEYRING_KEY, Buffer.from(JSON.stringify(ring))));
    });
    this.load(ring, unsealKey);
  }

  async unseal(unsealKey: Buffer): Promise<void> {
    const blob = await this.physical.get(KEYRING_KEY);
    if (!blob) throw new Error("barrier is not initialized");
    const plain = unsealKey.length === 32 ? open(unsealKey, KEYRING_KEY, blob) : undefined;
    if (!plain) throw new InvalidUnsealKeyError();
    this.load(JSON.parse(plain.toString("utf8")) as Keyring, unsealKey);
  }

  /** Does this key open the keyring (sys/generate-root's check of combined shares)? Changes nothing. */
  async verifyUnsealKey(unsealKey: Buffer): Promise<boolean> {
    const blob = await this.physical.get(KEYRING_KEY);
    return blob !== undefined && unsealKey.length === 32 && open(unsealKey, KEYRING_KEY, blob) !== undefined;
  }

  /** Adds a new keyring term (atomically, so concurrent rotations on replicas both count); new writes use it. */
  async rotate(): Promise<number> {
    this.requireUnsealed();
    const unsealKey = this.unsealKey!;
    const ring = await this.physical.transaction(async (tx) => {
      const blob = await tx.get(KEYRING_KEY);
      const plain = blob && open(unsealKey, KEYRING_KEY, blob);
      if (!plain) throw new StaleUnsealKeyError();
      const r = JSON.parse(plain.toString("utf8")) as Keyring;
      r.activeTerm += 1;
      r.keys[String(r.activeTerm)] = randomBytes(32).toString("base64");
      r.installed = { ...r.installed, [String(r.activeTerm)]: new Date().toISOString() };
      await tx.put(KEYRING_KEY, seal(unsealKey, 0, KEYRING_KEY, Buffer.from(JSON.stringify(r))));
      return r;
    });
    this.load(ring, unsealKey);
    return ring.activeTerm;
  }

  /** Re-reads the keyring (another replica may have rotated it). */
  private async refreshKeyring(): Promise<void> {
    const unsealKey = this.unsealKey;
    const blob = unsealKey && (await this.physical.get(KEYRING_KEY));
    if (!unsealKey || !blob) return;
    const plain = open(unsealKey, KEYRING_KEY, blob);
    // Sealed or rekeyed locally meanwhile (the key changed under us): nothing to say about the old one.
    if (this.unsealKey !== unsealKey) return;
    if (!plain) throw new StaleUnsealKeyError();
    this.load(JSON.parse(plain.toString("utf8")) as Keyring, unsealKey);
  }

  /**
   * sys/rekey: re-encrypts the keyring (its terms unchanged) from oldKey to newKey in ONE storage transaction
   * together with `more` (the caller's other writes: `raw` for entries outside the barrier, `sealed` for entries
   * inside it), so a failure anywhere leaves the old key in force and nothing half-written. oldKey must open the
   * stored keyring (InvalidUnsealKeyError otherwise) — the shares are the authority, not the key this replica
   * happens to hold. The transaction may run more than once (PostgreSQL retries): `more` must only write.
   */
  async rekey(
    oldKey: Buffer,
    newKey: Buffer,
    more: (raw: StorageWriter, sealed: StorageWriter) => Promise<void>,
  ): Promise<void> {
    this.requireUnsealed();
    if (newKey.length !== 32) throw new Error("rekey: the new unseal key must be 32 bytes");
    const ring = await this.physical.transaction(async (tx) => {
      const blob = await tx.get(KEYRING_KEY);
      const plain = blob && oldKey.length === 32 ? open(oldKey, KEYRING_KEY, blob) : undefined;
      if (!plain) throw new InvalidUnsealKeyError();
      await tx.put(KEYRING_KEY, seal(newKey, 0, KEYRING_KEY, plain));
      await more(tx, this.wrap(tx));
      const r = JSON.parse(plain.toString("utf8")) as Keyring;
      plain.fill(0);
      return r;
    });
    this.load(ring, newKey);
  }

  /**
   * Takes the unseal key another worker rekeyed to (it has just committed the keyring under it). A key that does
   * not open the stored keyring is refused and this barrier keeps its own.
   */
  async adoptUnsealKey(key: Buffer): Promise<void> {
    this.requireUnsealed();
    const blob = await this.physical.get(KEYRING_KEY);
    const plain = blob && key.length === 32 ? open(key, KEYRING_KEY, blob) : undefined;
    if (!plain) throw new InvalidUnsealKeyError();
    this.load(JSON.parse(plain.toString("utf8")) as Keyring, key);
  }

  /**
   * A check value of the unseal key in force (HMAC-SHA256 under it of a fixed label, 16 bytes hex), or undefined
   * while sealed: it changes with every rekey and names which key a set of shares belongs to, without saying
   * anything about the key. Computed from the key this barrier opened the keyring with — never read from storage,
   * which is the host's — so a host cannot make it name another key.
   */
  unsealKeyCheck(): string | undefined {
    if (!this.keys || !this.unsealKey) return undefined;
    return createHmac("sha256", this.unsealKey).update(UNSEAL_KEY_CHECK_LABEL).digest().subarray(0, 16).toString("hex");
  }

  /** Keyring term and number of terms, for sys/key-status. */
  keyStatus(): { term: number; terms: number; install_time: string } {
    const terms = this.requireUnsealed().size;
    return { term: this.activeTerm, terms, install_time: this.installed[String(this.activeTerm)] ?? UNKNOWN_TIME };
  }

  seal(): void {
    for (const e of this.cache.values()) e.pt.fill(0);
    this.cache.clear();
    for (const k of this.keys?.values() ?? []) k.fill(0);
    this.keys = undefined;
    this.activeTerm = 0;
    this.unsealKey?.fill(0);
    this.unsealKey = undefined;
  }

  private load(ring: Keyring, unsealKey: Buffer) {
    this.keys = new Map(Object.entries(ring.keys).map(([t, k]) => [Number(t), Buffer.from(k, "base64")]));
    this.activeTerm = ring.activeTerm;
    this.installed = ring.installed ?? {};
    if (this.unsealKey !== unsealKey) {
      this.unsealKey?.fill(0);
      this.unsealKey = Buffer.from(unsealKey);
    }
  }

  private requireUnsealed(): Map<number, Buffer> {
    if (!this.keys) throw new SealedError();
    return this.keys;
  }

  encrypt(key: string, value: Buffer): Buffer {
    const keys = this.requireUnsealed();
    return seal(keys.get(this.activeTerm)!, this.activeTerm, key, value);
  }

  decrypt(key: string, blob: Buffer): Buffer {
    const keys = this.requireUnsealed();
    const hit = this.cache.get(key);
    if (hit && hit.ct.equals(blob)) return Buffer.from(hit.pt);
    const term = termOf(blob);
    const aesKey = term === undefined ? undefined : keys.get(term);
    const plain = aesKey && open(aesKey, key, blob);
    if (!plain)
      throw new StorageCorruptionError(`stored value for '${key}' failed authentication (corrupt or tampered)`, key);
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(key, { ct: Buffer.from(blob), pt: Buffer.from(plain) });
    return plain;
  }

  private wrap(inner: StorageWriter): StorageWriter {
    return {
      get: async (k) => {
        const b = await inner.get(k);
        if (!b) return undefined;
        const term = termOf(b);
        if (term !== undefined && !this.requireUnsealed().has(term)) await this.refreshKeyring();
        return this.decrypt(k, b);
      },
      list: async (p) => {
        this.requireUnsealed();
        return inner.list(p);
      },
      put: async (k, v) => inner.put(k, this.encrypt(k, v)),
      delete: async (k) => {
        this.requireUnsealed();
        return inner.delete(k);
      },
    };
  }

  // Direct (non-transactional) access goes through one long-lived wrapper, not one per call.
  private direct: StorageWriter | undefined;
  private get view(): StorageWriter {
    return (this.direct ??= this.wrap(this.physical));
  }
  get(key: string) {
    return this.view.get(key);
  }
  list(prefix: string) {
    return this.view.list(prefix);
  }
  put(key: string, value: Buffer) {
    return this.view.put(key, value);
  }
  delete(key: string) {
    return this.view.delete(key);
  }
  transaction<T>(fn: (tx: StorageWriter) => Promise<T>): Promise<T> {
    this.requireUnsealed();
    return this.physical.transaction((tx) => fn(this.wrap(tx)));
  }
  close() {
    this.seal();
    return this.physical.close();
  }
}
