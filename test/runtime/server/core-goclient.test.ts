// HashiCorp's Go API client (github.com/hashicorp/vault/api, what the vault CLI and the Terraform
// provider use) against a live runtime: KV v2 with check-and-set, versions and patch, LIST, the
// vault CLI's KV preflight, policies and the token lifecycle. The program is test/runtime/server/core-goclient.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startTestRuntime, type TestRuntime } from "../../support/runtime.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";

const run = promisify(execFile);
const haveGo = requireTool("Go toolchain (go)", haveCommand("go", ["version"]));

describe.runIf(haveGo)("vault Go API client", () => {
  let rt: TestRuntime;
  let dir: string;
  let bin: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "bk-goclient-"));
    bin = path.join(dir, "goclient");
    // Modules come from the Go module proxy (cached after the first build).
    await run("go", ["build", "-mod=mod", "-o", bin, "."], {
      cwd: path.join(repoRoot, "test/runtime/server/core-goclient"),
      timeout: 280_000,
    });
    rt = await startTestRuntime();
  }, 300_000);
  afterAll(async () => {
    await rt?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("round-trips KV v2, policies and the token lifecycle", async () => {
    const { stdout, stderr } = await run(bin, [], {
      env: { ...process.env, VAULT_ADDR: rt.url, VAULT_TOKEN: rt.rootToken },
      timeout: 60_000,
    });
    expect(stderr).toBe("");
    const out = JSON.parse(stdout);
    expect(out.sealed).toBe(false);
    expect(out.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(out.root_policies).toEqual(["root"]);
    expect(out.cas_refused_400).toBe(true);
    expect(out.read).toEqual({ api_key: "go-secret-2" });
    expect(out.version_n).toBe(2);
    expect(out.v1).toEqual({ api_key: "go-secret-1" });
    expect(out.patched).toEqual({ api_key: "go-secret-2", extra: "y" });
    expect(out.current_version).toBe(3);
    expect(out.list).toEqual(["app"]);
    expect(out.preflight_path).toBe("secret/");
    expect(out.preflight_version).toBe("2");
    expect(out.policy).toContain('path "secret/data/go/*"');
    expect(out.child_policies).toEqual(["default", "go-ro"]);
    expect(out.child_read).toEqual({ api_key: "go-secret-2", extra: "y" });
    expect(out.child_write_403).toBe(true);
    expect(out.renew_lease).toBeGreaterThan(3500);
    expect(out.revoked_403).toBe(true);
    expect(out.secret_mount_type).toBe("kv");
  });
});
