// The real cloud-init Azure datasource (Debian's cloud-init package, run by the interpreter its own `cloud-init`
// script names): what read_azure_ovf takes as the user-data from an ovf-env.xml, and the copy write_files leaves
// in the data dir (/var/lib/waagent/ovf-env.xml on a VM) — exactly the two things cloud-init-local does with it.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { haveCommand, requireTool } from "./prereq.js";

const SCRIPT = `
import sys, json, base64, tempfile, os
from cloudinit.sources import DataSourceAzure as dsa
out = []
for ovf in json.load(sys.stdin):
    raw = base64.b64decode(ovf)
    r = {}
    try:
        md, ud, cfg = dsa.read_azure_ovf(raw)
        r["ud"] = base64.b64encode(ud if isinstance(ud, bytes) else ud.encode()).decode()
        d = tempfile.mkdtemp()
        dsa.write_files(d, {"ovf-env.xml": raw}, dirmode=0o700)
        with open(os.path.join(d, "ovf-env.xml"), "rb") as f:
            r["copy"] = base64.b64encode(f.read()).decode()
    except Exception as e:
        r["error"] = type(e).__name__ + ": " + str(e)
    out.append(r)
print(json.dumps(out))
`;

/** The interpreter of the installed cloud-init (its shebang), when cloud-init is installed. */
function cloudInitPython(): string | undefined {
  if (!haveCommand("cloud-init", ["--version"])) return undefined;
  for (const p of ["/usr/bin/cloud-init", "/usr/local/bin/cloud-init"]) {
    if (!existsSync(p)) continue;
    const m = /^#!\s*(\S+)/.exec(readFileSync(p, "utf8").split("\n")[0]);
    if (m) return m[1];
  }
  return undefined;
}

const python = cloudInitPython();
export const hasCloudInitAzure = requireTool(
  "cloud-init's Azure datasource (apt-get install cloud-init)",
  python !== undefined && spawnSync(python, ["-c", "import cloudinit.sources.DataSourceAzure"]).status === 0,
);

export interface CloudInitAzureResult {
  /** The user-data cloud-init would execute (empty: none, it would then use IMDS userData). */
  userData?: Buffer;
  /** The OVF copy cloud-init writes to its data dir. */
  copy?: Buffer;
  /** cloud-init refused the OVF (no Azure datasource from it). */
  error?: string;
}

/** Runs cloud-init's own parser over each ovf-env.xml. */
export function cloudInitAzure(ovfs: (string | Buffer)[]): CloudInitAzureResult[] {
  const r = spawnSync(python!, ["-c", SCRIPT], {
    input: JSON.stringify(ovfs.map((o) => Buffer.from(o).toString("base64"))),
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`cloud-init's Azure datasource failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { ud?: string; copy?: string; error?: string }[]).map((x) => ({
    ...(x.ud !== undefined ? { userData: Buffer.from(x.ud, "base64") } : {}),
    ...(x.copy !== undefined ? { copy: Buffer.from(x.copy, "base64") } : {}),
    ...(x.error !== undefined ? { error: x.error } : {}),
  }));
}
