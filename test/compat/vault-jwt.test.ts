// A real Vault v1.21.4 dev server (`vault server -dev`) logs in Nitride workload tokens with exactly the
// commands docs/nitride.md shows ("Trusting Nitride tokens from an external Vault"): through OIDC discovery
// and through the JWKS. The commands and role.json are read from the
// doc; only the example URL becomes the test runtime's (plain HTTP here, see beforeAll).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { requireTool } from "../support/prereq.js";
import { createRuntimeCa } from "../../runtime/server/http/tls.js";
import { freePort } from "../support/net.js";
import { repoRoot } from "../support/shared.js";
import { attestAs, startNitrideStack, type NitrideStack } from "../runtime/server/nitride/nitride-support.js";
import { shellBlocks } from "../support/markdown.js";
import { VAULT_BIN } from "./vault-support.js";

const haveVault = requireTool(`the Vault CLI v1.21.4 (${VAULT_BIN})`, existsSync(VAULT_BIN));

/** The doc section's sh blocks and its role.json. */
function docSection() {
  const doc = readFileSync(path.join(repoRoot, "docs/nitride.md"), "utf8");
  const start = doc.indexOf("## Trusting Nitride tokens from an external Vault");
  const section = doc.slice(start, doc.indexOf("\n## ", start + 10));
  const json = /`role\.json`[^\n]*\n(?:[^\n]*\n)*?```json\n([\s\S]*?)```/.exec(section)?.[1];
  return { blocks: shellBlocks(section), roleJson: json };
}

function bash(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn("bash", ["-c", script], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("close", (code) => resolve({ code: code ?? -1, out }));
  });
}

describe.runIf(haveVault)("a real Vault dev server trusts Nitride tokens (docs/nitride.md as written)", () => {
  let s: NitrideStack;
  let dir: string;
  let devVault: ChildProcess | undefined;
  const section = docSection();

  beforeAll(async () => {
    // The test runtime's api() helper speaks plain HTTP, so discovery and the JWKS are fetched over
    // http://127.0.0.1 here; runtime-ca.pem is then a real CA certificate that Vault parses but does not
    // need (TLS pinning of the runtime is covered by the vault CLI suite and the enclaivelet tests).
    s = await startNitrideStack();
    dir = mkdtempSync(path.join(tmpdir(), "bk-vaultjwt-"));
    writeFileSync(path.join(dir, "runtime-ca.pem"), (await createRuntimeCa("vault-jwt test CA")).certPem);
    // The doc's role binds `buckypaper-nitride:<mount uuid>:web`; the reader takes the uuid from
    // `nitride/config`'s default_audience, as the doc says, and so does the test.
    // The shared stack configures the audience "buckypaper" for its own login tests; the doc describes
    // the default, which `audience=""` restores.
    expect((await s.rt.api("PUT", "nitride/config", { audience: "" })).status).toBeLessThan(300);
    const cfg = await s.rt.api("GET", "nitride/config");
    const audience = cfg.body.data.default_audience as string;
    expect(audience).toMatch(/^buckypaper-nitride:[0-9a-f-]{36}$/);
    writeFileSync(
      path.join(dir, "role.json"),
      (section.roleJson ?? "").replaceAll("buckypaper-nitride:<mount uuid>", audience),
    );
  }, 120_000);
  afterAll(async () => {
    devVault?.kill("SIGTERM");
    await s?.rt.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startDevVault(): Promise<string> {
    devVault?.kill("SIGTERM");
    const port = await freePort();
    const p = spawn(
      VAULT_BIN,
      ["server", "-dev", "-dev-root-token-id=root", `-dev-listen-address=127.0.0.1:${port}`, "-dev-no-store-token"],
      { env: { PATH: process.env.PATH, HOME: dir }, stdio: ["ignore", "pipe", "pipe"] },
    );
    devVault = p;
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`vault server -dev did not start:\n${out}`)), 60_000);
      const on = (d: Buffer) => {
        out += d;
        if (/Root Token: root/.test(out)) {
          clearTimeout(t);
          resolve();
        }
      };
      p.stdout!.on("data", on);
      p.stderr!.on("data", on);
    });
    return `http://127.0.0.1:${port}`;
  }

  it("the doc has a discovery block, a JWKS block and role.json without numeric claim mappings", () => {
    expect(section.blocks).toHaveLength(2);
    expect(section.blocks[0].commands.join("\n")).toMatch(/oidc_discovery_url=/);
    expect(section.blocks[1].commands.join("\n")).toMatch(/jwks_url=/);
    const role = JSON.parse(section.roleJson!);
    expect(Object.keys(role.claim_mappings)).not.toContain("ref_version");
  });

  for (const [i, via] of [
    [0, "OIDC discovery"],
    [1, "the JWKS"],
  ] as const) {
    it(`logs in with a Nitride token through ${via}`, { timeout: 120_000 }, async () => {
      const addr = await startDevVault();
      const a = await attestAs(s, "web");
      expect(a.status).toBe(200);
      const script = ["set -euo pipefail", ...section.blocks[i].commands]
        .join("\n")
        .replaceAll("https://runtime.example:8200", s.rt.url);
      const env = {
        PATH: `${path.dirname(VAULT_BIN)}:${process.env.PATH}`,
        HOME: dir,
        VAULT_ADDR: addr,
        VAULT_TOKEN: "root",
        NITRIDE_TOKEN: a.body.data.token as string,
      };
      const r = await bash(script, dir, env);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/token_policies\s+\["default" "web"\]/);
      // The same commands refuse another workload's token (bound_subject web).
      const other = await attestAs(s, "other", { measurement: "b2".repeat(48) });
      const refused = await bash(
        `vault write auth/jwt/login role=web-attested jwt=${other.body.data.token as string}`,
        dir,
        env,
      );
      expect(refused.code).toBe(2);
    });
  }

  // ML-DSA-65 keys (kty AKP, RFC 9964): Vault 1.21.4 (go-jose) refuses a JWKS that contains one ("error
  // checking jwks URL"), so nitride/jwks leaves them out and publishes them at nitride/jwks/pq.
  it("with an ML-DSA-65 signing key live: ES384 tokens still log in (discovery and JWKS), ML-DSA-65 tokens are refused", async () => {
    const put = await s.rt.api("PUT", "nitride/workloads/pq-vault", {
      reference_values: { snp_measurements: ["a1".repeat(48)] },
      secrets: { kv: [] },
      token_algorithm: "ML-DSA-65",
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const pq = await attestAs(s, "pq-vault");
    expect(pq.status).toBe(200);
    const keys = async (p: string) =>
      ((await (await fetch(`${s.rt.url}/v1/nitride/${p}`)).json()) as { keys: Array<{ kty: string }> }).keys;
    expect((await keys("jwks/pq")).map((k) => k.kty)).toContain("AKP");
    expect((await keys("jwks")).map((k) => k.kty)).not.toContain("AKP");
    for (const block of section.blocks) {
      const addr = await startDevVault();
      const a = await attestAs(s, "web");
      const script = ["set -euo pipefail", ...block.commands]
        .join("\n")
        .replaceAll("https://runtime.example:8200", s.rt.url);
      const env = {
        PATH: `${path.dirname(VAULT_BIN)}:${process.env.PATH}`,
        HOME: dir,
        VAULT_ADDR: addr,
        VAULT_TOKEN: "root",
        NITRIDE_TOKEN: a.body.data.token as string,
      };
      const r = await bash(script, dir, env);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/token_policies\s+\["default" "web"\]/);
      const refused = await bash(
        `vault write auth/jwt/login role=web-attested jwt=${pq.body.data.token as string}`,
        dir,
        env,
      );
      expect(refused.code, refused.out).toBe(2);
    }
  }, 240_000);
});
