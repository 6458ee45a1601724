// The physical storage interface under the runtime (as Vault's physical backend): opaque values by
// slash-separated key. Everything above it goes through the barrier, so backends only ever see
// ciphertext. Implementations: memory (tests), SQLite (node:sqlite, default), PostgreSQL.

export interface StorageEntry {
  key: string;
  value: Buffer;
}

export interface StorageReader {
  get(key: string): Promise<Buffer | undefined>;
  /** Immediate children of a prefix ending in "/": leaf keys and "sub/" folders, sorted. */
  list(prefix: string): Promise<string[]>;
}

export interface StorageWriter extends StorageReader {
  put(key: string, value: Buffer): Promise<void>;
  delete(key: string): Promise<void>;
}

export interface Storage extends StorageWriter {
  /**
   * Runs fn atomically: all of its writes commit together or none do; reads inside see a consistent
   * view and the keys it touches are locked against concurrent transactions (row locks on PostgreSQL,
   * BEGIN IMMEDIATE on SQLite). A durable write is acknowledged only after commit.
   */
  transaction<T>(fn: (tx: StorageWriter) => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /**
   * Optional: called when a request starts. Storage that caches reads revalidates the cache here
   * against what other connections and processes have committed, so a request never reads a value
   * older than the state at its arrival.
   */
  beginRequest?(): void;
}

export class StorageCorruptionError extends Error {
  override name = "StorageCorruptionError";
  constructor(
    message: string,
    readonly key?: string,
  ) {
    super(message);
  }
}

/** Lists immediate children of `prefix` from a set of full keys (shared by backends). */
export function childrenOf(prefix: string, keys: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const k of keys) {
    if (!k.startsWith(prefix)) continue;
    const rest = k.slice(prefix.length);
    const slash = rest.indexOf("/");
    out.add(slash === -1 ? rest : rest.slice(0, slash + 1));
  }
  out.delete("");
  return [...out].sort();
}
