// cloud-init's own local stage, without a VM: the real cloud-init 22.4 datasource classes (NoCloud reading a seed
// directory; Ec2Local/GCELocal given the metadata and user-data their crawl would return) and the real
// stages.Init.instancify(), which writes /run/cloud-init/.instance-id and pickles the datasource to
// instance/obj.pkl exactly as cloud-init-local does. `networkStage` then runs what cloud-init.service does with it:
// restore the pickle ("trust") and init.update(), which writes the user-data.txt the user stages execute.
// NoCloud is the kit image's datasource (images/guest/configure.ts PINNED_NOCLOUD: its module, resolved by cloud-init's
// own list_sources from the image's datasource_list name) unless `stock` asks for cloud-init's DataSourceNoCloud; the
// host-controlled DMI serial and the kernel command line are what the test says (none by default), never the
// host machine's.
import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PINNED_EC2, PINNED_NOCLOUD } from "../../images/guest/configure.js";
import { haveCommand, requireTool } from "./prereq.js";

const COMMON = `
import sys, json, os, copy
import cloudinit.sources
from cloudinit import stages, util
a = json.loads(sys.argv[1])
# the kit image's datasource module, as if it were in cloud-init's sources package (where the image puts it)
cloudinit.sources.__path__.append(a["modules"])
CFG = {"system_info": {"paths": {"cloud_dir": a["cloud"], "run_dir": a["run"]}, "distro": "debian"}}
# the image's cloud.cfg.d files over cloud-init's built-in config, when the test asks for them
if "cfgFiles" in a:
    CFG = util.mergemanydict([CFG] + [util.read_conf(f) for f in reversed(a["cfgFiles"])] + [util.get_builtin_cfg()])
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
    from cloudinit import dmi, sources
    real_dmi = dmi.read_dmi_data
    dmi.read_dmi_data = lambda key: a.get("dmiSerial") if key == "system-serial-number" else real_dmi(key)
    util.get_cmdline = lambda: a.get("cmdline", "")
    if a.get("stock"):
        from cloudinit.sources.DataSourceNoCloud import DataSourceNoCloud as C
    else:
        # the image's datasource_list entry, resolved as cloud-init-local resolves it
        found = sources.list_sources([a["dsName"]], [sources.DEP_FILESYSTEM], ["", "cloudinit.sources"])
        assert len(found) == 1, found
        C = found[0]
        # and no network-stage variant: the network stage finds nothing of it (only None, after the cache)
        assert sources.list_sources([a["dsName"]], [sources.DEP_FILESYSTEM, sources.DEP_NETWORK], ["", "cloudinit.sources"]) == []
    ds = C({}, init.distro, paths)
    ds.seed_dirs = [a["seed"]]
    assert ds.get_data(), "NoCloud found no seed"
    if "forceDsmode" in a:
        ds.dsmode = a["forceDsmode"]
else:
    if kind == "ec2":
        # the image's datasource_list entry (the pinned Ec2Local), resolved as cloud-init-local resolves it
        from cloudinit import sources
        found = sources.list_sources(["${PINNED_EC2.name}"], [sources.DEP_FILESYSTEM], ["", "cloudinit.sources"])
        assert len(found) == 1, found
        C = found[0]
    else:
        from cloudinit.sources.DataSourceGCE import DataSourceGCELocal as C
    if a.get("metadataUrl"):
        # GCELocal's own crawl over HTTP (metadata_url as the image's cloud.cfg.d sets it), on a machine whose DMI
        # says GCE; no ephemeral DHCP (no NIC to lease on here: the boot test has the real one)
        from cloudinit import dmi
        dmi.read_dmi_data = lambda key: "Google Compute Engine" if key == "system-product-name" else None
        ds = C({"datasource": {"GCE": {"metadata_url": a["metadataUrl"]}}}, init.distro, paths)
        ds.perform_dhcp_setup = False
        assert ds.get_data(), "GCELocal found no metadata server"
    else:
        ds = C({}, init.distro, paths)
        ds.metadata = {"instance-id": a["iid"]}
        ds.userdata_raw = a["userData"].encode()
init.datasource = ds
paths.datasource = ds
iid = init.instancify()
# ds.dsmode is what cloud-init-local's main_init compares with "local" to run boothooks and init modules
print(json.dumps({"iid": iid, "dsmode": ds.dsmode, "cls": type(ds).__module__ + "." + type(ds).__name__}))
`;

const NETWORK = `${COMMON}
init.fetch(existing="trust")
assert init.ds_restored, "the network stage did not restore the cache"
if a.get("applyNetwork"):
    # cloud-init.service's stage 6, before update(): where a datasource's network_config or a BOOT update event
    # could make it crawl again (stock Ec2 did); bring_up False: nothing is configured on the test host
    init.instancify()
    init.apply_network_config(bring_up=False)
init.update()
if a.get("consume"):
    # cloud-init.service's stage 7: the user-data's and the vendor-data's part handlers
    from cloudinit.settings import PER_INSTANCE
    init.consume_data(PER_INSTANCE)
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

/**
 * The kit's NoCloud and EC2 datasource modules (images/guest/configure.ts PINNED_NOCLOUD, PINNED_EC2) in `dir`, and an
 * interpreter for the agent's cache loader that finds it in cloud-init's sources package as the image's python does
 * (the loader runs `python -I -c LOADER obj.pkl`; PYTHONPATH would be ignored).
 */
export function kitDatasource(dir: string): { modules: string; python: string } {
  const modules = path.join(dir, "kit-cloudinit-sources");
  mkdirSync(modules, { recursive: true });
  writeFileSync(path.join(modules, path.basename(PINNED_NOCLOUD.file)), PINNED_NOCLOUD.source);
  writeFileSync(path.join(modules, path.basename(PINNED_EC2.file)), PINNED_EC2.source);
  const python = path.join(dir, "kit-python");
  writeFileSync(
    python,
    `#!${cloudInitPy}
import sys
import cloudinit.sources
cloudinit.sources.__path__.append(${JSON.stringify(modules)})
assert sys.argv[1:3] == ["-I", "-c"], sys.argv
code = sys.argv[3]
sys.argv = ["-c"] + sys.argv[4:]
exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
`,
    { mode: 0o755 },
  );
  return { modules, python };
}

/** Where the harness's own stages find the kit's module when the test did not put it somewhere. */
function modulesDir(dirs: CloudInitDirs & { modules?: string }): string {
  return dirs.modules ?? kitDatasource(path.join(path.dirname(dirs.cloud), "kit-ds")).modules;
}

async function pyAsync(script: string, args: object): Promise<string> {
  try {
    return (
      await promisify(execFile)(cloudInitPy!, ["-c", script, JSON.stringify(args)], { encoding: "utf8" })
    ).stdout.trim();
  } catch (e) {
    throw new Error(`cloud-init failed: ${(e as { stderr?: string }).stderr ?? String(e)}`, { cause: e });
  }
}

function py(script: string, args: object): string {
  const r = spawnSync(cloudInitPy!, ["-c", script, JSON.stringify(args)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`cloud-init failed: ${r.stderr}`);
  return r.stdout.trim();
}

export interface NoCloudSeed {
  kind: "nocloud";
  seed: string;
  /** cloud-init's own DataSourceNoCloud instead of the kit image's pinned one. */
  stock?: boolean;
  /** The DMI system serial the host gives the VM (QEMU: -smbios type=1,serial=…). */
  dmiSerial?: string;
  /** The kernel command line. */
  cmdline?: string;
  /** Overwrites the datasource's dsmode before it is cached (a datasource whose pin failed). */
  forceDsmode?: string;
}

export interface LocalStageResult {
  iid: string;
  /** "local": cloud-init-local.service would go on to run boothooks and the init modules (bootcmd, …). */
  dsmode: string;
  /** module.class of the cached datasource. */
  cls: string;
}

/** cloud-init-local: NoCloud reads the seed dir; returns what it cached. */
export function localStageResult(
  dirs: CloudInitDirs & { modules?: string },
  src: NoCloudSeed | { kind: "ec2" | "gce"; iid: string; userData: string },
): LocalStageResult {
  return JSON.parse(
    py(LOCAL, { ...dirs, modules: modulesDir(dirs), dsName: PINNED_NOCLOUD.name, ...src }),
  ) as LocalStageResult;
}

/**
 * cloud-init-local with GCELocal crawling a metadata server at `metadataUrl` over HTTP (the real read_md), run
 * without blocking this process: the server may be in it (test/support/gce-metadata.ts).
 */
export async function gceLocalStage(
  dirs: CloudInitDirs & { modules?: string },
  metadataUrl: string,
): Promise<LocalStageResult> {
  const args = { ...dirs, modules: modulesDir(dirs), dsName: PINNED_NOCLOUD.name, kind: "gce", metadataUrl };
  return JSON.parse(await pyAsync(LOCAL, args)) as LocalStageResult;
}

/** networkStage, without blocking this process (a metadata server in it may be asked). */
export async function networkStageAsync(
  dirs: CloudInitDirs & { modules?: string },
  o: { consume?: boolean; cfgFiles?: string[]; applyNetwork?: boolean } = {},
): Promise<string> {
  return pyAsync(NETWORK, { ...dirs, modules: modulesDir(dirs), ...o });
}

/** cloud-init-local: NoCloud reads the seed dir; returns the instance-id it cached. */
export function localStage(
  dirs: CloudInitDirs & { modules?: string },
  src: NoCloudSeed | { kind: "ec2" | "gce"; iid: string; userData: string },
): string {
  return localStageResult(dirs, src).iid;
}

/**
 * cloud-init.service: restore the cache and write instance/user-data.txt (what the user stages run); with `consume`,
 * also run the user-data's and vendor-data's part handlers under `cfgFiles` (cloud.cfg.d files) over cloud-init's
 * built-in config.
 */
export function networkStage(
  dirs: CloudInitDirs & { modules?: string },
  o: { consume?: boolean; cfgFiles?: string[] } = {},
): string {
  return py(NETWORK, { ...dirs, modules: modulesDir(dirs), ...o });
}
