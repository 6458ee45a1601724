// In-memory Storage for unit tests of code above the storage layer. Transactions are serialized
// and staged, so a throwing transaction leaves nothing behind, like the real backends.
import { childrenOf, type Storage, type StorageWriter } from "./types.js";

export class MemoryStorage implements Storage {
  private data = new Map<string, Buffer>();
  private queue: Promise<unknown> = Promise.resolve();

  async get(key: string) {
    const v = this.data.get(key);
    return v ? Buffer.from(v) : undefined;
  }
  async list(prefix: string) {
    return childrenOf(prefix, this.data.keys());
  }
  async put(key: string, value: Buffer) {
    this.data.set(key, Buffer.from(value));
  }
  async delete(key: string) {
    this.data.delete(key);
  }

  transaction<T>(fn: (tx: StorageWriter) => Promise<T>): Promise<T> {
    const run = async () => {
      const staged = new Map<string, Buffer | null>();
      const tx: StorageWriter = {
        get: async (k) => (staged.has(k) ? (staged.get(k) ?? undefined) : this.get(k)),
        list: async (p) => {
          const keys = new Set(this.data.keys());
          for (const [k, v] of staged) {
            if (v === null) keys.delete(k);
            else keys.add(k);
          }
          return childrenOf(p, keys);
        },
        put: async (k, v) => {
          staged.set(k, Buffer.from(v));
        },
        delete: async (k) => {
          staged.set(k, null);
        },
      };
      const result = await fn(tx);
      for (const [k, v] of staged) {
        if (v === null) this.data.delete(k);
        else this.data.set(k, v);
      }
      return result;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  async close() {}
}
