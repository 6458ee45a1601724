// The user-data cloud-init will execute, read from cloud-init's own cache (NoCloud, EC2, GCE).
//
// Why not read the seed disk / IMDS / the metadata server again: cloud-init 22.4's local stage
// (cloud-init-local.service: DataSourceNoCloud, DataSourceEc2Local, DataSourceGCELocal) fetches the user-data
// and pickles the datasource to /var/lib/cloud/instance/obj.pkl (stages.Init._reflect_cur_instance →
// _write_to_cache); the later stages restore that pickle (no second fetch) and execute its `userdata_raw`. Stock
// Ec2 breaks "no second fetch": its network_config re-crawls IMDS when the meta-data has no "network" key, in the
// network stage too — the kit image's EC2 datasource is a subclass that never does (images/guest/configure.ts
// PINNED_EC2). A second read by the agent is a second answer from the host or the cloud operator, who could
// serve the registered user-data to the agent and an injected one to cloud-init. The cache lives in the kit
// image's RAM-only writable layer, so once cloud-init-local wrote it only the guest can change it.
//
// user-data.txt is written only by init.update(), which the local stage reaches only for a datasource in local
// dsmode; by default it appears in the network stage, after the agent. When it exists it must equal the cache.
// The kit image's NoCloud is pinned to net dsmode (images/guest/configure.ts PINNED_NOCLOUD) whatever the host's
// meta-data or DMI serial say; the cached datasource must say so too: a local-dsmode datasource has already run
// the user-data's boothooks and bootcmd before the agent, which then has nothing left to protect.
//
// The pickle is loaded with cloud-init's own loader (cloudinit.sources.pkl_load) by the interpreter cloud-init runs
// on, so the agent and cloud-init cannot disagree on how it decodes. Strict: the cache must exist, load, be the
// expected datasource class in net dsmode, name the instance-id cloud-init-local recorded for this boot, and hold
// user-data.
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { CommandRunner } from "./exec.js";

export type CachedUserDataSource = "nocloud" | "ec2" | "gce";

export const CLOUD_INIT_OBJ_PKL = "/var/lib/cloud/instance/obj.pkl";
/** Written by cloud-init-local on this boot (/run is tmpfs): the instance the later stages will run as. */
export const CLOUD_INIT_RUN_INSTANCE_ID = "/run/cloud-init/.instance-id";
/** The interpreter Debian's cloud-init runs on (its /usr/bin/cloud-init shebang). */
export const CLOUD_INIT_PYTHON = "/usr/bin/python3";

/** The datasource cloud-init-local finds for each source (the image limits datasource_list to that one). NoCloud and
 *  EC2 are the kit image's pinned subclasses (images/guest/configure.ts PINNED_NOCLOUD: dsmode net; PINNED_EC2: IMDS
 *  crawled once per boot; configure.test.ts keeps them equal). */
export const EXPECTED_DATASOURCE: Record<CachedUserDataSource, { module: string; cls: string }> = {
  nocloud: { module: "cloudinit.sources.DataSourceBuckypaperNoCloud", cls: "DataSourceBuckypaperNoCloud" },
  ec2: { module: "cloudinit.sources.DataSourceBuckypaperEc2", cls: "DataSourceBuckypaperEc2Local" },
  gce: { module: "cloudinit.sources.DataSourceGCE", cls: "DataSourceGCELocal" },
};

// Prints what the pickle holds; every judgement is made by the caller. -I: no PYTHON* environment, no user site.
const LOADER = `
import sys, json, base64, os
from cloudinit import sources
pkl = sys.argv[1]
r = {}
if not os.path.isfile(pkl):
    r["error"] = "missing"
else:
    ds = sources.pkl_load(pkl)
    if ds is None:
        r["error"] = "unloadable"
    else:
        r["module"] = type(ds).__module__
        r["cls"] = type(ds).__name__
        r["dsmode"] = getattr(ds, "dsmode", None)
        try:
            r["iid"] = ds.get_instance_id()
        except Exception as e:
            r["iid"] = None
        ud = getattr(ds, "userdata_raw", None)
        r["udType"] = type(ud).__name__
        if isinstance(ud, str):
            ud = ud.encode()
        if isinstance(ud, bytes):
            r["ud"] = base64.b64encode(ud).decode()
print(json.dumps(r))
`;

export class CloudInitCacheError extends Error {
  override name = "CloudInitCacheError";
}

export interface CloudInitCacheOptions {
  runner: CommandRunner;
  objPkl?: string;
  runInstanceId?: string;
  python?: string;
}

interface LoaderOutput {
  error?: "missing" | "unloadable";
  module?: string;
  cls?: string;
  dsmode?: string | null;
  iid?: string | null;
  udType?: string;
  ud?: string;
}

/** The exact user-data bytes cloud-init's later stages will execute (what they write to user-data.txt). */
export async function cachedUserData(source: CachedUserDataSource, o: CloudInitCacheOptions): Promise<Buffer> {
  const pkl = o.objPkl ?? CLOUD_INIT_OBJ_PKL;
  const iidFile = o.runInstanceId ?? CLOUD_INIT_RUN_INSTANCE_ID;
  const want = EXPECTED_DATASOURCE[source];
  let current: string;
  try {
    current = (await readFile(iidFile, "utf8")).trim();
  } catch (e) {
    throw new CloudInitCacheError(
      `${iidFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (cloud-init-local writes it; did it find a datasource?)`,
    );
  }
  if (!current) throw new CloudInitCacheError(`${iidFile}: empty instance-id`);
  const r = await o.runner.run([o.python ?? CLOUD_INIT_PYTHON, "-I", "-c", LOADER, pkl], { timeoutMs: 60_000 });
  if (r.code !== 0)
    throw new CloudInitCacheError(
      `cloud-init's pkl_load (${o.python ?? CLOUD_INIT_PYTHON}) exited ${r.code}: ${r.stderr.toString("utf8").trim().split("\n").slice(-1)[0] ?? ""}`,
    );
  let out: LoaderOutput;
  try {
    out = JSON.parse(r.stdout.toString("utf8")) as LoaderOutput;
  } catch {
    throw new CloudInitCacheError("cloud-init's pkl_load printed no JSON");
  }
  if (out.error === "missing")
    throw new CloudInitCacheError(`${pkl}: missing (cloud-init-local has not cached a ${want.cls})`);
  if (out.error === "unloadable") throw new CloudInitCacheError(`${pkl}: cloud-init cannot load it`);
  if (out.module !== want.module || out.cls !== want.cls)
    throw new CloudInitCacheError(
      `${pkl}: datasource ${out.module}.${out.cls}, expected ${want.module}.${want.cls} (--user-data ${source})`,
    );
  if (out.dsmode !== "net")
    throw new CloudInitCacheError(
      `${pkl}: dsmode ${JSON.stringify(out.dsmode)}, expected "net" (a local-dsmode datasource ran the user-data before the agent)`,
    );
  if (out.iid !== current)
    throw new CloudInitCacheError(
      `${pkl}: instance-id ${JSON.stringify(out.iid)} is not this boot's ${JSON.stringify(current)} (${iidFile})`,
    );
  if (out.ud === undefined) throw new CloudInitCacheError(`${pkl}: no user-data (userdata_raw is ${out.udType})`);
  const bytes = Buffer.from(out.ud, "base64");
  // A local-dsmode datasource has already written user-data.txt; then it must be the same bytes.
  const txt = path.join(path.dirname(pkl), "user-data.txt");
  let written: Buffer | undefined;
  try {
    written = await readFile(txt);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT")
      throw new CloudInitCacheError(`${txt}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (written !== undefined && !written.equals(bytes))
    throw new CloudInitCacheError(`${txt} differs from the user-data in ${pkl}`);
  return bytes;
}
