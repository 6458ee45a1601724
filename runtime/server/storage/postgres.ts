// PostgreSQL storage for several runtime replicas on one database. Values are barrier ciphertext in
// a bytea column. Transactions lock every key they touch with a transaction-scoped advisory lock
// (which also covers keys that do not exist yet, unlike SELECT … FOR UPDATE), so read-modify-write
// sequences (KV check-and-set, token use counts, mount tables) are serialized across replicas.
// Work that must have a single writer cluster-wide runs under a session-level leader lock.
import pg from "pg";
import { childrenOf, StorageCorruptionError, type Storage, type StorageWriter } from "./types.js";
import { prefixUpperBound } from "./prefix-range.js";

const MIGRATIONS: string[] = [
  `CREATE TABLE IF NOT EXISTS bk_kv (key TEXT COLLATE "C" PRIMARY KEY, value BYTEA NOT NULL)`,
];
/** Advisory lock id guarding migrations (arbitrary constant, "bk" + 1). */
const MIGRATION_LOCK = 0x626b0001;
const RETRYABLE = new Set(["40001", "40P01"]); // serialization failure, deadlock detected

/** Keys in the index range of `prefix` (a superset; childrenOf filters exactly). */
async function keysFrom(q: pg.Pool | pg.PoolClient, prefix: string): Promise<string[]> {
  const upper = prefixUpperBound(prefix);
  const { rows } =
    upper === undefined
      ? await q.query<{ key: string }>("SELECT key FROM bk_kv WHERE key >= $1 ORDER BY key", [prefix])
      : await q.query<{ key: string }>("SELECT key FROM bk_kv WHERE key >= $1 AND key < $2 ORDER BY key", [
          prefix,
          upper,
        ]);
  return rows.map((r) => r.key);
}

export interface PostgresOptions {
  max?: number;
  statementTimeoutMs?: number;
}

export class PostgresStorage implements Storage {
  private constructor(private readonly pool: pg.Pool) {}

  static async open(connectionString: string, o: PostgresOptions = {}): Promise<PostgresStorage> {
    const pool = new pg.Pool({ connectionString, max: o.max ?? 10, statement_timeout: o.statementTimeoutMs ?? 30_000 });
    pool.on("error", () => {
      /* idle client lost: the pool replaces it; queries report their own errors */
    });
    const s = new PostgresStorage(pool);
    try {
      await s.migrate();
    } catch (e) {
      await pool.end();
      throw e;
    }
    return s;
  }

  private async migrate() {
    const c = await this.pool.connect();
    try {
      await c.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
      await c.query(
        "CREATE TABLE IF NOT EXISTS bk_schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
      );
      const { rows } = await c.query<{ v: number | null }>("SELECT MAX(version) AS v FROM bk_schema_migrations");
      const current = rows[0].v ?? 0;
      if (current > MIGRATIONS.length)
        throw new Error(`storage schema version ${current} is newer than this build supports (${MIGRATIONS.length})`);
      for (let v = current + 1; v <= MIGRATIONS.length; v++) {
        await c.query("BEGIN");
        await c.query(MIGRATIONS[v - 1]);
        await c.query("INSERT INTO bk_schema_migrations (version) VALUES ($1)", [v]);
        await c.query("COMMIT");
      }
    } finally {
      await c.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => undefined);
      c.release();
    }
  }

  async schemaVersion(): Promise<number> {
    return (await this.pool.query<{ v: number }>("SELECT MAX(version) AS v FROM bk_schema_migrations")).rows[0].v;
  }

  async get(key: string): Promise<Buffer | undefined> {
    const { rows } = await this.pool.query<{ value: Buffer }>("SELECT value FROM bk_kv WHERE key = $1", [key]);
    return rows[0]?.value;
  }

  async list(prefix: string): Promise<string[]> {
    return childrenOf(prefix, await keysFrom(this.pool, prefix));
  }

  put(key: string, value: Buffer) {
    return this.transaction((tx) => tx.put(key, value));
  }
  delete(key: string) {
    return this.transaction((tx) => tx.delete(key));
  }

  async transaction<T>(fn: (tx: StorageWriter) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const c = await this.pool.connect();
      const locked = new Set<string>();
      const lock = async (k: string) => {
        if (locked.has(k)) return;
        await c.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [k]);
        locked.add(k);
      };
      const tx: StorageWriter = {
        get: async (k) => {
          await lock(k);
          return (await c.query<{ value: Buffer }>("SELECT value FROM bk_kv WHERE key = $1", [k])).rows[0]?.value;
        },
        list: async (p) => childrenOf(p, await keysFrom(c, p)),
        put: async (k, v) => {
          await lock(k);
          await c.query(
            "INSERT INTO bk_kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [k, v],
          );
        },
        delete: async (k) => {
          await lock(k);
          await c.query("DELETE FROM bk_kv WHERE key = $1", [k]);
        },
      };
      try {
        await c.query("BEGIN");
        const result = await fn(tx);
        await c.query("COMMIT");
        c.release();
        return result;
      } catch (e) {
        await c.query("ROLLBACK").catch(() => undefined);
        c.release();
        if (RETRYABLE.has((e as { code?: string }).code ?? "") && attempt < 5) continue;
        throw e;
      }
    }
  }

  /**
   * Runs fn only if this process holds the cluster-wide leader lock `name` (session advisory lock on
   * a dedicated connection); returns undefined without running it when another replica holds it.
   */
  async withLeaderLock<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
    const c = await this.pool.connect();
    try {
      const { rows } = await c.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtextextended($1, 1)) AS ok", [
        name,
      ]);
      if (!rows[0].ok) return undefined;
      try {
        return await fn();
      } finally {
        await c.query("SELECT pg_advisory_unlock(hashtextextended($1, 1))", [name]);
      }
    } finally {
      c.release();
    }
  }

  async close() {
    await this.pool.end();
  }
}

export { StorageCorruptionError };
