// What the kit image bakes beyond its packages (images/guest/configure.ts), checked on a scratch tree: the
// measured boot unit required by every cloud-init stage that runs user-data, cloud-init limited to the
// NoCloud seed, networkd DHCP. The booted result is test/runtime/sim/qemu-guest.test.ts.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  configureGuest,
  IMAGE_AGENT_UNIT,
  IMAGE_USER_DATA_SOURCES,
  imageUserDataSource,
  PINNED_EC2,
  PINNED_NOCLOUD,
  SSHD_KEYS_ONLY,
} from "../../../images/guest/configure.js";
import { EXPECTED_DATASOURCE } from "../../../runtime/guest/cloud-init-cache.js";
import { MEASURED_UNIT_NAME, AGENT_BIN, renderMeasuredUnit } from "../../../runtime/guest/boot-unit.js";
import { USER_DATA_SOURCES } from "../../../runtime/guest/userdata.js";
import { AZURE_OVF_PATH } from "../../../runtime/guest/azure-ovf.js";

let root = "";
const scratch: string[] = [];
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
  for (const d of scratch) await rm(d, { recursive: true, force: true });
});

/** A scratch tree with the units as buildArtifact lays them out (one per source) and finishTree unpacks them. */
async function treeWithArtifactUnits(): Promise<string> {
  const r = await mkdtemp(path.join(tmpdir(), "bk-configure-cloud-"));
  scratch.push(r);
  for (const source of USER_DATA_SOURCES) {
    const shipped = path.join(r, "opt/buckypaper/enclaivelet/share/systemd", source);
    await mkdir(shipped, { recursive: true });
    await writeFile(path.join(shipped, MEASURED_UNIT_NAME), renderMeasuredUnit(source));
  }
  return r;
}

const REQUIRED_BY = [
  "cloud-init.service.requires",
  "cloud-config.service.requires",
  "cloud-final.service.requires",
  "ssh.service.requires",
];

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
      /^datasource_list: \[ BuckypaperNoCloud, None \]$/m,
    );
    // The kit's NoCloud (dsmode pinned to net) where cloud-init loads datasources from, named as the agent expects.
    expect(PINNED_NOCLOUD.file).toBe(`usr/lib/python3/dist-packages/${PINNED_NOCLOUD.module.replace(/\./g, "/")}.py`);
    expect(PINNED_NOCLOUD.module).toBe(`cloudinit.sources.DataSource${PINNED_NOCLOUD.name}`);
    expect(EXPECTED_DATASOURCE.nocloud).toEqual({ module: PINNED_NOCLOUD.module, cls: PINNED_NOCLOUD.cls });
    expect(await readFile(path.join(root, PINNED_NOCLOUD.file), "utf8")).toBe(PINNED_NOCLOUD.source);
    expect(PINNED_NOCLOUD.source).toMatch(/^class DataSourceBuckypaperNoCloud\(nocloud\.DataSourceNoCloud\):$/m);
    expect(PINNED_NOCLOUD.source).toMatch(/^ {8}self\.dsmode = sources\.DSMODE_NETWORK$/m);
    // Vendor-data never consumed (the agent measures only the user-data).
    const cfg = parse(await readFile(path.join(root, "etc/cloud/cloud.cfg.d/90-buckypaper.cfg"), "utf8"));
    expect(cfg.vendor_data).toEqual({ enabled: false });
    expect(cfg.vendor_data2).toEqual({ enabled: false });
    // No login the host chose: no metadata public-keys, no passwords (sshd's drop-in whatever cloud-init says).
    expect(cfg.allow_public_ssh_keys).toBe(false);
    // ssh_pwauth unset: cloud-init leaves sshd_config alone (setting it restarts sshd after the agent).
    expect(cfg.ssh_pwauth).toBeUndefined();
    expect(await readFile(path.join(root, SSHD_KEYS_ONLY.file), "utf8")).toMatch(/^PasswordAuthentication no$/m);
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

describe("the kit image for a cloud (image build --cloud ec2|gce|azure)", () => {
  it("offers the same sources the agent reads, and refuses another naming the allowed ones", () => {
    expect([...IMAGE_USER_DATA_SOURCES]).toEqual([...USER_DATA_SOURCES]);
    expect(imageUserDataSource(undefined)).toBe("nocloud");
    expect(imageUserDataSource("azure")).toBe("azure");
    expect(() => imageUserDataSource("openstack")).toThrow(
      /cloud is 'openstack'; must be one of nocloud, ec2, gce, azure/,
    );
  });

  it.each([
    ["ec2", "BuckypaperEc2"],
    ["gce", "GCE"],
    ["azure", "Azure"],
  ] as const)(
    "%s: links the %s unit required by cloud-init's user stages and sshd, cloud-init reads only that source",
    async (source, datasource) => {
      const r = await treeWithArtifactUnits();
      expect(await configureGuest(r, source)).toEqual({ unit: MEASURED_UNIT_NAME, userDataSource: source });
      const units = path.join(r, "etc/systemd/system");
      const unit = await readFile(path.join(units, MEASURED_UNIT_NAME), "utf8");
      expect(unit).toContain(`ExecStart=${AGENT_BIN} run --user-data ${source}\n`);
      expect(unit).not.toContain("--user-data nocloud");
      for (const by of REQUIRED_BY)
        expect(await readlink(path.join(units, by, MEASURED_UNIT_NAME))).toBe(
          `/etc/systemd/system/${MEASURED_UNIT_NAME}`,
        );
      expect(await readlink(path.join(units, "multi-user.target.wants", MEASURED_UNIT_NAME))).toBe(
        `/etc/systemd/system/${MEASURED_UNIT_NAME}`,
      );
      // The one datasource the agent measured, and no other one that could bring user-data: None brings none.
      const cfg = parse(await readFile(path.join(r, "etc/cloud/cloud.cfg.d/90-buckypaper.cfg"), "utf8"));
      expect(cfg.datasource_list).toEqual([datasource, "None"]);
      expect(cfg.network).toEqual({ config: "disabled" });
      expect(cfg.vendor_data).toEqual({ enabled: false });
      expect(cfg.vendor_data2).toEqual({ enabled: false });
      expect(cfg.allow_public_ssh_keys).toBe(false);
      expect(cfg.ssh_pwauth).toBeUndefined();
      expect(existsSync(path.join(r, SSHD_KEYS_ONLY.file))).toBe(true);
      // NoCloud's pinned module only in the NoCloud image, EC2's only in the EC2 image
      expect(existsSync(path.join(r, PINNED_NOCLOUD.file))).toBe(false);
      expect(existsSync(path.join(r, PINNED_EC2.file))).toBe(source === "ec2");
      if (source === "ec2") {
        // The kit's Ec2Local (IMDS crawled once per boot: no network config, so no stale-metadata re-crawl after
        // the agent), named as the agent expects; its config stays under cloud-init's Ec2 name.
        expect(PINNED_EC2.file).toBe(`usr/lib/python3/dist-packages/${PINNED_EC2.module.replace(/\./g, "/")}.py`);
        expect(PINNED_EC2.module).toBe(`cloudinit.sources.DataSource${PINNED_EC2.name}`);
        expect(EXPECTED_DATASOURCE.ec2).toEqual({ module: PINNED_EC2.module, cls: PINNED_EC2.cls });
        expect(await readFile(path.join(r, PINNED_EC2.file), "utf8")).toBe(PINNED_EC2.source);
        expect(PINNED_EC2.source).toMatch(/^class DataSourceBuckypaperEc2Local\(ec2\.DataSourceEc2Local\):$/m);
        expect(PINNED_EC2.source).toMatch(/^ {4}def network_config\(self\):\n {8}return None$/m);
        expect(PINNED_EC2.source).toMatch(
          /^datasources = \[\(DataSourceBuckypaperEc2Local, \(sources\.DEP_FILESYSTEM,\)\)\]$/m,
        );
        expect(cfg.datasource.Ec2.strict_id).toBe(true);
        expect(cfg.datasource.Ec2.metadata_urls).toEqual(["http://169.254.169.254"]);
      } else if (source === "gce")
        expect(cfg.datasource.GCE.metadata_url).toBe("http://169.254.169.254/computeMetadata/v1/");
      // Azure: cloud-init writes the OVF it took the user-data from where the agent reads it (azure-ovf.ts).
      else expect(cfg.datasource.Azure.data_dir).toBe(path.dirname(AZURE_OVF_PATH));
      // networkd DHCP on the NIC reaches the metadata service, with the MTU the cloud hands out.
      expect(await readFile(path.join(r, "etc/systemd/network/10-dhcp.network"), "utf8")).toMatch(/^DHCP=ipv4$/m);
      expect(
        await readFile(path.join(r, "etc/systemd/network/10-dhcp.network.d/10-buckypaper-cloud.conf"), "utf8"),
      ).toMatch(/^\[DHCPv4\]\nUseMTU=yes$/m);
      expect(await readlink(path.join(units, "multi-user.target.wants/systemd-networkd.service"))).toBe(
        "/lib/systemd/system/systemd-networkd.service",
      );
      // Reconfigured for NoCloud, the same tree loses the cloud's datasource and drop-in.
      expect((await configureGuest(r)).userDataSource).toBe("nocloud");
      const back = parse(await readFile(path.join(r, "etc/cloud/cloud.cfg.d/90-buckypaper.cfg"), "utf8"));
      expect(back.datasource_list).toEqual([PINNED_NOCLOUD.name, "None"]);
      expect(back.datasource).toBeUndefined();
      expect(back.vendor_data).toEqual({ enabled: false });
      expect(existsSync(path.join(r, PINNED_NOCLOUD.file))).toBe(true);
      expect(existsSync(path.join(r, PINNED_EC2.file))).toBe(false);
      expect(await readFile(path.join(units, MEASURED_UNIT_NAME), "utf8")).toContain("--user-data nocloud\n");
      await expect(
        readFile(path.join(r, "etc/systemd/network/10-dhcp.network.d/10-buckypaper-cloud.conf")),
      ).rejects.toThrow(/ENOENT/);
      // and back to the cloud: the pinned NoCloud module is gone again
      await configureGuest(r, source);
      expect(existsSync(path.join(r, PINNED_NOCLOUD.file))).toBe(false);
      expect(existsSync(path.join(r, PINNED_EC2.file))).toBe(source === "ec2");
    },
  );

  it("refuses a cloud the artifact ships no unit for, and a source that is not one", async () => {
    const r = await mkdtemp(path.join(tmpdir(), "bk-configure-cloud-"));
    scratch.push(r);
    const shipped = path.join(r, "opt/buckypaper/enclaivelet/share/systemd/nocloud");
    await mkdir(shipped, { recursive: true });
    await writeFile(path.join(shipped, MEASURED_UNIT_NAME), renderMeasuredUnit("nocloud"));
    await expect(configureGuest(r, "gce")).rejects.toThrow(/has no gce boot unit/);
    await expect(configureGuest(r, "azure")).rejects.toThrow(/has no azure boot unit/);
    await expect(configureGuest(r, "openstack" as never)).rejects.toThrow(/must be one of nocloud, ec2, gce, azure/);
  });
});
