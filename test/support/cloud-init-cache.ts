// cloud-init's own local stage, without a VM: the real cloud-init 22.4 datasource classes (NoCloud reading a seed
// directory; Ec2Local/GCELocal given the metadata and user-data their crawl would return) and the real
// stages.Init.instancify(), which writes /run/cloud-init/.instance-id and pickles the datasource to
// instance/obj.pkl exactly as cloud-init-local does. `networkStage` then runs what cloud-init.service does with it:
// restore the pickle ("trust") and init.update(), which writes the user-data.txt the user stages execute.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { haveCommand, requireTool } from "./prereq.js";

const COMMON = `
import sys, json, os, copy
from cloudinit import stages
a = json.loads(sys.argv[1])
CFG = {"system_info": {"paths": {"cloud_dir": a["cloud"], "run_dir": a["run"]}, "distro": "debian"}}
class Init(stages.Init):
    # cloud-init re-reads /etc/cloud on _reset(); keep every path inside the test's directories
    def read_cfg(self, extra_fns=None):
        if not self._cfg:
            self._cfg = copy.deepcopy(CFG)
init = Init()
paths = init.paths
os.makedirs(a["cloud"], exist_ok=True)
`;

const LOCAL = `${COMMON}
kind = a["kind"]
if kind == "nocloud":
    from cloudinit.sources.DataSourceNoCloud import DataSourceNoCloud
    ds = DataSourceNoCloud({}, init.distro, paths)
    ds.seed_dirs = [a["seed"]]
    assert ds.get_data(), "NoCloud found no seed"
else:
    if kind == "ec2":
        from cloudinit.sources.DataSourceEc2 import DataSourceEc2Local as C
    else:
        from cloudinit.sources.DataSourceGCE import DataSourceGCELocal as C
    ds = C({}, init.distro, paths)
    ds.metadata = {"instance-id": a["iid"]}
    ds.userdata_raw = a["userData"].encode()
init.datasource = ds
paths.datasource = ds
print(init.instancify())
`;

const NETWORK = `${COMMON}
init.fetch(existing="trust")
assert init.ds_restored, "the network stage did not restore the cache"
init.update()
print(init.datasource.get_instance_id())
`;

function cloudInitPython(): string | undefined {
  if (!haveCommand("cloud-init", ["--version"])) return undefined;
  for (const p of ["/usr/bin/cloud-init", "/usr/local/bin/cloud-init"]) {
    if (!existsSync(p)) continue;
    const m = /^#!\s*(\S+)/.exec(readFileSync(p, "utf8").split("\n")[0]);
    if (m) return m[1];
  }
  return undefined;
}

/** The interpreter the installed cloud-init runs on. */
export const cloudInitPy = cloudInitPython();
export const hasCloudInitStages = requireTool(
  "cloud-init's stages and NoCloud/Ec2/GCE datasources (apt-get install cloud-init)",
  cloudInitPy !== undefined &&
    spawnSync(cloudInitPy, [
      "-c",
      "import cloudinit.stages, cloudinit.sources.DataSourceEc2, cloudinit.sources.DataSourceGCE",
    ]).status === 0,
);

export interface CloudInitDirs {
  cloud: string;
  run: string;
}

function py(script: string, args: object): string {
  const r = spawnSync(cloudInitPy!, ["-c", script, JSON.stringify(args)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`cloud-init failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** cloud-init-local: NoCloud reads the seed dir; returns the instance-id it cached. */
export function localStage(
  dirs: CloudInitDirs,
  src: { kind: "nocloud"; seed: string } | { kind: "ec2" | "gce"; iid: string; userData: string },
): string {
  return py(LOCAL, { ...dirs, ...src });
}

/** cloud-init.service: restore the cache and write instance/user-data.txt (what the user stages run). */
export function networkStage(dirs: CloudInitDirs): string {
  return py(NETWORK, dirs);
}
