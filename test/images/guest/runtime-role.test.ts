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
  runtimeGuestConfig,
} from "../../../images/guest/runtime-role.js";
import { parseConfig } from "../../../runtime/server/http/config.js";
import { autoUnsealFromConfig } from "../../../runtime/server/http/server.js";

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

describe("the runtime config per PSP channel (runtime.psp)", () => {
  it("sev-guest: evidence and the derived key from /dev/sev-guest, as the runtime's config parser reads it", async () => {
    const cfg = parseConfig(runtimeGuestConfig("sev-guest"));
    expect(cfg.attestation).toEqual({ type: "sev-guest", device: "/dev/sev-guest" });
    expect(cfg.seal).toMatchObject({ type: "snp-derived-key", device: "/dev/sev-guest" });
    expect(cfg.seal).not.toHaveProperty("port");
    expect(autoUnsealFromConfig(cfg)?.type).toBe("snp-derived-key");
    // Nothing of the simulated channel is left in the hardware variant.
    expect(runtimeGuestConfig("sev-guest")).not.toMatch(/virtio/);
    // Same storage and listener as the local variant: only the PSP channel differs.
    const local = parseConfig(runtimeGuestConfig("virtio-psp"));
    expect(local.attestation).toMatchObject({ type: "virtio-psp" });
    expect(local.seal).toMatchObject({ transport: "virtio-psp" });
    expect(cfg.storage).toEqual(local.storage);
    expect(cfg.listener).toEqual(local.listener);
    expect(runtimeGuestConfig("virtio-psp")).toBe(RUNTIME_GUEST_CONFIG);
    expect(() => runtimeGuestConfig("vsock" as never)).toThrow(/psp is 'vsock'; must be one of virtio-psp, sev-guest/);
  });

  it("configureRuntimeGuest writes the variant it is asked for", async () => {
    const r2 = await mkdtemp(path.join(tmpdir(), "bk-runtime-role-snp-"));
    try {
      await mkdir(path.join(r2, "opt/buckypaper"), { recursive: true });
      const r = await configureRuntimeGuest(r2, "cd".repeat(32), "sev-guest");
      expect(r.psp).toBe("sev-guest");
      expect(await readFile(path.join(r2, RUNTIME_CONFIG_PATH), "utf8")).toBe(runtimeGuestConfig("sev-guest"));
      // The runtime waits for the guest device before asking it for the sealing key.
      const dropIn = path.join(r2, "etc/systemd/system", `${RUNTIME_UNIT_NAME}.d`, "sev-guest.conf");
      expect(await readFile(dropIn, "utf8")).toMatch(
        /^ExecStartPre=\/bin\/sh -c 'modprobe -q sev-guest .*\/dev\/sev-guest/m,
      );
      // Rebuilt as the local variant from the same tree: no drop-in left behind.
      await configureRuntimeGuest(r2, "cd".repeat(32), "virtio-psp");
      await expect(stat(dropIn)).rejects.toThrow(/ENOENT/);
    } finally {
      await rm(r2, { recursive: true, force: true });
    }
  });
});
