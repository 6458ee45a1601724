// Embedded storage on SQLite (node:sqlite): one table of key → ciphertext, WAL journal with
// synchronous=FULL so a write is on disk when its transaction returns (a kill -9 or power loss
// afterwards loses nothing acknowledged). Writes go through one connection, serialized in-process
// and with BEGIN IMMEDIATE across processes; reads use a second connection that sees the last
// committed state, so a long transaction never exposes half-done work to other requests.
//
// Read cache: a request's reads (token, metadata, value) are served from memory when nothing was
// committed since they were read. beginRequest() checks whether any connection — our writer,
// another worker, another process — has committed since the last check, and if so empties the
// cache. Only reads in the same event-loop turn as such a check use the cache, so nothing that runs
// outside a request (timers, startup) reads a stale value, and a request sees every commit that
// finished before it arrived. The check reads the WAL-index header that every commit rewrites
// (the first 48 bytes of the -shm file, https://sqlite.org/walformat.html: one pread, no lock,
// about a third of a `PRAGMA data_version` query, which is the fallback when that header is not
// the documented version 3007000).
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { chmodSync, closeSync, mkdirSync, openSync, readSync } from "node:fs";
import path from "node:path";
import { childrenOf, StorageCorruptionError, type Storage, type StorageWriter } from "./types.js";
import { prefixUpperBound } from "./prefix-range.js";

/** Entries in the read cache before it is emptied (bounds memory, not correctness). */
const CACHE_LIMIT = 10_000;
/** WAL-index header: its first copy is 48 bytes and starts with iVersion (native byte order). */
const WAL_INDEX_HEADER = 48;
const WAL_INDEX_VERSION = 3007000;

/** Versioned schema: index = version - 1. Never edit a shipped step; append a new one. */
const MIGRATIONS: string[] = [
  `CREATE TABLE IF NOT EXISTS bk_kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID`,
];

/** How long a transaction waits for the cross-process write lock before it fails. */
const WRITE_LOCK_WAIT_MS = 10_000;

function isBusy(e: unknown): boolean {
  const x = e as { errcode?: number; message?: string };
  return (x?.errcode !== undefined && (x.errcode & 0xff) === 5) || /database is locked/i.test(x?.message ?? "");
}

/**
 * Switches a connection to WAL, retrying SQLITE_BUSY until `waitMs` has passed. The busy timeout alone is not
 * enough: the switch upgrades a shared lock to an exclusive one, and when several processes open the same new
 * file at once SQLite sees that waiting could deadlock and returns SQLITE_BUSY at once without calling the busy
 * handler (sqlite3_busy_handler's documented exception). Only at open time, so a short synchronous sleep is fine.
 */
function enableWal(db: DatabaseSync, waitMs: number): void {
  const deadline = Date.now() + waitMs;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    try {
      db.exec("PRAGMA journal_mode = WAL;");
      return;
    } catch (e) {
      if (!isBusy(e) || Date.now() >= deadline) throw e;
      Atomics.wait(sleeper, 0, 0, delay + Math.random() * delay); // jitter: the racing processes spread out
    }
  }
}

function wrapSqliteError(e: unknown, key?: string): never {
  const msg = (e as Error)?.message ?? String(e);
  if (/malformed|not a database|corrupt/i.test(msg))
    throw new StorageCorruptionError(`SQLite storage is corrupt: ${msg}`, key);
  throw e;
}

/**
 * The database and its -wal/-shm files are owner-only (0600): their storage keys reveal KV paths and
 * token accessors even though the values are ciphertext. The file is created 0600 before SQLite
 * opens it (SQLite gives -wal and -shm the database file's mode); files of an older runtime that
 * were created 0644 are tightened.
 */
function restrictFileModes(file: string): void {
  if (file === ":memory:" || file === "") return;
  closeSync(openSync(file, "a", 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      chmodSync(f, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
  }
}

export class SqliteStorage implements Storage {
  private readonly w: DatabaseSync;
  private readonly r: DatabaseSync;
  private readonly st: Record<
    "get" | "list" | "listFrom" | "put" | "del" | "wget" | "wlist" | "wlistFrom",
    StatementSync
  >;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly dataVersion: StatementSync;
  private lastDataVersion = -1;
  /** The -shm file, when its header can be read as the change marker; otherwise data_version is asked. */
  private shmFd: number | undefined;
  private readonly shmHeader = Buffer.alloc(WAL_INDEX_HEADER);
  private readonly lastShmHeader = Buffer.alloc(WAL_INDEX_HEADER);
  private readonly cache = new Map<string, Buffer | null>();
  /** True from a beginRequest() until the end of that event-loop turn. */
  private cacheValid = false;
  private readonly endTurn = () => {
    this.cacheValid = false;
  };

  constructor(
    readonly file: string,
    opts: { changeMarker?: "wal-index" | "data_version" } = {},
  ) {
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
    restrictFileModes(file);
    try {
      this.w = new DatabaseSync(file);
      // busy_timeout first: another process may be creating the file or switching it to WAL right now.
      this.w.exec("PRAGMA busy_timeout = 10000;");
      enableWal(this.w, WRITE_LOCK_WAIT_MS);
      this.w.exec("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;");
      this.migrate();
      // From here the write lock is awaited without blocking the event loop (beginWrite), instead
      // of SQLite's busy handler, which sleeps the whole process (1, 2, 5, 10 … 100 ms).
      this.w.exec("PRAGMA busy_timeout = 0;");
      this.r = new DatabaseSync(file);
      this.r.exec("PRAGMA busy_timeout = 10000;");
    } catch (e) {
      wrapSqliteError(e);
    }
    this.st = {
      get: this.r.prepare("SELECT value FROM bk_kv WHERE key = ?"),
      list: this.r.prepare("SELECT key FROM bk_kv WHERE key >= ? AND key < ? ORDER BY key"),
      listFrom: this.r.prepare("SELECT key FROM bk_kv WHERE key >= ? ORDER BY key"),
      wget: this.w.prepare("SELECT value FROM bk_kv WHERE key = ?"),
      wlist: this.w.prepare("SELECT key FROM bk_kv WHERE key >= ? AND key < ? ORDER BY key"),
      wlistFrom: this.w.prepare("SELECT key FROM bk_kv WHERE key >= ? ORDER BY key"),
      put: this.w.prepare(
        "INSERT INTO bk_kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
      ),
      del: this.w.prepare("DELETE FROM bk_kv WHERE key = ?"),
    };
    this.dataVersion = this.r.prepare("PRAGMA data_version");
    if (opts.changeMarker !== "data_version") this.shmFd = this.openWalIndex();
  }

  /** The -shm file if the database is in WAL mode and its header has the documented layout. */
  private openWalIndex(): number | undefined {
    let fd: number | undefined;
    try {
      this.r.prepare("SELECT 1 FROM bk_kv LIMIT 1").get(); // a read transaction maps the WAL index
      if ((this.r.prepare("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode !== "wal")
        return undefined;
      fd = openSync(`${this.file}-shm`, "r");
      if (
        readSync(fd, this.shmHeader, 0, WAL_INDEX_HEADER, 0) === WAL_INDEX_HEADER &&
        this.shmHeader.readUInt32LE(0) === WAL_INDEX_VERSION
      )
        return fd;
    } catch {
      /* fall back to data_version */
    }
    if (fd !== undefined) closeSync(fd);
    return undefined;
  }

  /** True when some connection may have committed since the last call. */
  private changedSinceLastCheck(): boolean {
    if (this.shmFd !== undefined) {
      if (
        readSync(this.shmFd, this.shmHeader, 0, WAL_INDEX_HEADER, 0) === WAL_INDEX_HEADER &&
        this.shmHeader.readUInt32LE(0) === WAL_INDEX_VERSION
      ) {
        if (this.shmHeader.equals(this.lastShmHeader)) return false;
        this.shmHeader.copy(this.lastShmHeader);
        return true;
      }
      closeSync(this.shmFd); // not the layout we know any more: stop trusting it
      this.shmFd = undefined;
    }
    const v = (this.dataVersion.get() as { data_version: number }).data_version;
    if (v === this.lastDataVersion) return false;
    this.lastDataVersion = v;
    return true;
  }

  beginRequest(): void {
    let changed: boolean;
    try {
      changed = this.changedSinceLastCheck();
    } catch {
      changed = true;
    }
    if (changed) this.cache.clear();
    if (!this.cacheValid) {
      this.cacheValid = true;
      setImmediate(this.endTurn);
    }
  }

  private migrate() {
    this.w.exec("BEGIN IMMEDIATE");
    try {
      this.w.exec(
        "CREATE TABLE IF NOT EXISTS bk_schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
      );
      const row = this.w.prepare("SELECT MAX(version) AS v FROM bk_schema_migrations").get() as { v: number | null };
      const current = row.v ?? 0;
      if (current > MIGRATIONS.length)
        throw new Error(`storage schema version ${current} is newer than this build supports (${MIGRATIONS.length})`);
      for (let v = current + 1; v <= MIGRATIONS.length; v++) {
        this.w.exec(MIGRATIONS[v - 1]);
        this.w
          .prepare("INSERT INTO bk_schema_migrations (version, applied_at) VALUES (?, ?)")
          .run(v, new Date().toISOString());
      }
      this.w.exec("COMMIT");
    } catch (e) {
      this.w.exec("ROLLBACK");
      throw e;
    }
  }

  schemaVersion(): number {
    return (this.r.prepare("SELECT MAX(version) AS v FROM bk_schema_migrations").get() as { v: number }).v;
  }

  async get(key: string): Promise<Buffer | undefined> {
    if (this.cacheValid) {
      const hit = this.cache.get(key);
      if (hit !== undefined) return hit === null ? undefined : Buffer.from(hit);
    }
    let row: { value: Uint8Array } | undefined;
    try {
      row = this.st.get.get(key) as { value: Uint8Array } | undefined;
    } catch (e) {
      wrapSqliteError(e, key);
    }
    if (!row) {
      if (this.cacheValid) this.remember(key, null);
      return undefined;
    }
    // node:sqlite hands out a fresh array per row: keep it in the cache, give the caller a copy.
    const value = Buffer.from(row.value.buffer, row.value.byteOffset, row.value.byteLength);
    if (this.cacheValid) this.remember(key, value);
    return this.cacheValid ? Buffer.from(value) : value;
  }

  private remember(key: string, value: Buffer | null) {
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(key, value);
  }

  async list(prefix: string): Promise<string[]> {
    try {
      return childrenOf(prefix, this.keysFrom(this.st.list, this.st.listFrom, prefix));
    } catch (e) {
      wrapSqliteError(e);
    }
  }

  /** Keys in the index range of `prefix` (a superset; childrenOf filters exactly). */
  private keysFrom(bounded: StatementSync, open: StatementSync, prefix: string): string[] {
    const upper = prefixUpperBound(prefix);
    const rows = (upper === undefined ? open.all(prefix) : bounded.all(prefix, upper)) as Array<{ key: string }>;
    return rows.map((r) => r.key);
  }

  put(key: string, value: Buffer) {
    return this.transaction((tx) => tx.put(key, value));
  }
  delete(key: string) {
    return this.transaction((tx) => tx.delete(key));
  }

  transaction<T>(fn: (tx: StorageWriter) => Promise<T>): Promise<T> {
    const run = async () => {
      const tx: StorageWriter = {
        get: async (k) => {
          const row = this.st.wget.get(k) as { value: Uint8Array } | undefined;
          return row ? Buffer.from(row.value) : undefined;
        },
        list: async (p) => childrenOf(p, this.keysFrom(this.st.wlist, this.st.wlistFrom, p)),
        put: async (k, v) => {
          this.st.put.run(k, v);
        },
        delete: async (k) => {
          this.st.del.run(k);
        },
      };
      await this.beginWrite();
      try {
        const result = await fn(tx);
        this.w.exec("COMMIT");
        return result;
      } catch (e) {
        try {
          this.w.exec("ROLLBACK");
        } catch {
          /* already rolled back by SQLite */
        }
        throw e;
      } finally {
        // Our own writes: later reads in this turn must see them without waiting for a beginRequest().
        this.cache.clear();
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /**
   * BEGIN IMMEDIATE, waiting asynchronously while another process (a second worker of this runtime,
   * another replica on the file) holds the write lock: first a turn of the event loop, then sleeps
   * of 1 ms doubling to 8 ms, up to WRITE_LOCK_WAIT_MS in all.
   */
  private async beginWrite(): Promise<void> {
    const deadline = Date.now() + WRITE_LOCK_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        this.w.exec("BEGIN IMMEDIATE");
        return;
      } catch (e) {
        if (!isBusy(e) || Date.now() >= deadline) wrapSqliteError(e);
      }
      if (attempt === 0) await new Promise<void>((r) => setImmediate(r));
      else await new Promise<void>((r) => setTimeout(r, Math.min(8, 2 ** (attempt - 1)) * (0.5 + Math.random())));
    }
  }

  async close() {
    await this.queue;
    this.cache.clear();
    if (this.shmFd !== undefined) {
      closeSync(this.shmFd);
      this.shmFd = undefined;
    }
    if (this.w.isOpen) this.w.close();
    if (this.r.isOpen) this.r.close();
  }
}
