// The input checks both supervised-guest resources share (workload QemuGuest and the vHSM's VhsmGuest):
// a name that could escape into paths or unit names, or a relative / '..' path, is refused at preview.
import { describe, expect, it } from "vitest";
import { check as qemuGuestCheck } from "../../provider/qemu-guest-handlers.js";
import { check as vhsmGuestCheck } from "../../provider/vhsm-guest-handlers.js";

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
