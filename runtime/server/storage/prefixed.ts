// A view of a Storage under a key prefix: each mount gets one, so an engine can never read or
// write another mount's keys (it only ever sees keys relative to its own prefix).
import type { Storage, StorageWriter } from "./types.js";

function prefixWriter(inner: StorageWriter, prefix: string): StorageWriter {
  return {
    get: (k) => inner.get(prefix + k),
    list: (p) => inner.list(prefix + p),
    put: (k, v) => inner.put(prefix + k, v),
    delete: (k) => inner.delete(prefix + k),
  };
}

export class PrefixedStorage implements Storage {
  private readonly view: StorageWriter;
  constructor(
    private readonly inner: Storage,
    readonly prefix: string,
  ) {
    if (prefix !== "" && !prefix.endsWith("/")) throw new Error(`storage prefix must end in '/': ${prefix}`);
    this.view = prefixWriter(inner, prefix);
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
    return this.inner.transaction((tx) => fn(prefixWriter(tx, this.prefix)));
  }
  /** Closing a view never closes the shared storage underneath. */
  async close() {}
}
