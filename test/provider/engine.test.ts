// The real Pulumi engine (CLI + Node.js language host built from the Go module proxy) runs
// test/fixtures/pulumi-vhsm: a local Vhsm (a real `buckypaper runtime server` process on SQLite, TLS,
// initialised and unsealed) and every provider resource against it, on a file backend, offline — with
// the insecureKeepRootTokenInState opt-out (the default, deployer credential, is engine-bootstrap.test.ts).
// preview → up → up with no changes → refresh with no changes → crash + up restarts → drift → destroy.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { requireTool } from "../support/prereq.js";
import { pulumiBinDir, pulumiRunner, type PulumiRunner } from "./engine.js";
import { runtimeRequest } from "../../provider/client.js";
import { freePort, allText } from "../support/net.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PROGRAM = path.join(ROOT, "test/fixtures/pulumi-vhsm");
const HAVE_ENGINE = requireTool("Pulumi engine (scripts/setup-pulumi.sh)", pulumiBinDir() !== undefined);

const DB_PASSWORD = `db-pw-${Math.random().toString(36).slice(2)}-PLAINTEXT`;
const MEASUREMENT = "c0ffee".repeat(16);

describe.skipIf(!HAVE_ENGINE)("real Pulumi engine: local Vhsm + provider resources", () => {
  let tmp: string;
  let pulumi: PulumiRunner;
  let stack: string;
  let cfg: string[];
  let vhsmDir: string;
  let outputs: { url: string; caFingerprint: string; rootToken: string; workloadVersion: number; policyHash: string };

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "bk-pulumi-"));
    vhsmDir = path.join(tmp, "vhsm");
    pulumi = pulumiRunner({
      programDir: PROGRAM,
      stateDir: path.join(tmp, "state"),
      passphrase: "engine-test-passphrase",
    });
    stack = `t${process.pid}`;
    // Stack config lives in tmp, not next to the fixture program.
    cfg = ["--stack", stack, "--config-file", path.join(tmp, "Pulumi.stack.yaml")];
    await import("node:fs").then((fs) => fs.mkdirSync(path.join(tmp, "state"), { recursive: true }));
    await pulumi.ok(["stack", "init", stack]);
    await pulumi.ok(["config", "set", ...cfg, "stateDir", vhsmDir]);
    await pulumi.ok(["config", "set", ...cfg, "port", String(await freePort())]);
    await pulumi.ok(["config", "set", ...cfg, "measurement", MEASUREMENT]);
    await pulumi.ok(["config", "set", ...cfg, "--secret", "dbPassword", DB_PASSWORD]);
    // This file covers the opt-out (root token and unseal keys kept in state); engine-bootstrap.test.ts the default.
    await pulumi.ok(["config", "set", ...cfg, "insecureRoot", "true"]);
  }, 120_000);

  afterAll(async () => {
    if (!pulumi) return;
    // Whatever happened, stop the runtime process and drop the stack.
    await pulumi.run(["destroy", "--yes", ...cfg]);
    await pulumi.run(["stack", "rm", "--yes", "--force", stack]);
    rmSync(tmp, { recursive: true, force: true });
  }, 300_000);

  it("preview plans every resource", async () => {
    const r = await pulumi.ok(["preview", ...cfg]);
    expect(r.stdout).toMatch(/buckypaper:index:Vhsm\s+vhsm\s+create/);
    expect(r.stdout).toMatch(/pulumi-nodejs:dynamic\/buckypaper:Workload\s+web\s+create/);
    expect(r.stdout).toMatch(/\+ 12 to create/);
    expect(existsSync(vhsmDir)).toBe(false); // preview starts nothing
  }, 300_000);

  it("up starts the runtime and registers everything in it", async () => {
    await pulumi.ok(["up", "--yes", ...cfg]);
    const out = await pulumi.ok(["stack", "output", "--json", "--show-secrets", "--stack", stack]);
    outputs = JSON.parse(out.stdout);
    expect(outputs.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(outputs.caFingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(outputs.workloadVersion).toBe(1);
    // Talk to the runtime the program created, pinning only the CA fingerprint it reported.
    const conn = { url: outputs.url, token: outputs.rootToken, caFingerprint: outputs.caFingerprint };
    const secret = await runtimeRequest(conn, "GET", "secret/data/web/db");
    expect((secret.body as { data: { data: Record<string, string> } }).data.data).toEqual({ password: DB_PASSWORD });
    type Workload = {
      reference_values: { snp_measurements: string[] };
      secrets: { pki: { role: string } };
      acl_policy: string;
    };
    const wl = (await runtimeRequest(conn, "GET", "nitride/workloads/web-1")).body as { data: Workload };
    expect(wl.data.reference_values.snp_measurements).toEqual([MEASUREMENT]);
    expect(wl.data.secrets.pki.role).toBe("pki/web");
    const role = (await runtimeRequest(conn, "GET", "auth/jwt/role/web-1")).body as {
      data: { token_policies: string[] };
    };
    expect(role.data.token_policies).toEqual([wl.data.acl_policy]);
    // The runtime keeps its data where the stack said, private to its owner.
    expect(statSync(vhsmDir).mode & 0o077).toBe(0);
    expect(existsSync(path.join(vhsmDir, "runtime.db"))).toBe(true);
  }, 300_000);

  it("a second up and a refresh find nothing to change", async () => {
    await pulumi.ok(["up", "--yes", "--expect-no-changes", ...cfg]);
    await pulumi.ok(["refresh", "--yes", "--expect-no-changes", ...cfg]);
    await pulumi.ok(["preview", "--expect-no-changes", ...cfg]);
  }, 300_000);

  it("the state holds no secret in clear: not the DB password, root token or unseal keys", async () => {
    const state = allText(path.join(tmp, "state"));
    expect(state).toContain("web-1"); // we are grepping the right files
    expect(state).not.toContain(DB_PASSWORD);
    expect(state).not.toContain(outputs.rootToken);
    const exported = JSON.parse((await pulumi.ok(["stack", "export", "--show-secrets", "--stack", stack])).stdout);
    const svc = exported.deployment.resources.find((r: { type: string }) => r.type.endsWith(":RuntimeService"));
    // `stack export --show-secrets` shows secrets as {<sig>: ..., plaintext: "<json>"}.
    const raw = svc.outputs.unsealKeys as { plaintext?: string };
    expect(typeof raw.plaintext).toBe("string");
    const keys = JSON.parse(raw.plaintext!) as string[];
    expect(keys.length).toBe(1);
    for (const key of keys) expect(state).not.toContain(key);
  }, 120_000);

  it("a crashed runtime is restarted and unsealed by the next up; drift made by hand is put back", async () => {
    const pid = Number(readFileSync(path.join(vhsmDir, "runtime.pid"), "utf8"));
    process.kill(pid, "SIGKILL");
    const r = await pulumi.ok(["up", "--yes", ...cfg]);
    expect(r.stdout).toMatch(/RuntimeService\s+vhsm-runtime\s+updated/);
    expect(r.stdout).toMatch(/1 updated/);
    const conn = { url: outputs.url, token: outputs.rootToken, caFingerprint: outputs.caFingerprint };
    await runtimeRequest(conn, "POST", "secret/data/web/db", { data: { password: "changed-by-hand" } });
    const refreshed = await pulumi.ok(["refresh", "--yes", ...cfg]);
    expect(refreshed.stdout).toMatch(/Secret\s+db\s+updated/);
    await pulumi.ok(["up", "--yes", ...cfg]);
    const back = await runtimeRequest(conn, "GET", "secret/data/web/db");
    expect((back.body as { data: { data: Record<string, string> } }).data.data).toEqual({ password: DB_PASSWORD });
  }, 300_000);

  it("destroy removes the registrations, stops the runtime and deletes its directory", async () => {
    await pulumi.ok(["destroy", "--yes", ...cfg]);
    expect(existsSync(vhsmDir)).toBe(false);
    await expect(
      runtimeRequest({ url: outputs.url, token: "x", caFingerprint: outputs.caFingerprint }, "GET", "sys/health"),
    ).rejects.toThrow(/ECONNREFUSED/);
  }, 300_000);
});
