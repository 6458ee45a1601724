// SQLite storage (runtime/storage/sqlite.ts). The write lock of another process is awaited without
// blocking the event loop; several processes may create the file at once. The read cache: reads are served from memory only within the
// event-loop turn of a beginRequest(), and a commit by any other connection (another worker or
// process on the same file) or by this one empties it, so a request never reads a value older than
// its own arrival. Two SqliteStorage instances on one file stand for two processes: each has its
// own connections, which is all SQLite's data_version distinguishes.
import { describe, it, expect, afterEach } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import { spawn } from "node:child_process";
import { pathToFileURL } from "node:url";
import { SqliteStorage } from "../../../../runtime/server/storage/sqlite.js";
import { repoRoot } from "../../../support/shared.js";

const b = (s: string) => Buffer.from(s);
const text = (v: Buffer | undefined) => v?.toString("utf8");

describe.each(["wal-index", "data_version"] as const)(
  "SqliteStorage read cache (change marker: %s)",
  (changeMarker) => {
    const dirs: string[] = [];
    const open: SqliteStorage[] = [];
    function pair(): [SqliteStorage, SqliteStorage] {
      const dir = mkdtempSync(path.join(tmpdir(), "bk-sqlcache-"));
      dirs.push(dir);
      const a = new SqliteStorage(path.join(dir, "rt.db"), { changeMarker }),
        other = new SqliteStorage(path.join(dir, "rt.db"), { changeMarker });
      open.push(a, other);
      return [a, other];
    }
    afterEach(async () => {
      for (const s of open.splice(0)) await s.close();
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    });

    it("uses the marker asked for (the WAL-index header by default)", () => {
      const [a] = pair();
      expect((a as unknown as { shmFd?: number }).shmFd !== undefined).toBe(changeMarker === "wal-index");
      const dflt = new SqliteStorage(path.join(dirs[0], "rt.db"));
      open.push(dflt);
      expect((dflt as unknown as { shmFd?: number }).shmFd).toBeDefined();
    });

    it("serves repeated reads of one turn from memory (a write by another process in the same turn is not seen until the next request)", async () => {
      const [a, other] = pair();
      await a.put("k", b("v1"));
      a.beginRequest();
      expect(text(await a.get("k"))).toBe("v1");
      await other.put("k", b("v2"));
      // Same turn, no new request: the cached value (a read concurrent with that write may see either).
      expect(text(await a.get("k"))).toBe("v1");
      // The next request, even in the same turn, revalidates and sees the commit.
      a.beginRequest();
      expect(text(await a.get("k"))).toBe("v2");
    });

    it("a request sees what another process committed before it began, including deletes and new keys", async () => {
      const [a, other] = pair();
      await a.put("gone", b("x"));
      a.beginRequest();
      expect(text(await a.get("gone"))).toBe("x");
      expect(await a.get("new")).toBeUndefined();
      await nextTurn();
      await other.delete("gone");
      await other.put("new", b("here"));
      a.beginRequest();
      expect(await a.get("gone")).toBeUndefined();
      expect(text(await a.get("new"))).toBe("here");
    });

    it("this process's own writes are visible at once, inside the same turn", async () => {
      const [a] = pair();
      await a.put("k", b("old"));
      a.beginRequest();
      expect(text(await a.get("k"))).toBe("old");
      await a.put("k", b("new"));
      expect(text(await a.get("k"))).toBe("new");
      await a.transaction(async (tx) => {
        await tx.delete("k");
      });
      expect(await a.get("k")).toBeUndefined();
    });

    it("reads outside a request's turn go to SQLite (timers and background work never read a stale value)", async () => {
      const [a, other] = pair();
      await a.put("k", b("v1"));
      a.beginRequest();
      expect(text(await a.get("k"))).toBe("v1");
      await nextTurn();
      await other.put("k", b("v2"));
      // No beginRequest() in this turn: straight to storage.
      expect(text(await a.get("k"))).toBe("v2");
    });

    it("a caller mutating a returned buffer does not change the cached value", async () => {
      const [a] = pair();
      await a.put("k", b("abc"));
      a.beginRequest();
      (await a.get("k"))!.fill(0);
      expect(text(await a.get("k"))).toBe("abc");
    });
  },
);

describe("SqliteStorage write lock across processes", () => {
  it("waits for another process's write transaction without blocking the event loop, then commits", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bk-sqllock-"));
    const a = new SqliteStorage(path.join(dir, "rt.db")),
      other = new SqliteStorage(path.join(dir, "rt.db"));
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => {
        release = r;
      });
      let entered!: () => void;
      const inside = new Promise<void>((r) => {
        entered = r;
      });
      const first = other.transaction(async (tx) => {
        await tx.put("k", b("first"));
        entered();
        await held;
      });
      await inside;
      let ticks = 0;
      const ticker = setInterval(() => {
        ticks++;
      }, 5);
      const t0 = Date.now();
      const second = a.transaction(async (tx) => {
        await tx.put("k", b(`second after ${text(await tx.get("k"))}`));
      });
      setTimeout(release, 150);
      await Promise.all([first, second]);
      clearInterval(ticker);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
      // SQLite's own busy handler would have slept the whole thread: no timer could fire meanwhile.
      expect(ticks).toBeGreaterThan(10);
      a.beginRequest();
      expect(text(await a.get("k"))).toBe("second after first");
    } finally {
      await a.close();
      await other.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("SqliteStorage opened by several processes at once", () => {
  it("six processes creating the same new database file all open it (none sees 'database is locked')", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bk-sqlopen-"));
    const db = path.join(dir, "rt.db");
    const mod = pathToFileURL(path.join(repoRoot, "dist/runtime/server/storage/sqlite.js")).href;
    const src = `import { SqliteStorage } from ${JSON.stringify(mod)};
      const s = new SqliteStorage(${JSON.stringify(db)});
      await s.put("from/" + process.pid, Buffer.from("x"));
      await s.close();`;
    try {
      for (let round = 0; round < 3; round++) {
        rmSync(db, { force: true });
        rmSync(`${db}-wal`, { force: true });
        rmSync(`${db}-shm`, { force: true });
        const runs = await Promise.all(
          Array.from(
            { length: 6 },
            () =>
              new Promise<{ code: number | null; err: string }>((resolve) => {
                const p = spawn(process.execPath, ["--no-warnings", "--input-type=module", "-e", src], {
                  stdio: ["ignore", "ignore", "pipe"],
                });
                let err = "";
                p.stderr!.on("data", (d: Buffer) => {
                  err += d.toString();
                });
                p.on("exit", (code) => resolve({ code, err }));
              }),
          ),
        );
        expect(runs.filter((r) => r.code !== 0).map((r) => r.err)).toEqual([]);
        const s = new SqliteStorage(db);
        expect(await s.list("from/")).toHaveLength(6);
        await s.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
