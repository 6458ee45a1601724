// The guest-slot budget between test files: another process's slots count until it exits, a request over the
// budget waits, one larger than the budget runs alone, and a dead holder's slots (or lock) free themselves.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { guestSlotHolders, releaseGuestSlots, tryTakeGuestSlots } from "./guest-slots.js";

const dirs: string[] = [];
const kids: ChildProcess[] = [];
afterEach(() => {
  for (const k of kids.splice(0)) k.kill("SIGKILL");
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const scratch = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), "bk-slots-test-"));
  dirs.push(d);
  return d;
};
/** Another live process holding `slots` (a sleeping child, its file written as holdGuestSlots would). */
function otherHolder(dir: string, slots: number): ChildProcess {
  const k = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
  kids.push(k);
  writeFileSync(path.join(dir, `${k.pid}.json`), JSON.stringify({ pid: k.pid, slots, label: "other" }));
  return k;
}
const exited = (k: ChildProcess) => new Promise((r) => k.once("exit", r));

describe("guest slots", () => {
  it("counts another process's slots until it exits; over the budget waits", async () => {
    const dir = scratch();
    const k = otherHolder(dir, 6);
    expect(tryTakeGuestSlots(4, "me", dir, 9)).toBe(false);
    expect(tryTakeGuestSlots(3, "me", dir, 9)).toBe(true);
    expect(
      guestSlotHolders(dir)
        .map((h) => h.slots)
        .sort(),
    ).toEqual([3, 6]);
    releaseGuestSlots(dir);
    k.kill("SIGKILL");
    await exited(k);
    expect(guestSlotHolders(dir)).toEqual([]); // the dead holder's file is gone
    expect(tryTakeGuestSlots(9, "me", dir, 9)).toBe(true);
    releaseGuestSlots(dir);
  });

  it("a file wanting more than the budget runs alone: only when nothing else is held", () => {
    const dir = scratch();
    otherHolder(dir, 1);
    expect(tryTakeGuestSlots(12, "big", dir, 9)).toBe(false);
    kids.splice(0).forEach((k) => k.kill("SIGKILL"));
    const empty = scratch();
    expect(tryTakeGuestSlots(12, "big", empty, 9)).toBe(true);
    releaseGuestSlots(empty);
  });

  it("a lock left by a killed process does not block for ever; a live one makes the caller wait", async () => {
    const dir = scratch();
    const k = otherHolder(dir, 0);
    mkdirSync(path.join(dir, ".lock"));
    writeFileSync(path.join(dir, ".lock", "pid"), String(k.pid));
    expect(tryTakeGuestSlots(1, "me", dir, 9)).toBe(false); // live owner: wait
    k.kill("SIGKILL");
    await exited(k);
    expect(tryTakeGuestSlots(1, "me", dir, 9)).toBe(false); // this try clears the stale lock…
    expect(tryTakeGuestSlots(1, "me", dir, 9)).toBe(true); // …the next one takes the slot
    releaseGuestSlots(dir);
  });
});
