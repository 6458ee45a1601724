// Other Pulumi languages, on the real engine: the component provider plugin
// (bin/pulumi-resource-buckypaper → component-provider.ts) yields a schema, the Python SDK
// generated from it is installed next to the PyPI Python SDK, and a Python program
// (test/fixtures/python-consumer) deploys a local Vhsm through it: preview → up (a real runtime
// process answers, its root token is a secret and never in the state in clear) → preview-time
// validation of a ConfidentialVm reaching Python → destroy (the runtime stops).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { requireTool } from "../support/prereq.js";
import { pulumiBinDir, pulumiRunner, type PulumiRunner } from "./engine.js";
import { runtimeRequest } from "../../provider/client.js";
import { freePort, allText } from "../support/net.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PROGRAM = path.join(ROOT, "test/fixtures/python-consumer");
const CACHE = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "buckypaper");
const VENV = process.env.BK_PULUMI_PYTHON_VENV ?? path.join(CACHE, "pulumi-python-venv");
const VENV_PY = path.join(VENV, "bin", "python");

const engineDir = pulumiBinDir();
const HAVE_ENGINE = requireTool(
  "Pulumi engine with the Python language host (scripts/setup-pulumi.sh)",
  engineDir !== undefined && existsSync(path.join(engineDir, "pulumi-language-python")),
);
const HAVE_PYTHON_SDK = requireTool(
  "Python venv with the PyPI Pulumi SDK (scripts/pulumi-python-sdk.sh --setup)",
  existsSync(VENV_PY) &&
    spawnSync(VENV_PY, ["-c", "import pulumi, parver, semver, wheel"], { stdio: "ignore" }).status === 0,
);
const HAVE_SDKGEN = requireTool(
  "Go toolchain or a built buckypaper-sdkgen (scripts/pulumi-python-sdk.sh --setup)",
  existsSync(path.join(CACHE, `sdkgen-${process.env.BK_PULUMI_VERSION ?? "3.259.0"}`, "buckypaper-sdkgen")) ||
    spawnSync("go", ["version"], { stdio: "ignore" }).status === 0,
);

const COMPONENTS = [
  "Vhsm",
  "ConfidentialVm",
  "AwsConfidentialVm",
  "AzureConfidentialVm",
  "GcpConfidentialVm",
  "ProxmoxConfidentialVm",
  "QemuConfidentialVm",
  "AwsKitImage",
  "GcpKitImage",
  "AzureKitImage",
];

describe.skipIf(!HAVE_ENGINE || !HAVE_PYTHON_SDK || !HAVE_SDKGEN)(
  "Python program on the real engine through the component provider plugin",
  () => {
    let tmp: string;
    let pulumi: PulumiRunner;
    let stack: string;
    let cfg: string[];
    let vhsmDir: string;
    let schema: {
      name: string;
      resources: Record<string, unknown>;
      types: Record<string, { enum?: { value: string }[] }>;
    };
    let outputs: { url: string; caFingerprint: string; rootToken: string };
    const savedEnv = { PATH: process.env.PATH, PYTHONPATH: process.env.PYTHONPATH };

    beforeAll(async () => {
      tmp = mkdtempSync(path.join(os.tmpdir(), "bk-python-"));
      vhsmDir = path.join(tmp, "vhsm");
      // Schema from the plugin, SDK generated and installed into tmp/python/site.
      const gen = spawnSync(path.join(ROOT, "scripts/pulumi-python-sdk.sh"), [path.join(tmp, "python")], {
        env: {
          ...process.env,
          PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ""}`,
          BK_PULUMI_PYTHON_VENV: VENV,
        },
        encoding: "utf8",
        timeout: 600_000,
      });
      if (gen.status !== 0)
        throw new Error(`scripts/pulumi-python-sdk.sh failed (${gen.status}):\n${gen.stdout}\n${gen.stderr}`);
      schema = JSON.parse(readFileSync(path.join(tmp, "python/schema.json"), "utf8"));
      // The engine runs the program with the venv's python3 and finds the SDK on PYTHONPATH.
      process.env.PATH = `${path.join(VENV, "bin")}:${process.env.PATH ?? ""}`;
      process.env.PYTHONPATH = path.join(tmp, "python/site");
      mkdirSync(path.join(tmp, "state"), { recursive: true });
      pulumi = pulumiRunner({
        programDir: PROGRAM,
        stateDir: path.join(tmp, "state"),
        passphrase: "python-consumer-test",
      });
      stack = `py${process.pid}`;
      cfg = ["--stack", stack, "--config-file", path.join(tmp, "Pulumi.stack.yaml")];
      await pulumi.ok(["stack", "init", stack]);
      await pulumi.ok(["config", "set", ...cfg, "stateDir", vhsmDir]);
      await pulumi.ok(["config", "set", ...cfg, "port", String(await freePort())]);
    }, 900_000);

    afterAll(async () => {
      process.env.PATH = savedEnv.PATH;
      if (savedEnv.PYTHONPATH === undefined) delete process.env.PYTHONPATH;
      else process.env.PYTHONPATH = savedEnv.PYTHONPATH;
      if (!tmp) return;
      if (pulumi) {
        await pulumi.run(["destroy", "--yes", ...cfg]);
        await pulumi.run(["stack", "rm", "--yes", "--force", stack]);
      }
      rmSync(tmp, { recursive: true, force: true });
    }, 600_000);

    it("the plugin's schema has every component with buckypaper:index tokens and real enums; the Node-only LocalConfidentialVm is not offered", () => {
      expect(schema.name).toBe("buckypaper");
      expect(Object.keys(schema.resources).sort()).toEqual(COMPONENTS.map((c) => `buckypaper:index:${c}`).sort());
      expect(schema.types["buckypaper:index:Platform"].enum!.map((e) => e.value)).toEqual([
        "aws",
        "azure",
        "gcp",
        "proxmox",
        "qemu",
      ]);
      expect(schema.types["buckypaper:index:Tee"].enum!.map((e) => e.value)).toEqual(["snp", "tdx"]);
      expect(existsSync(path.join(tmp, "python/site/pulumi_buckypaper/vhsm.py"))).toBe(true);
    });

    it("preview plans the Vhsm component and its runtime service, starting nothing", async () => {
      const r = await pulumi.ok(["preview", ...cfg], { timeoutMs: 600_000 });
      expect(r.stdout).toMatch(/buckypaper:index:Vhsm\s+vhsm\s+create/);
      expect(r.stdout).toMatch(/pulumi-nodejs:dynamic\/buckypaper:RuntimeService\s+vhsm-runtime\s+create/);
      expect(r.stdout).toMatch(/\+ 3 to create/);
      expect(existsSync(vhsmDir)).toBe(false);
    }, 600_000);

    it("up starts a real runtime; its root token is a secret in Python's outputs and absent from the state", async () => {
      await pulumi.ok(["up", "--yes", ...cfg], { timeoutMs: 600_000 });
      const masked = await pulumi.ok(["stack", "output", "--json", "--stack", stack]);
      expect(JSON.parse(masked.stdout).rootToken).toBe("[secret]");
      outputs = JSON.parse((await pulumi.ok(["stack", "output", "--json", "--show-secrets", "--stack", stack])).stdout);
      expect(outputs.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(outputs.caFingerprint).toMatch(/^[0-9a-f]{64}$/);
      // The runtime answers with the CA the program reported, and the token works.
      const conn = { url: outputs.url, token: outputs.rootToken, caFingerprint: outputs.caFingerprint };
      const self = (await runtimeRequest(conn, "GET", "auth/token/lookup-self")).body as {
        data: { policies: string[] };
      };
      expect(self.data.policies).toContain("root");
      const state = allText(path.join(tmp, "state"));
      expect(state).toContain("buckypaper:index:Vhsm");
      expect(state).not.toContain(outputs.rootToken);
    }, 600_000);

    it("an impossible ConfidentialVm (TDX on AWS) declared in Python fails the preview naming the field and the allowed values", async () => {
      await pulumi.ok(["config", "set", ...cfg, "impossibleVm", "true"]);
      try {
        const r = await pulumi.run(["preview", ...cfg], { timeoutMs: 600_000 });
        expect(r.code).not.toBe(0);
        expect(r.stdout + r.stderr).toContain(
          "ConfidentialVm impossible: tee is 'tdx', which platform 'aws' does not offer; allowed: snp",
        );
      } finally {
        await pulumi.ok(["config", "rm", ...cfg, "impossibleVm"]);
      }
    }, 600_000);

    it("destroy stops the runtime and removes its directory", async () => {
      await pulumi.ok(["destroy", "--yes", ...cfg], { timeoutMs: 600_000 });
      await expect(
        runtimeRequest(
          { url: outputs.url, token: outputs.rootToken, caFingerprint: outputs.caFingerprint },
          "GET",
          "sys/health",
          undefined,
          3_000,
        ),
      ).rejects.toThrow();
      expect(existsSync(vhsmDir)).toBe(false);
    }, 600_000);
  },
);
