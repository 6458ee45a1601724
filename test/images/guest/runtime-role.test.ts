// The kit image's runtime role (images/guest/runtime-role.ts), checked on a scratch tree: the runtime's
// config, unit and data-disk script in place, and everything that would run host-supplied input or open
// a login masked. The booted result is test/runtime/sim/qemu-runtime-guest.test.ts.
import { mkdir, mkdtemp, readFile, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  RUNTIME_CLOUD_DATA_SCRIPT,
  RUNTIME_CONFIG_PATH,
  RUNTIME_DATA_SCRIPT,
  RUNTIME_GUEST_CONFIG,
  RUNTIME_MASKED_UNITS,
  RUNTIME_UNIT_NAME,
  RuntimeImageError,
  SEV_GUEST_DROP_IN,
  VTPM_DROP_IN,
  configureRuntimeGuest,
  runtimeGuestConfig,
  runtimeVariant,
} from "../../../images/guest/runtime-role.js";
import { buildImage } from "../../../images/guest/build.js";
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
    expect(() => runtimeGuestConfig("vsock" as never)).toThrow(
      /psp is 'vsock'; must be one of virtio-psp, sev-guest, azure-hcl/,
    );
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

describe("the runtime cloud disk's choices (runtimeVariant): derived-key auto-unseal only where the launch digest covers the OS", () => {
  it("defaults: nocloud → virtio-psp + derived-key; ec2/gce → sev-guest + shares, built as the disk", () => {
    expect(runtimeVariant({})).toEqual({ psp: "virtio-psp", unseal: "derived-key" });
    expect(runtimeVariant({ psp: "sev-guest" })).toEqual({ psp: "sev-guest", unseal: "derived-key" });
    expect(runtimeVariant({ cloud: "ec2" })).toEqual({ psp: "sev-guest", unseal: "shares", cloud: "ec2" });
    expect(runtimeVariant({ cloud: "gce", format: "disk" })).toEqual({
      psp: "sev-guest",
      unseal: "shares",
      cloud: "gce",
    });
    // Tests boot the EC2 disk with the simulated PSP: still shares.
    expect(runtimeVariant({ cloud: "ec2", psp: "virtio-psp" })).toEqual({
      psp: "virtio-psp",
      unseal: "shares",
      cloud: "ec2",
    });
    // A UEFI-booted disk off the clouds: the firmware does not measure the UKI into MEASUREMENT either.
    expect(runtimeVariant({ format: "disk" }).unseal).toBe("shares");
  });

  it("refuses derived-key unseal on every cloud and with any PSP, and on a disk; Azure only with azure-hcl; each naming the option", () => {
    for (const cloud of ["ec2", "gce"])
      for (const psp of ["sev-guest", "virtio-psp"]) {
        const e = (() => {
          try {
            runtimeVariant({ cloud, psp, unseal: "derived-key" });
          } catch (x) {
            return x as RuntimeImageError;
          }
          throw new Error(`${cloud}/${psp}: derived-key was accepted`);
        })();
        expect(e).toBeInstanceOf(RuntimeImageError);
        expect(e.option).toBe("--runtime-unseal derived-key");
        expect(e.message).toMatch(
          new RegExp(
            `refused with --cloud ${cloud}: .*covers only the cloud's firmware.*the cloud operator could boot its own`,
          ),
        );
      }
    expect(() => runtimeVariant({ format: "disk", unseal: "derived-key" })).toThrow(
      /--runtime-unseal derived-key: refused with --format disk: UEFI firmware does not put the disk's UKI into the SNP launch digest/,
    );
    // Azure: the paravisor's HCL report is the only evidence there (and exists nowhere else); no derived key at all.
    expect(runtimeVariant({ cloud: "azure" })).toEqual({ psp: "azure-hcl", unseal: "shares", cloud: "azure" });
    expect(runtimeVariant({ cloud: "azure", unseal: "shares", psp: "azure-hcl" })).toEqual(
      runtimeVariant({ cloud: "azure" }),
    );
    for (const psp of ["sev-guest", "virtio-psp"])
      expect(() => runtimeVariant({ cloud: "azure", psp })).toThrow(
        /--runtime-psp: '.*' with --cloud azure: an Azure confidential VM has no \/dev\/sev-guest/,
      );
    expect(() => runtimeVariant({ cloud: "azure", unseal: "derived-key" })).toThrow(
      /--runtime-unseal derived-key: refused with --cloud azure: .*no SNP derived key/,
    );
    for (const cloud of [undefined, "ec2", "gce"])
      expect(() => runtimeVariant({ ...(cloud ? { cloud } : {}), psp: "azure-hcl" })).toThrow(
        /--runtime-psp: 'azure-hcl' is the Azure paravisor's report: only with --cloud azure/,
      );
    expect(() => runtimeVariant({ cloud: "ec2", format: "direct" })).toThrow(
      /--format: 'direct' with --cloud ec2: the clouds boot the runtime from the cloud disk/,
    );
    expect(() => runtimeVariant({ cloud: "ec2", unseal: "auto" })).toThrow(/--runtime-unseal: 'auto'; must be one of/);
    expect(() => runtimeVariant({ cloud: "ec2", psp: "vsock" })).toThrow(/--runtime-psp: 'vsock'; must be one of/);
    expect(() => runtimeVariant({ cloud: "openstack" })).toThrow(
      /--cloud: 'openstack'; must be nocloud, ec2, gce, azure/,
    );
    // The config renderer refuses the combination too (a caller that skipped runtimeVariant).
    expect(() => runtimeGuestConfig("sev-guest", { cloud: "ec2", unseal: "derived-key" })).toThrow(RuntimeImageError);
  });

  it("buildImage refuses them before building anything (no root, no mmdebstrap needed to be told)", async () => {
    const base = { repoRoot: "/nonexistent", lockPath: "/nonexistent/packages.lock", cacheDir: "/nonexistent" };
    await expect(buildImage({ ...base, role: "runtime", cloud: "ec2", runtimeUnseal: "derived-key" })).rejects.toThrow(
      /--runtime-unseal derived-key: refused with --cloud ec2/,
    );
    await expect(buildImage({ ...base, role: "runtime", cloud: "gce", runtimeUnseal: "derived-key" })).rejects.toThrow(
      /--runtime-unseal derived-key: refused with --cloud gce/,
    );
    await expect(
      buildImage({ ...base, role: "runtime", cloud: "azure", runtimeUnseal: "derived-key" }),
    ).rejects.toThrow(/--runtime-unseal derived-key: refused with --cloud azure/);
    await expect(buildImage({ ...base, role: "runtime", cloud: "azure", runtimePsp: "sev-guest" })).rejects.toThrow(
      /--runtime-psp: 'sev-guest' with --cloud azure/,
    );
    await expect(
      buildImage({ ...base, role: "runtime", format: "disk", runtimeUnseal: "derived-key" }),
    ).rejects.toThrow(/refused with --format disk/);
    await expect(buildImage({ ...base, role: "workload", runtimeUnseal: "shares" })).rejects.toThrow(
      /runtimeUnseal is only for the runtime role/,
    );
  });

  it("the cloud configs: the vTPM half of attested TLS, no seal stanza (the runtime starts sealed, operators unseal)", () => {
    const ec2 = parseConfig(runtimeGuestConfig("sev-guest", { cloud: "ec2", unseal: "shares" }));
    expect(ec2.attestation).toEqual({
      type: "sev-guest",
      device: "/dev/sev-guest",
      vtpm: { tcti: "device:/dev/tpmrm0" },
    });
    expect(ec2.seal).toBeUndefined();
    expect(autoUnsealFromConfig(ec2)).toBeUndefined();
    const gce = parseConfig(runtimeGuestConfig("sev-guest", { cloud: "gce", unseal: "shares" }));
    expect(gce.attestation).toEqual({
      type: "sev-guest",
      device: "/dev/sev-guest",
      vtpm: { tcti: "device:/dev/tpmrm0", googleAk: true },
    });
    expect(gce.seal).toBeUndefined();
    // The test variant: the simulated PSP's port, the same vTPM half, no seal.
    const sim = parseConfig(runtimeGuestConfig("virtio-psp", { cloud: "ec2", unseal: "shares" }));
    expect(sim.attestation).toMatchObject({ type: "virtio-psp", vtpm: { tcti: "device:/dev/tpmrm0" } });
    expect(sim.seal).toBeUndefined();
    // Same storage and listener as the local image.
    expect(ec2.storage).toEqual(parseConfig(RUNTIME_GUEST_CONFIG).storage);
    expect(ec2.listener).toEqual(parseConfig(RUNTIME_GUEST_CONFIG).listener);
    // Azure: the paravisor's HCL report + the HCL AK's quote through the vTPM; no vtpm block, no seal.
    const az = parseConfig(runtimeGuestConfig("azure-hcl", { cloud: "azure", unseal: "shares" }));
    expect(az.attestation).toEqual({ type: "azure", device: "/dev/tpmrm0" });
    expect(az.seal).toBeUndefined();
    expect(autoUnsealFromConfig(az)).toBeUndefined();
    expect(az.storage).toEqual(ec2.storage);
    expect(az.listener).toEqual(ec2.listener);
    expect(az.workers).toBe(1);
    expect(() => runtimeGuestConfig("azure-hcl", { cloud: "ec2", unseal: "shares" })).toThrow(RuntimeImageError);
    // The local and hardware images' configs are byte for byte what they were.
    expect(runtimeGuestConfig("virtio-psp", { unseal: "derived-key" })).toBe(RUNTIME_GUEST_CONFIG);
  });

  it("configureRuntimeGuest for a cloud: the cloud data script, the vTPM wait, the manifest fields", async () => {
    const r3 = await mkdtemp(path.join(tmpdir(), "bk-runtime-role-cloud-"));
    try {
      await mkdir(path.join(r3, "opt/buckypaper"), { recursive: true });
      const r = await configureRuntimeGuest(r3, "ef".repeat(32), "sev-guest", { cloud: "gce", unseal: "shares" });
      expect(r).toMatchObject({
        psp: "sev-guest",
        cloud: "gce",
        unseal: "shares",
        vtpm: { device: "/dev/tpmrm0", ak: "google-ak" },
      });
      expect(await readFile(path.join(r3, "opt/buckypaper/bk-runtime-data"), "utf8")).toBe(RUNTIME_CLOUD_DATA_SCRIPT);
      const d = path.join(r3, "etc/systemd/system", `${RUNTIME_UNIT_NAME}.d`);
      expect(await readFile(path.join(d, "vtpm.conf"), "utf8")).toBe(VTPM_DROP_IN);
      expect(await readFile(path.join(d, "sev-guest.conf"), "utf8")).toBe(SEV_GUEST_DROP_IN);
      // The local image from the same tree: the /dev/vdc script, no cloud fields, no vTPM wait.
      const local = await configureRuntimeGuest(r3, "ef".repeat(32));
      expect(local).not.toHaveProperty("cloud");
      expect(await readFile(path.join(r3, "opt/buckypaper/bk-runtime-data"), "utf8")).toBe(RUNTIME_DATA_SCRIPT);
      await expect(stat(path.join(d, "vtpm.conf"))).rejects.toThrow(/ENOENT/);
      const ec2 = await configureRuntimeGuest(r3, "ef".repeat(32), "virtio-psp", { cloud: "ec2", unseal: "shares" });
      expect(ec2.vtpm).toEqual({ device: "/dev/tpmrm0", ak: "runtime-ak" });
      // Azure: the HCL AK, the cloud data script, the vTPM wait, no sev-guest wait (there is no such device).
      const az = await configureRuntimeGuest(r3, "ef".repeat(32), "azure-hcl", { cloud: "azure", unseal: "shares" });
      expect(az).toMatchObject({
        psp: "azure-hcl",
        cloud: "azure",
        unseal: "shares",
        vtpm: { device: "/dev/tpmrm0", ak: "hcl-ak" },
      });
      expect(await readFile(path.join(r3, RUNTIME_CONFIG_PATH), "utf8")).toMatch(/^attestation "azure" \{/m);
      expect(await readFile(path.join(r3, "opt/buckypaper/bk-runtime-data"), "utf8")).toBe(RUNTIME_CLOUD_DATA_SCRIPT);
      expect(await readFile(path.join(d, "vtpm.conf"), "utf8")).toBe(VTPM_DROP_IN);
      await expect(stat(path.join(d, "sev-guest.conf"))).rejects.toThrow(/ENOENT/);
    } finally {
      await rm(r3, { recursive: true, force: true });
    }
  });
});
