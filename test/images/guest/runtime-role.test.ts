// The kit image's runtime role (images/guest/runtime-role.ts), checked on a scratch tree: the runtime's
// config, unit and data-disk script in place, and everything that would run host-supplied input or open
// a login masked. The booted result is test/runtime/sim/qemu-runtime-guest.test.ts.
import { mkdir, mkdtemp, readFile, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  RUNTIME_CONFIG_PATH,
  RUNTIME_GUEST_CONFIG,
  RUNTIME_MASKED_UNITS,
  RUNTIME_UNIT_NAME,
  configureRuntimeGuest,
} from "../../../images/guest/runtime-role.js";

let root = "";
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe("the kit image's runtime role", () => {
  it("installs the runtime's config, unit and data script; masks cloud-init, sshd and the gettys", async () => {
    root = await mkdtemp(path.join(tmpdir(), "bk-runtime-role-"));
    await mkdir(path.join(root, "opt/buckypaper"), { recursive: true });
    const r = await configureRuntimeGuest(root, "ab".repeat(32));
    expect(r.unit).toBe(RUNTIME_UNIT_NAME);
    expect(await readFile(path.join(root, RUNTIME_CONFIG_PATH), "utf8")).toBe(RUNTIME_GUEST_CONFIG);
    expect(RUNTIME_GUEST_CONFIG).toMatch(/seal "snp-derived-key" \{ transport = "virtio-psp" \}/);
    expect(RUNTIME_GUEST_CONFIG).toMatch(/attestation "virtio-psp"/);
    const units = path.join(root, "etc/systemd/system");
    const unit = await readFile(path.join(units, RUNTIME_UNIT_NAME), "utf8");
    expect(unit).toMatch(/^ExecStart=\/opt\/buckypaper\/bk-runtime\/bin\/bk-runtime \/etc\/buckypaper\/runtime\.hcl$/m);
    expect(unit).toMatch(/^ExecStartPre=\/opt\/buckypaper\/bk-runtime-data$/m);
    expect(await readlink(path.join(units, "multi-user.target.wants", RUNTIME_UNIT_NAME))).toBe(
      `../${RUNTIME_UNIT_NAME}`,
    );
    expect((await stat(path.join(root, "opt/buckypaper/bk-runtime-data"))).mode & 0o777).toBe(0o755);
    for (const u of [
      "cloud-init.service",
      "cloud-final.service",
      "ssh.service",
      "ssh.socket",
      "serial-getty@ttyS0.service",
    ]) {
      expect(RUNTIME_MASKED_UNITS).toContain(u);
      expect(await readlink(path.join(units, u)), u).toBe("/dev/null");
    }
    // Idempotent (a rebuilt tree from the same base).
    await configureRuntimeGuest(root, "ab".repeat(32));
  });
});
