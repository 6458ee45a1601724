// Real QEMU guests run under TCG here: each costs about a core while it boots, and the machine has two. Vitest
// runs two test files at once, so two guest-heavy files together (qemu-guest's six guests beside the local
// stack's nine) slowed every boot by half and failed on timeouts inside the guests (CI: cloud-init's pkl_load
// over its 60 s limit, an attestation nonce expired) — which of them overlapped depended on file sizes. A file
// that boots guests therefore holds "guest slots" for its whole run: at most GUEST_SLOTS in use across files,
// and a file asking for more than that runs alone. Holders are files under one directory named by pid, so a
// crashed worker's slots free themselves; a mkdir lock makes the check-and-take atomic between processes.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll } from "vitest";

export const GUEST_SLOTS = 9;
const DIR = path.join(os.tmpdir(), `bk-guest-slots-${process.getuid?.() ?? "u"}`);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

interface Holder {
  pid: number;
  slots: number;
  label: string;
}

/** The live holders (a dead process's file is removed). */
export function guestSlotHolders(dir = DIR): Holder[] {
  if (!existsSync(dir)) return [];
  const out: Holder[] = [];
  for (const f of readdirSync(dir)) {
    if (!f.endsWith(".json")) continue;
    const p = path.join(dir, f);
    try {
      const h = JSON.parse(readFileSync(p, "utf8")) as Holder;
      if (alive(h.pid)) out.push(h);
      else rmSync(p, { force: true });
    } catch {
      rmSync(p, { force: true }); // half-written by a process that died: nothing holds it
    }
  }
  return out;
}

function withLock<T>(dir: string, fn: () => T): T | undefined {
  const lock = path.join(dir, ".lock");
  try {
    mkdirSync(lock);
  } catch {
    // Held: by a live process for a few milliseconds, or left by one killed inside fn (then it is stale).
    try {
      const owner = Number(readFileSync(path.join(lock, "pid"), "utf8"));
      if (owner && !alive(owner)) rmSync(lock, { recursive: true, force: true });
    } catch {
      /* being created or removed right now */
    }
    return undefined;
  }
  try {
    writeFileSync(path.join(lock, "pid"), String(process.pid));
    return fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Takes `slots` when they fit (or nothing else is held); false when the caller must wait. */
export function tryTakeGuestSlots(slots: number, label: string, dir = DIR, cap = GUEST_SLOTS): boolean {
  mkdirSync(dir, { recursive: true });
  return (
    withLock(dir, () => {
      const held = guestSlotHolders(dir).filter((h) => h.pid !== process.pid);
      const used = held.reduce((n, h) => n + h.slots, 0);
      if (held.length > 0 && used + slots > cap) return false;
      writeFileSync(path.join(dir, `${process.pid}.json`), JSON.stringify({ pid: process.pid, slots, label }));
      return true;
    }) ?? false
  );
}

export function releaseGuestSlots(dir = DIR): void {
  rmSync(path.join(dir, `${process.pid}.json`), { force: true });
}

/**
 * For a describe block that boots `slots` guests: waits for them before its other hooks (call it first in the
 * block) and frees them after its other afterAll hooks have stopped the guests.
 */
export function holdGuestSlots(slots: number, label: string): void {
  beforeAll(async () => {
    const t0 = Date.now();
    let said = false;
    while (!tryTakeGuestSlots(slots, label)) {
      if (!said) {
        const others = guestSlotHolders()
          .map((h) => `${h.label} (${h.slots})`)
          .join(", ");
        console.log(`${label}: waiting for ${slots} guest slot(s) of ${GUEST_SLOTS}; held by ${others || "…"}`);
        said = true;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
    if (said) console.log(`${label}: got ${slots} guest slot(s) after ${Math.round((Date.now() - t0) / 1000)} s`);
  }, 5_400_000);
  afterAll(() => releaseGuestSlots());
}
