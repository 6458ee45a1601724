// The real Pulumi engine running test/fixtures/pulumi-vhsm with the secure default of `Vhsm`: the root
// token is revoked after bootstrap, every resource authenticates with the deployer credential (an
// Ed25519 key in a 0600 file under the user's config directory, a one-minute JWT per run), the single
// recovery share is output only encrypted to a local recovery key. The exported state holds neither
// a token, nor a share, nor a private key; a crash is unsealed by the next `up`; a rotation replaces the
// deployer key; destroy removes the key files.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createPrivateKey } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { requireTool } from "../support/prereq.js";
import { pulumiBinDir, pulumiRunner, type PulumiRunner } from "./engine.js";
import { runtimeRequest, RuntimeApiError } from "../../provider/client.js";
import { forgetDeployerTokens, signDeployerJwt, type DeployerAuth } from "../../runtime/client/deployer.js";
import { decryptShare } from "../../runtime/client/recovery-share.js";
import { freePort, allText } from "../support/net.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PROGRAM = path.join(ROOT, "test/fixtures/pulumi-vhsm");
const HAVE_ENGINE = requireTool("Pulumi engine (scripts/setup-pulumi.sh)", pulumiBinDir() !== undefined);

const DB_PASSWORD = `db-pw-${Math.random().toString(36).slice(2)}-PLAINTEXT`;
const MEASUREMENT = "c0ffee".repeat(16);
/** One engine operation on a loaded 2-core machine can take minutes (the runner's default is 4). */
const LONG = { timeoutMs: 600_000 };

describe.skipIf(!HAVE_ENGINE)("real Pulumi engine: Vhsm's default trust bootstrap (deployer credential)", () => {
  let tmp: string;
  let pulumi: PulumiRunner;
  let stack: string;
  let cfg: string[];
  let vhsmDir: string;
  const savedXdg = process.env.XDG_CONFIG_HOME;
  let outputs: { url: string; caFingerprint: string; deployer: DeployerAuth; recoveryShares: string[] };
  const dc = () => ({ url: outputs.url, deployer: outputs.deployer, caFingerprint: outputs.caFingerprint });

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "bk-pulumi-boot-"));
    vhsmDir = path.join(tmp, "vhsm");
    // The key files go to <XDG_CONFIG_HOME>/buckypaper, here inside tmp (the engine inherits the variable).
    process.env.XDG_CONFIG_HOME = path.join(tmp, "config");
    pulumi = pulumiRunner({ programDir: PROGRAM, stateDir: path.join(tmp, "state"), passphrase: "engine-boot-test" });
    stack = `b${process.pid}`;
    cfg = ["--stack", stack, "--config-file", path.join(tmp, "Pulumi.stack.yaml")];
    mkdirSync(path.join(tmp, "state"), { recursive: true });
    await pulumi.ok(["stack", "init", stack]);
    await pulumi.ok(["config", "set", ...cfg, "stateDir", vhsmDir]);
    await pulumi.ok(["config", "set", ...cfg, "port", String(await freePort())]);
    await pulumi.ok(["config", "set", ...cfg, "measurement", MEASUREMENT]);
    await pulumi.ok(["config", "set", ...cfg, "--secret", "dbPassword", DB_PASSWORD]);
  }, 120_000);

  afterAll(async () => {
    if (pulumi) {
      await pulumi.run(["destroy", "--yes", ...cfg]);
      await pulumi.run(["stack", "rm", "--yes", "--force", stack]);
    }
    if (savedXdg === undefined) delete process.env.XDG_CONFIG_HOME;
    else process.env.XDG_CONFIG_HOME = savedXdg;
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 900_000);

  it("up bootstraps the runtime and registers everything with the deployer credential", async () => {
    await pulumi.ok(["up", "--yes", ...cfg], LONG);
    outputs = JSON.parse((await pulumi.ok(["stack", "output", "--json", "--show-secrets", "--stack", stack])).stdout);
    expect(outputs.deployer.keyFile.startsWith(path.join(tmp, "config", "buckypaper", "deployer"))).toBe(true);
    expect(outputs.deployer.audience).toMatch(/^buckypaper-deployer:[0-9a-f]{32}$/);
    expect(statSync(outputs.deployer.keyFile).mode & 0o777).toBe(0o600);
    expect(outputs.recoveryShares).toHaveLength(1);
    expect((outputs as unknown as { rootToken?: string }).rootToken ?? undefined).toBeUndefined(); // null or absent
    // Registered: the workload and the secret's metadata (version 1) are there...
    const wl = (await runtimeRequest(dc(), "GET", "nitride/workloads/web-1")).body as {
      data: { reference_values: { snp_measurements: string[] } };
    };
    expect(wl.data.reference_values.snp_measurements).toEqual([MEASUREMENT]);
    const meta = (await runtimeRequest(dc(), "GET", "secret/metadata/web/db")).body as {
      data: { current_version: number };
    };
    expect(meta.data.current_version).toBe(1);
    // ...but the credential that wrote the secret cannot read it, nor issue the workload's certificate.
    for (const [m, p, b] of [
      ["GET", "secret/data/web/db", undefined],
      ["POST", "pki/issue/web", { common_name: "web.internal" }],
      ["PUT", "sys/policies/acl/bk-deployer", { policy: 'path "*" { capabilities = ["read"] }' }],
    ] as const) {
      const e = await runtimeRequest(dc(), m, p, b).catch((x: unknown) => x);
      expect(e, `${m} ${p}`).toBeInstanceOf(RuntimeApiError);
      expect((e as RuntimeApiError).status).toBe(403);
    }
  }, 900_000);

  it("a second up finds nothing to change", async () => {
    await pulumi.ok(["up", "--yes", "--expect-no-changes", ...cfg], LONG);
  }, 600_000);

  it("a refresh (Secret follows the version in metadata, its value unreadable) and a preview find nothing to change", async () => {
    await pulumi.ok(["refresh", "--yes", "--expect-no-changes", ...cfg], LONG);
    await pulumi.ok(["preview", "--expect-no-changes", ...cfg], LONG);
  }, 600_000);

  it("the exported state holds no token, no recovery share in clear and no private key", async () => {
    const exported = (await pulumi.ok(["stack", "export", "--show-secrets", "--stack", stack])).stdout;
    const files = allText(path.join(tmp, "state"));
    expect(exported).toContain("web-1"); // we are looking at the right document
    const share = await decryptShare(
      outputs.recoveryShares[0],
      JSON.parse(
        readFileSync(
          path.join(
            tmp,
            "config",
            "buckypaper",
            "recovery",
            path.basename(outputs.deployer.keyFile).replace(/\.pem$/, ".jwk"),
          ),
          "utf8",
        ),
      ),
    );
    const deployerKey = readFileSync(outputs.deployer.keyFile, "utf8");
    const deployerKeyBody = deployerKey.split("\n")[1];
    for (const text of [exported, files]) {
      expect(text).not.toMatch(/hvs\.[A-Za-z0-9_-]{20,}/); // no runtime token of any kind (root, deployer)
      expect(text).not.toContain(share.key);
      expect(text).not.toContain(Buffer.from(share.key, "base64").toString("hex"));
      expect(text).not.toContain(deployerKeyBody);
    }
    // (`export --show-secrets` decrypts the Secret resource's value, which Pulumi keeps encrypted on disk.)
    expect(files).not.toContain(DB_PASSWORD);
    expect(exported).toContain(outputs.recoveryShares[0]); // the share is there, as ciphertext only
  }, 120_000);

  it("a crashed runtime is restarted and unsealed by the next up (the local recovery key)", async () => {
    const pid = Number(readFileSync(path.join(vhsmDir, "runtime.pid"), "utf8"));
    process.kill(pid, "SIGKILL");
    const r = await pulumi.ok(["up", "--yes", ...cfg], LONG);
    expect(r.stdout).toMatch(/RuntimeService\s+vhsm-runtime\s+updated/);
    forgetDeployerTokens();
    expect((await runtimeRequest(dc(), "GET", "nitride/workloads/web-1")).status).toBe(200);
  }, 900_000);

  it("changing deployerKeyRotation rotates the key: the old one is refused, the next up finds nothing to change", async () => {
    const before = readFileSync(outputs.deployer.keyFile, "utf8");
    await pulumi.ok(["config", "set", ...cfg, "deployerKeyRotation", "2026-12"]);
    await pulumi.ok(["up", "--yes", ...cfg], LONG);
    const after = readFileSync(outputs.deployer.keyFile, "utf8");
    expect(after).not.toBe(before);
    // The old key's JWT, sent over the pinned connection, is refused; the new key in the file works.
    const e = await runtimeRequest(
      { url: outputs.url, token: "-", caFingerprint: outputs.caFingerprint },
      "POST",
      "auth/bk-deployer/login",
      { role: "deployer", jwt: await signDeployerJwt(createPrivateKey(before), undefined, outputs.deployer.audience) },
    ).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RuntimeApiError);
    expect((e as RuntimeApiError).status).toBe(403);
    forgetDeployerTokens();
    expect((await runtimeRequest(dc(), "GET", "auth/token/lookup-self")).status).toBe(200);
    await pulumi.ok(["up", "--yes", "--expect-no-changes", ...cfg], LONG);
  }, 900_000);

  it("destroy stops the runtime and removes its key files", async () => {
    const recoveryDir = path.join(tmp, "config", "buckypaper", "recovery");
    await pulumi.ok(["destroy", "--yes", ...cfg], LONG);
    expect(existsSync(vhsmDir)).toBe(false);
    expect(existsSync(outputs.deployer.keyFile)).toBe(false);
    expect(existsSync(recoveryDir) ? readdirSync(recoveryDir) : []).toEqual([]);
  }, 900_000);
});
