// A directory shaped like configfs-tsm (/sys/kernel/config/tsm/report) with a stand-in for the
// kernel: when a report entry is created it fills in the attributes; `inblob` and `outblob` are
// FIFOs, so — as with the real kernel — the report exists only once inblob was written, and reading
// outblob returns the report produced for exactly those bytes (here by the SNP simulator).
import { watch, type FSWatcher } from "node:fs";
import { mkdtemp, readFile, writeFile, stat, rm } from "node:fs/promises";
import { openSync, closeSync, constants, existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";

export interface FakeKernelReport {
  outblob: Buffer;
  auxblob?: Buffer;
}

export interface FakeConfigfs {
  root: string;
  /** REPORT_DATA values the fake kernel received, in order. */
  inblobs: Buffer[];
  close(): Promise<void>;
}

export async function startFakeConfigfsTsm(
  produce: (inblob: Buffer) => Promise<FakeKernelReport>,
  provider = "sev_guest",
): Promise<FakeConfigfs> {
  const base = await mkdtemp(path.join(tmpdir(), "bk-configfs-"));
  const root = path.join(base, "tsm", "report");
  spawnSync("mkdir", ["-p", root]);
  const inblobs: Buffer[] = [];
  const pending = new Set<string>();
  const seen = new Set<string>();

  async function serve(entry: string): Promise<void> {
    const inblob = path.join(entry, "inblob");
    const outblob = path.join(entry, "outblob");
    const mk = spawnSync("mkfifo", [inblob, outblob]);
    if (mk.status !== 0) return;
    await writeFile(path.join(entry, "generation"), "0\n");
    await writeFile(path.join(entry, "provider"), provider + "\n"); // last: the agent waits for it
    pending.add(entry);
    try {
      const data = await readFile(inblob); // blocks until the agent wrote and closed inblob
      if (!existsSync(entry)) return;
      inblobs.push(data);
      const r = await produce(data);
      if (r.auxblob) await writeFile(path.join(entry, "auxblob"), r.auxblob);
      await writeFile(path.join(entry, "generation"), "1\n");
      await writeFile(outblob, r.outblob); // blocks until the agent reads outblob
    } finally {
      pending.delete(entry);
    }
  }

  const watcher: FSWatcher = watch(root, (_event, name) => {
    if (!name || seen.has(name)) return;
    const entry = path.join(root, name);
    stat(entry).then(
      (st) => {
        if (!st.isDirectory() || seen.has(name)) return;
        seen.add(name);
        void serve(entry).catch(() => {});
      },
      () => {},
    );
  });

  return {
    root,
    inblobs,
    async close() {
      watcher.close();
      // Release a fake-kernel read still waiting on an inblob nobody will write.
      for (const entry of pending) {
        for (const fifo of ["inblob", "outblob"]) {
          try {
            const fd = openSync(
              path.join(entry, fifo),
              (fifo === "inblob" ? constants.O_WRONLY : constants.O_RDONLY) | constants.O_NONBLOCK,
            );
            closeSync(fd);
          } catch {
            /* nobody waiting */
          }
        }
      }
      await rm(base, { recursive: true, force: true });
    },
  };
}
