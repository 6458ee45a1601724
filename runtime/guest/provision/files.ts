// Writing provisioned files: every path is a guest path under a configurable root. Writes are staged
// next to their target (same filesystem, so rename is atomic) and only committed once every one of
// them is staged; on any failure all stages are removed, so a run never leaves half its secrets.
// Unchanged files (same bytes, mode and owner) are left alone, which makes reboots idempotent.
import { mkdir, open, rename, unlink, readFile, stat, chown } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import type { CommandRunner } from "../exec.js";
import type { Logger } from "../log.js";

export interface FileWrite {
  /** Absolute guest path (the root is prepended when applying). */
  path: string;
  content: Buffer;
  mode: number;
  owner?: string;
  group?: string;
  /** For the journal: what this file is (never its content). */
  what: string;
}

export class ProvisionError extends Error {
  override name = "ProvisionError";
  constructor(
    readonly step: string,
    message: string,
  ) {
    super(`${step}: ${message}`);
  }
}

/** The host path of an absolute guest path under `root`. `..` is resolved against the guest's own root
 *  first (as the guest would), so it can never climb out of `root`; a relative guest path is refused. */
export function underRoot(root: string, guestPath: string): string {
  if (!path.posix.isAbsolute(guestPath) || guestPath.includes("\0"))
    throw new ProvisionError("path", `${JSON.stringify(guestPath)} is not an absolute guest path`);
  const r = path.resolve(root);
  const p = path.resolve(r, "." + path.posix.normalize(guestPath));
  // path.relative, not a string prefix: with root "/" the prefix would be "//" and refuse everything.
  const rel = path.relative(r, p);
  if (rel.startsWith("..") || path.isAbsolute(rel))
    throw new ProvisionError("path", `${guestPath} escapes the provisioning root`);
  return p;
}

export function parseMode(mode: string): number {
  return Number.parseInt(mode, 8);
}

/** Resolves user/group names with getent (glibc NSS: local files, LDAP, …); numbers pass through. */
export async function resolveIds(
  runner: CommandRunner,
  owner?: string,
  group?: string,
): Promise<{ uid?: number; gid?: number }> {
  const lookup = async (db: "passwd" | "group", name: string): Promise<number> => {
    if (/^[0-9]+$/.test(name)) return Number(name);
    const r = await runner.run(["getent", db, name]);
    const id = Number(r.stdout.toString("utf8").split(":")[2]);
    if (r.code !== 0 || !Number.isInteger(id))
      throw new ProvisionError("owner", `${db === "passwd" ? "user" : "group"} '${name}' does not exist`);
    return id;
  };
  return {
    uid: owner ? await lookup("passwd", owner) : undefined,
    gid: group ? await lookup("group", group) : undefined,
  };
}

interface Staged {
  write: FileWrite;
  target: string;
  stage: string;
}

async function unchanged(target: string, w: FileWrite, uid?: number, gid?: number): Promise<boolean> {
  try {
    const st = await stat(target);
    if ((st.mode & 0o7777) !== w.mode) return false;
    if (uid !== undefined && st.uid !== uid) return false;
    if (gid !== undefined && st.gid !== gid) return false;
    return (await readFile(target)).equals(w.content);
  } catch {
    return false;
  }
}

export interface CommitResult {
  written: string[];
  unchanged: string[];
}

export async function commitWrites(
  root: string,
  writes: FileWrite[],
  runner: CommandRunner,
  log: Logger,
): Promise<CommitResult> {
  const staged: Staged[] = [];
  const result: CommitResult = { written: [], unchanged: [] };
  try {
    for (const w of writes) {
      const target = underRoot(root, w.path);
      const { uid, gid } = await resolveIds(runner, w.owner, w.group);
      if (await unchanged(target, w, uid, gid)) {
        result.unchanged.push(w.path);
        continue;
      }
      await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
      const stage = path.join(
        path.dirname(target),
        `.${path.basename(target)}.enclaivelet-${randomBytes(4).toString("hex")}`,
      );
      staged.push({ write: w, target, stage });
      // Created with the final mode (no window where a secret is world-readable), owner set before rename.
      const fh = await open(stage, "wx", w.mode);
      try {
        await fh.writeFile(w.content);
        await fh.chmod(w.mode);
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (uid !== undefined || gid !== undefined) await chown(stage, uid ?? -1, gid ?? -1);
    }
  } catch (e) {
    await Promise.all(staged.map((s) => unlink(s.stage).catch(() => {})));
    throw e instanceof ProvisionError
      ? e
      : new ProvisionError("stage", (e as NodeJS.ErrnoException).code ?? (e as Error).message);
  }
  for (const s of staged) {
    await rename(s.stage, s.target);
    result.written.push(s.write.path);
    log({
      level: "info",
      event: "provision.file",
      path: s.write.path,
      what: s.write.what,
      mode: s.write.mode.toString(8).padStart(4, "0"),
    });
  }
  // Make the renames durable before services that read these files start.
  for (const dir of new Set(staged.map((s) => path.dirname(s.target)))) {
    const fh = await open(dir, "r").catch(() => undefined);
    await fh?.sync().catch(() => {});
    await fh?.close();
  }
  return result;
}

/** systemd EnvironmentFile syntax: NAME="value" with \, " and newlines escaped. */
export function renderEnvFile(vars: Record<string, string>): Buffer {
  const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
  return Buffer.from(
    Object.entries(vars)
      .map(([k, v]) => `${k}="${esc(v)}"\n`)
      .join(""),
    "utf8",
  );
}
