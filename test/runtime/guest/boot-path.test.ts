// The boot path minus systemd: build the guest artifact, serve it, run the fetch script exactly as
// rendered into user-data (SHA-256 pin, idempotent, tampering refused), then start the installed
// agent the way the unit's ExecStart does, against a real runtime with simulated SNP evidence.
import { describe, expect, it, beforeAll, afterAll } from "vitest";
import { createServer, type Server } from "node:http";
import { execFile } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse } from "yaml";
import { buildArtifact } from "../../../runtime/guest/artifact.js";
import { renderUserData, INSTALL_DIR } from "../../../runtime/guest/cloud-init/index.js";
import { startFakeConfigfsTsm, type FakeConfigfs } from "./fake-configfs.js";
import { startEnclaiveletStack, GOOD_MEASUREMENT, type EnclaiveletStack } from "./stack.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";

function sh(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      argv[0],
      argv.slice(1),
      { encoding: "utf8", env: { ...process.env, ...env }, timeout: 90_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("boot path: artifact → pinned download → installed agent → provisioned", () => {
  const ok = requireTool(
    "curl, sha256sum and tar",
    haveCommand("curl", ["--version"]) && haveCommand("sha256sum", ["--version"]) && haveCommand("tar", ["--version"]),
  );
  let work: string;
  let artifact: { file: string; sha256: string };
  let server: Server;
  let base: string;
  const requests: string[] = [];
  let stack: EnclaiveletStack;
  let fake: FakeConfigfs;

  beforeAll(async () => {
    if (!ok) return;
    work = await mkdtemp(path.join(tmpdir(), "bk-boot-"));
    // Ship a tiny launcher for the running Node instead of copying its 100 MB binary into every test run.
    const node = path.join(work, "node");
    await writeFile(node, `#!/bin/sh\nexec '${process.execPath}' "$@"\n`);
    await chmod(node, 0o755);
    artifact = await buildArtifact({
      repoRoot,
      out: path.join(work, "dl/enclaivelet-linux-x64.tar.gz"),
      nodeBinary: node,
    });
    const bytes = await readFile(artifact.file);
    server = createServer((req, res) => {
      requests.push(req.url ?? "");
      if (req.url === "/enclaivelet.tar.gz") return void res.end(bytes);
      if (req.url === "/tampered.tar.gz") return void res.end(Buffer.concat([bytes, Buffer.from("x")]));
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    stack = await startEnclaiveletStack();
    fake = await startFakeConfigfsTsm(async (inblob) => {
      const r = await stack.sim.report({ measurement: GOOD_MEASUREMENT, reportData: inblob });
      return { outblob: Buffer.from(r.report), auxblob: Buffer.from(r.certTable) };
    });
  });

  afterAll(async () => {
    await fake?.close();
    await stack?.rt.close();
    server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  function rendered(url: string) {
    const r = renderUserData({
      platform: "qemu",
      runtimeUrl: stack.rt.url,
      runtimeCaSha256: stack.caSha256,
      workloadId: "web",
      agent: { kind: "download", url, sha256: artifact.sha256 },
      provision: { files: [{ path: "/run/secrets/db-password", secret: "web/db", field: "password", mode: "0600" }] },
    });
    const doc = parse(r.text) as { write_files: { path: string; content: string }[] };
    const file = (p: string) => doc.write_files.find((f) => f.path === p)!.content;
    return {
      fetch: file("/usr/local/lib/buckypaper/fetch-enclaivelet.sh"),
      unit: file("/etc/systemd/system/enclaivelet.service"),
      config: file("/etc/buckypaper/enclaivelet.json"),
    };
  }

  it("the artifact is reproducible: building twice gives the same SHA-256", async (ctx) => {
    if (!ok) return ctx.skip();
    const again = await buildArtifact({
      repoRoot,
      out: path.join(work, "again/a.tar.gz"),
      nodeBinary: path.join(work, "node"),
    });
    expect(again.sha256).toBe(artifact.sha256);
  });

  it("a tampered artifact is refused by the pin and nothing is installed", async (ctx) => {
    if (!ok) return ctx.skip();
    const dest = path.join(work, "opt-tampered");
    const script = path.join(work, "fetch-tampered.sh");
    await writeFile(script, rendered(`${base}/tampered.tar.gz`).fetch);
    const r = await sh(["sh", script], { BUCKYPAPER_INSTALL_DIR: dest });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/FAILED|did NOT match/);
    expect(existsSync(path.join(dest, "enclaivelet"))).toBe(false);
  });

  it("an unreachable artifact fails the fetch (and so the unit) with nothing installed", async (ctx) => {
    if (!ok) return ctx.skip();
    const dest = path.join(work, "opt-missing");
    const script = path.join(work, "fetch-missing.sh");
    await writeFile(
      script,
      rendered(`${base}/missing.tar.gz`).fetch.replace("--retry 10 --retry-delay 3", "--retry 1 --retry-delay 0"),
    );
    const r = await sh(["sh", script], { BUCKYPAPER_INSTALL_DIR: dest });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/404/);
    expect(existsSync(path.join(dest, "enclaivelet"))).toBe(false);
  });

  it("installs the pinned artifact once, then the unit's ExecStart provisions this workload's secret", async (ctx) => {
    if (!ok) return ctx.skip();
    const dest = path.join(work, "opt");
    const ud = rendered(`${base}/enclaivelet.tar.gz`);
    const script = path.join(work, "fetch.sh");
    await writeFile(script, ud.fetch);
    const first = await sh(["sh", script], { BUCKYPAPER_INSTALL_DIR: dest });
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect((await readFile(path.join(dest, ".artifact-sha256"), "utf8")).trim()).toBe(artifact.sha256);
    const downloads = requests.filter((u) => u === "/enclaivelet.tar.gz").length;
    expect((await sh(["sh", script], { BUCKYPAPER_INSTALL_DIR: dest })).code).toBe(0);
    expect(requests.filter((u) => u === "/enclaivelet.tar.gz").length).toBe(downloads); // already installed: no download

    // ExecStart=/opt/buckypaper/enclaivelet/bin/enclaivelet run --config /etc/buckypaper/enclaivelet.json
    const exec = /^ExecStart=(\S+) (.*)$/m.exec(ud.unit)!;
    const bin = exec[1].replace(INSTALL_DIR, dest);
    const root = path.join(work, "guest-root");
    const cfg = { ...JSON.parse(ud.config), root, evidence: { provider: "configfs-tsm", configfsRoot: fake.root } };
    const cfgFile = path.join(work, "enclaivelet.json");
    await writeFile(cfgFile, JSON.stringify(cfg));
    const run = await sh([bin, ...exec[2].replace("/etc/buckypaper/enclaivelet.json", cfgFile).split(" ")]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^enclaivelet: .*"event":"done"/m);
    expect(await readFile(path.join(root, "run/secrets/db-password"), "utf8")).toBe("web-db-s3cret");
  });
});
