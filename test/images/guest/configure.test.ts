// What the kit image bakes beyond its packages (images/guest/configure.ts), checked on a scratch tree: the
// measured boot unit required by every cloud-init stage that runs user-data, cloud-init limited to the
// NoCloud seed, networkd DHCP. The booted result is test/runtime/sim/qemu-guest.test.ts.
import { mkdir, mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { configureGuest, IMAGE_AGENT_UNIT } from "../../../images/guest/configure.js";
import { MEASURED_UNIT_NAME, AGENT_BIN, renderMeasuredUnit } from "../../../runtime/guest/boot-unit.js";

let root = "";
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe("the kit image's guest configuration", () => {
  it("links the measured unit as required by cloud-init's stages and reads the NoCloud user-data", async () => {
    root = await mkdtemp(path.join(tmpdir(), "bk-configure-"));
    await mkdir(path.join(root, "etc/cloud/cloud.cfg.d"), { recursive: true });
    // Without the unit the artifact ships, the image is not built at all.
    await expect(configureGuest(root)).rejects.toThrow(/has no nocloud boot unit/);
    // As buildArtifact lays it out and finishTree unpacks it.
    const shipped = path.join(root, "opt/buckypaper/enclaivelet/share/systemd/nocloud");
    await mkdir(shipped, { recursive: true });
    await writeFile(path.join(shipped, MEASURED_UNIT_NAME), renderMeasuredUnit("nocloud"));
    expect(IMAGE_AGENT_UNIT).toBe(MEASURED_UNIT_NAME);
    const r = await configureGuest(root);
    expect(r).toEqual({ unit: MEASURED_UNIT_NAME, userDataSource: "nocloud" });
    const units = path.join(root, "etc/systemd/system");
    const unit = await readFile(path.join(units, MEASURED_UNIT_NAME), "utf8");
    expect(unit).toContain(`ExecStart=${AGENT_BIN} run --user-data nocloud`);
    expect(unit).toMatch(/^Before=.*cloud-init\.service.*cloud-config\.service.*cloud-final\.service.*ssh\.service/m);
    for (const by of [
      "cloud-init.service.requires",
      "cloud-config.service.requires",
      "cloud-final.service.requires",
      "ssh.service.requires", // a refused guest's sshd never starts
    ])
      expect(await readlink(path.join(units, by, MEASURED_UNIT_NAME))).toBe(
        `/etc/systemd/system/${MEASURED_UNIT_NAME}`,
      );
    expect(await readlink(path.join(units, "multi-user.target.wants/systemd-networkd.service"))).toBe(
      "/lib/systemd/system/systemd-networkd.service",
    );
    expect(await readFile(path.join(root, "etc/cloud/cloud.cfg.d/90-buckypaper.cfg"), "utf8")).toMatch(
      /^datasource_list: \[ NoCloud, None \]$/m,
    );
    expect(await readFile(path.join(root, "etc/systemd/network/10-dhcp.network"), "utf8")).toContain("DHCP=ipv4");
    // Without a network controller wait-online is skipped instead of holding the boot for 2 minutes.
    expect(
      await readFile(path.join(units, "systemd-networkd-wait-online.service.d/10-buckypaper-nic.conf"), "utf8"),
    ).toMatch(/^ExecCondition=\/bin\/sh -c 'grep -qs \^0x02 \/sys\/bus\/pci\/devices\/\*\/class'$/m);
    // Idempotent: a second run over the same tree leaves the same links.
    await configureGuest(root);
    expect(await readlink(path.join(units, "cloud-final.service.requires", MEASURED_UNIT_NAME))).toBe(
      `/etc/systemd/system/${MEASURED_UNIT_NAME}`,
    );
  });
});
