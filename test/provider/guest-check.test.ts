// The input checks both supervised-guest resources share (workload QemuGuest and the vHSM's VhsmGuest):
// a name that could escape into paths or unit names, or a relative / '..' path, is refused at preview; and
// the diff they share: a boot input's change replaces the guest, a guest that is down is booted again. And the
// vHSM guest's instance identity: its HOST_DATA is chosen by the resource, never by the expectation it is given.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { check as qemuGuestCheck, diff as qemuGuestDiff } from "../../provider/qemu-guest-handlers.js";
import { createHash } from "node:crypto";
import {
  check as vhsmGuestCheck,
  diff as vhsmGuestDiff,
  instanceExpectation,
} from "../../provider/vhsm-guest-handlers.js";
import { instanceHostData, newInstanceId, VHSM_INSTANCE_DOMAIN } from "../../provider/vhsm-instance.js";

const good = {
  name: "web",
  platformDir: "/tmp/bk/platform",
  stateDir: "/tmp/bk/vms/web",
  baseImage: "/tmp/bk/root.img",
};

describe.each([
  ["QemuGuest", qemuGuestCheck],
  ["VhsmGuest", vhsmGuestCheck],
])("%s check: name and paths", (_kind, check) => {
  const failed = (news: Record<string, unknown>) => check("k", { ...good, ...news }).failures.map((f) => f.property);
  it("accepts a plain name and absolute paths", () => {
    expect(failed({})).not.toContain("name");
    expect(failed({})).not.toContain("stateDir");
  });
  it.each(["../etc", "Web", "a/b", "", "-x"])("refuses the name %j", (name) => {
    expect(failed({ name })).toContain("name");
  });
  it.each(["platformDir", "stateDir", "baseImage"])("refuses a relative or '..' %s", (k) => {
    expect(failed({ [k]: "relative/dir" })).toContain(k);
    expect(failed({ [k]: "/tmp/bk/../../etc" })).toContain(k);
  });
});

describe.each([
  ["QemuGuest", qemuGuestDiff, "userData", "sshPrincipal"],
  ["VhsmGuest", vhsmGuestDiff, "attestation", "deployerKeyRotation"],
])("%s diff", (_kind, diff, ownReplaceKey, updateKey) => {
  // A live process whose command line names the state directory stands in for the guest's supervisor.
  const stateDir = `/tmp/bk-guest-diff-${process.pid}/vms/web`;
  let alive: ChildProcess;
  beforeAll(() => {
    alive = spawn(process.execPath, ["-e", "setTimeout(() => {}, 600000)", stateDir], { stdio: "ignore" });
  });
  afterAll(() => {
    alive.kill("SIGKILL");
  });
  const olds = () => ({ ...good, stateDir, argv: ["qemu-system-x86_64", "-m", "1G"], pid: alive.pid });

  it("a running guest with the same inputs is no change", async () => {
    expect(await diff("k", olds(), olds())).toEqual({ changes: false, replaces: [], deleteBeforeReplace: true });
  });
  it.each(["argv", "baseImage", "bootInputsSha256", ownReplaceKey])("a changed %s replaces the guest", async (k) => {
    const d = await diff("k", olds(), { ...olds(), [k]: "changed" });
    expect(d).toEqual({ changes: true, replaces: [k], deleteBeforeReplace: true });
  });
  it(`a changed ${updateKey} updates it in place`, async () => {
    expect(await diff("k", olds(), { ...olds(), [updateKey]: "changed" })).toEqual({
      changes: true,
      replaces: [],
      deleteBeforeReplace: true,
    });
  });
  it("a guest that is not running any more (or a recycled pid) is booted again", async () => {
    expect((await diff("k", { ...olds(), pid: 999_999_999 }, olds())).changes).toBe(true);
    expect((await diff("k", { ...olds(), pid: process.pid }, olds())).changes).toBe(true);
  });
});

describe("VhsmGuest check: the instance identity", () => {
  const att = { snpMeasurements: ["ab".repeat(48)] };
  const failures = (news: Record<string, unknown>) =>
    vhsmGuestCheck("k", { ...good, instanceName: "proj/dev/vhsm", attestation: att, ...news }).failures;
  it("needs the runtime's name and leaves HOST_DATA to the resource", () => {
    expect(failures({}).map((f) => f.property)).not.toContain("instanceName");
    expect(failures({ instanceName: undefined }).map((f) => f.property)).toContain("instanceName");
    expect(failures({ instanceName: "a b" }).map((f) => f.property)).toContain("instanceName");
    // An expectation that brings its own HOST_DATA, or waives it, is refused: the resource binds its instance.
    for (const extra of [{ snpHostData: "00".repeat(32) }, { allowAnyInstance: true }]) {
      const f = failures({ attestation: { ...att, ...extra } }).find((x) => x.property === "attestation");
      expect(f?.reason).toMatch(/must not carry snpHostData or allowAnyInstance/);
    }
  });
  it("HOST_DATA = SHA-256(domain, name, id): fixed for one identity, different for another id or name", () => {
    const id = newInstanceId();
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(newInstanceId()).not.toBe(id);
    const hd = instanceHostData("proj/dev/vhsm", id);
    expect(hd).toBe(createHash("sha256").update(`${VHSM_INSTANCE_DOMAIN}\0proj/dev/vhsm\0${id}`).digest("hex"));
    expect(instanceHostData("proj/dev/vhsm", id)).toBe(hd);
    expect(instanceHostData("proj/prod/vhsm", id)).not.toBe(hd);
    expect(instanceHostData("proj/dev/vhsm", newInstanceId())).not.toBe(hd);
    expect(() => instanceHostData("proj/dev/vhsm", "xyz")).toThrow(/instanceId/);
    expect(instanceExpectation(att, hd)).toEqual({ ...att, snpHostData: hd });
  });
});
