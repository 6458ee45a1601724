// The real HashiCorp Vault CLI (v1.21.4, built from the Go module proxy by ../shared/tools/vault-cli/build.sh;
// .ci/run builds it through scripts/ci-deps.sh) against `buckypaper runtime dev`, `runtime dev --tls` and
// `runtime server` (TLS through the runtime CA; init, unseal, seal, status). Each ordinary command is its
// own test with the exit code and output a script would check; the runtime runs as the real CLI process.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";

import { tmpdir } from "node:os";
import path from "node:path";
import { requireTool } from "../support/prereq.js";
import { VAULT_BIN, vault } from "./vault-support.js";

const haveVault = requireTool(`the Vault CLI v1.21.4 (${VAULT_BIN})`, existsSync(VAULT_BIN));
import { freePort } from "../support/net.js";
import { repoRoot } from "../support/shared.js";

/** Starts `buckypaper runtime …` as a process and waits for the line that says it listens. */
function startRuntime(args: string[], ready: RegExp): Promise<{ proc: ChildProcess; out: () => string }> {
  // BK_COMPAT_RUNTIME_BIN: another checkout's bin/buckypaper.js (to count what passed before a change).
  const bin = process.env.BK_COMPAT_RUNTIME_BIN ?? path.join(repoRoot, "bin/buckypaper.js");
  const proc = spawn(process.execPath, [bin, "runtime", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`runtime did not start:\n${out}`)), 60_000);
    const onData = (d: Buffer) => {
      out += d;
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve({ proc, out: () => out });
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.on("exit", (c) => reject(new Error(`runtime exited ${c}:\n${out}`)));
  });
}

/** One ordinary command: the vault CLI's arguments, and what a script would check. */
interface Step {
  args: string[];
  /** Expected exit code (default 0). */
  code?: number;
  /** stdout (or stderr for a failure) must match. */
  match?: RegExp;
  stdin?: string;
  /** Runs without VAULT_TOKEN: the token helper (~/.vault-token written by `vault login`) supplies it. */
  helper?: boolean;
}

const POLICY = `path "secret/data/app/*" { capabilities = ["read", "list"] }\npath "sys/leases/*" { capabilities = ["update"] }\n`;

/** The ordinary commands, in order (later ones use what earlier ones made). */
function steps(dir: string): Step[] {
  writeFileSync(path.join(dir, "app.hcl"), POLICY);
  writeFileSync(path.join(dir, "payload.json"), JSON.stringify({ data: { answer: "42" } }));
  return [
    { args: ["status"], match: /Sealed\s+false/ },
    { args: ["status", "-format=json"], match: /"sealed": false/ },
    { args: ["read", "sys/leader"], match: /ha_enabled/ },
    { args: ["read", "sys/health"], match: /initialized\s+true/ },
    { args: ["operator", "key-status"], match: /Key Term\s+1/ },
    { args: ["read", "sys/host-info"], match: /cpu|host/ },
    { args: ["token", "lookup"], match: /policies\s+\[root\]/ },
    { args: ["token", "lookup", "-format=json"], match: /"id": "\S+"/ },
    { args: ["login", "ROOT"], match: /Success! You are now authenticated/ },
    { args: ["token", "lookup"], helper: true, match: /policies\s+\[root\]/ },
    { args: ["policy", "write", "app", path.join(dir, "app.hcl")], match: /Success! Uploaded policy: app/ },
    { args: ["policy", "list"], match: /app/ },
    { args: ["policy", "read", "app"], match: /secret\/data\/app/ },
    { args: ["policy", "fmt", path.join(dir, "app.hcl")], match: /Success! Formatted policy/ },
    { args: ["secrets", "list"], match: /secret\/\s+kv/ },
    { args: ["secrets", "list", "-detailed"], match: /secret\// },
    { args: ["kv", "put", "secret/app/db", "password=s3cret", "user=app"], match: /version\s+1/ },
    { args: ["kv", "get", "secret/app/db"], match: /password\s+s3cret/ },
    { args: ["kv", "get", "-field=password", "secret/app/db"], match: /^s3cret$/ },
    { args: ["kv", "get", "-format=json", "secret/app/db"], match: /"password": "s3cret"/ },
    { args: ["kv", "put", "secret/app/db", "password=v2", "user=app"], match: /version\s+2/ },
    { args: ["kv", "patch", "secret/app/db", "extra=x"], match: /version\s+3/ },
    { args: ["kv", "get", "-version=1", "secret/app/db"], match: /password\s+s3cret/ },
    { args: ["kv", "list", "secret/app"], match: /db/ },
    { args: ["kv", "metadata", "get", "secret/app/db"], match: /current_version\s+3/ },
    { args: ["kv", "metadata", "put", "-max-versions=5", "secret/app/db"], match: /Success/ },
    { args: ["kv", "rollback", "-version=1", "secret/app/db"], match: /version\s+4/ },
    { args: ["kv", "delete", "secret/app/db"], match: /Success/ },
    { args: ["kv", "undelete", "-versions=4", "secret/app/db"], match: /Success/ },
    { args: ["kv", "destroy", "-versions=1", "secret/app/db"], match: /Success/ },
    { args: ["kv", "put", "secret/app/json", `@${path.join(dir, "payload.json")}`], match: /version\s+1/ },
    { args: ["kv", "put", "secret/app/stdin", "-"], stdin: '{"k":"from-stdin"}', match: /version\s+1/ },
    { args: ["kv", "metadata", "delete", "secret/app/stdin"], match: /Success/ },
    { args: ["write", "secret/data/raw", `@${path.join(dir, "payload.json")}`], match: /version\s+1/ },
    { args: ["read", "-format=json", "secret/data/app/db"], match: /"extra"|"password"/ },
    { args: ["list", "secret/metadata/app"], match: /db/ },
    { args: ["token", "create", "-policy=app", "-ttl=1h", "-format=json"], match: /"client_token"/ },
    { args: ["token", "create", "-policy=app", "-period=1h", "-format=json"], match: /"lease_duration": 3600/ },
    {
      args: ["token", "create", "-orphan", "-use-limit=3", "-policy=app"],
      match: /token_policies\s+\["app" "default"\]/,
    },
    { args: ["token", "capabilities", "secret/data/app/x"], match: /root/ },
    { args: ["write", "sys/capabilities-self", "paths=secret/data/app/x"], match: /capabilities\s+\[root\]/ },
    { args: ["auth", "list"], match: /token\/\s+token/ },
    { args: ["auth", "enable", "-path=jwt2", "jwt"], match: /Success! Enabled jwt auth method at: jwt2\// },
    { args: ["auth", "tune", "-default-lease-ttl=30m", "jwt2/"], match: /Success! Tuned the auth method at: jwt2\// },
    { args: ["read", "sys/auth/jwt2/tune"], match: /default_lease_ttl\s+1800|30m/ },
    { args: ["auth", "disable", "jwt2"], match: /Success! Disabled the auth method/ },
    { args: ["secrets", "enable", "-path=kv2", "-version=2", "kv"], match: /Success! Enabled the kv secrets engine/ },
    { args: ["secrets", "tune", "-max-lease-ttl=2h", "kv2/"], match: /Success! Tuned the secrets engine at: kv2\// },
    { args: ["secrets", "move", "kv2/", "kv3/"], match: /Success! Finished moving secrets engine kv2\/ to kv3\// },
    { args: ["secrets", "disable", "kv3/"], match: /Success! Disabled the secrets engine/ },
    { args: ["secrets", "enable", "transit"], match: /Success/ },
    { args: ["write", "-f", "transit/keys/app"], code: 0 },
    {
      args: ["write", "-field=ciphertext", "transit/encrypt/app", `plaintext=${Buffer.from("hi").toString("base64")}`],
      match: /^vault:v1:/,
    },
    { args: ["write", "-f", "transit/keys/app/rotate"], code: 0 },
    { args: ["read", "transit/keys/app"], match: /latest_version\s+2/ },
    { args: ["write", "-f", "transit/datakey/plaintext/app"], match: /ciphertext\s+vault:v2:/ },
    { args: ["list", "transit/keys"], match: /app/ },
    { args: ["secrets", "enable", "pki"], match: /Success/ },
    { args: ["secrets", "tune", "-max-lease-ttl=87600h", "pki"], match: /Success/ },
    {
      args: ["write", "pki/root/generate/internal", "common_name=Test Root", "ttl=87600h"],
      match: /BEGIN CERTIFICATE/,
    },
    {
      args: ["write", "pki/roles/web", "allowed_domains=example.com", "allow_subdomains=true", "max_ttl=72h"],
      code: 0,
    },
    { args: ["write", "pki/issue/web", "common_name=a.example.com"], match: /private_key/ },
    { args: ["write", "pki/issue/web", "common_name=b.example.com", "ttl=1h"], match: /serial_number/ },
    { args: ["read", "pki/cert/ca"], match: /BEGIN CERTIFICATE/ },
    { args: ["list", "pki/certs"], code: 0 },
    { args: ["secrets", "enable", "ssh"], match: /Success/ },
    { args: ["write", "ssh/config/ca", "generate_signing_key=true"], match: /public_key/ },
    { args: ["read", "-field=public_key", "ssh/config/ca"], match: /^ssh-|^ecdsa-/ },
    { args: ["audit", "enable", "file", `file_path=${path.join(dir, "audit.log")}`], match: /Success/ },
    { args: ["audit", "list"], match: /file/ },
    { args: ["audit", "disable", "file"], match: /Success/ },
    { args: ["path-help", "secret/"], match: /\S/ },
    // Response wrapping and leases are not implemented: a clear refusal, never the secret in clear.
    { args: ["kv", "get", "-wrap-ttl=5m", "secret/app/db"], code: 2, match: /response wrapping .* not supported/ },
    { args: ["write", "sys/wrapping/wrap", "foo=bar"], code: 2, match: /response wrapping .*not supported/ },
    { args: ["lease", "lookup", "pki/issue/web/x"], code: 2, match: /leases are not implemented/ },
    { args: ["lease", "renew", "pki/issue/web/x"], code: 2, match: /leases are not implemented/ },
    { args: ["lease", "revoke", "pki/issue/web/x"], code: 2, match: /leases are not implemented/ },
    { args: ["policy", "delete", "app"], match: /Success! Deleted policy: app/ },
    { args: ["token", "revoke", "-self"], code: 0, helper: true },
  ];
}

interface Target {
  name: string;
  addr: string;
  token: string;
  cacert?: string;
  close: () => Promise<void>;
}

/** Runs every step against one runtime and reports each one. */
function suite(name: string, start: (dir: string) => Promise<Target>) {
  describe.runIf(haveVault)(`vault CLI against ${name}`, () => {
    let t: Target;
    let dir: string;
    let env: NodeJS.ProcessEnv;
    const vars: Record<string, string> = {};
    beforeAll(async () => {
      dir = mkdtempSync(path.join(tmpdir(), "bk-vaultcli-"));
      t = await start(dir);
      env = {
        PATH: process.env.PATH,
        HOME: dir,
        VAULT_ADDR: t.addr,
        VAULT_TOKEN: t.token,
        ...(t.cacert ? { VAULT_CACERT: t.cacert } : {}),
      };
      vars.ROOT = t.token;
    }, 120_000);
    afterAll(async () => {
      await t?.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const list = steps(mkdtempSync(path.join(tmpdir(), "bk-vaultcli-files-")));
    for (const s of list) {
      it(`vault ${s.args.join(" ").replace(/\/tmp\/\S+\//g, "")}`, async () => {
        const args = s.args.map((a) => vars[a] ?? a);
        const e = { ...env };
        if (s.helper) delete e.VAULT_TOKEN;
        const r = await vault(args, e, s.stdin);
        const shown = `exit ${r.code}\nstdout: ${r.out.slice(0, 1500)}\nstderr: ${r.err.slice(0, 1500)}`;
        expect(r.code, shown).toBe(s.code ?? 0);
        if (s.match) expect(r.code === 0 ? r.out.trim() : r.err, shown).toMatch(s.match);
      });
    }
  });
}

suite("runtime dev", async () => {
  const port = await freePort();
  const rt = await startRuntime(["dev", "--listen", `127.0.0.1:${port}`, "--root-token-id", "root-dev"], /Root Token/);
  return {
    name: "dev",
    addr: `http://127.0.0.1:${port}`,
    token: "root-dev",
    close: async () => void rt.proc.kill("SIGTERM"),
  };
});

suite("runtime dev --tls", async (dir) => {
  const port = await freePort();
  const rt = await startRuntime(
    ["dev", "--tls", "--listen", `127.0.0.1:${port}`, "--root-token-id", "root-tls"],
    /-----END CERTIFICATE-----/,
  );
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(rt.out())![0];
  const cacert = path.join(dir, "ca.pem");
  writeFileSync(cacert, pem + "\n");
  return {
    name: "dev-tls",
    addr: `https://127.0.0.1:${port}`,
    token: "root-tls",
    cacert,
    close: async () => void rt.proc.kill("SIGTERM"),
  };
});

/** `runtime server` on SQLite with TLS: the vault CLI initialises, unseals, seals and unseals it again. */
describe.runIf(haveVault)("vault CLI: operator lifecycle against runtime server", () => {
  it("operator init / unseal / status / seal / unseal with the runtime CA", { timeout: 120_000 }, async () => {
    const { boot, env, close } = await startServerForVaultCli();
    try {
      let r = await vault(["status"], boot);
      expect(r.code, r.err + r.out).toBe(2); // Vault: 2 = sealed / not initialised
      expect(r.out).toMatch(/Initialized\s+false/);
      r = await vault(["operator", "init", "-key-shares=3", "-key-threshold=2", "-format=json"], boot);
      expect(r.code, r.err).toBe(0);
      const init = JSON.parse(r.out);
      expect(init.unseal_keys_b64).toHaveLength(3);
      // …and after init the runtime CA, which the operator now trusts for good.
      expect(readFileSync(env.VAULT_CACERT, "utf8")).toMatch(/BEGIN CERTIFICATE/);
      r = await vault(["operator", "unseal", init.unseal_keys_b64[0]], env);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/Unseal Progress\s+1\/2/);
      r = await vault(["operator", "unseal", init.unseal_keys_b64[1]], env);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/Sealed\s+false/);
      r = await vault(["status"], env);
      expect(r.code, r.err).toBe(0);
      const authed = { ...env, VAULT_TOKEN: init.root_token };
      r = await vault(["operator", "key-status"], authed);
      expect(r.code, r.err).toBe(0);
      r = await vault(["kv", "put", "secret/x", "a=b"], authed);
      // a server starts with no secret engine: enable KV v2 first, as with Vault
      if (r.code !== 0) {
        expect((await vault(["secrets", "enable", "-path=secret", "kv-v2"], authed)).code).toBe(0);
        r = await vault(["kv", "put", "secret/x", "a=b"], authed);
      }
      expect(r.code, r.err).toBe(0);
      // The operator path when no root token is left (as after Vhsm's default bootstrap): a quorum of
      // share holders mints a new one with generate-root; the CLI decodes it with the OTP it was given.
      expect((await vault(["token", "revoke", "-self"], authed)).code).toBe(0);
      expect((await vault(["token", "lookup"], authed)).code).toBe(2);
      r = await vault(["operator", "generate-root", "-status", "-format=json"], env);
      expect(r.code, r.err).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ started: false, required: 2, otp_length: 36 });
      r = await vault(["operator", "generate-root", "-init", "-format=json"], env);
      expect(r.code, r.err).toBe(0);
      const dropped = JSON.parse(r.out).nonce as string;
      r = await vault(["operator", "generate-root", "-cancel"], env);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/Root token generation canceled/);
      r = await vault(["operator", "generate-root", "-init", "-format=json"], env);
      expect(r.code, r.err).toBe(0);
      const gen = JSON.parse(r.out) as { nonce: string; otp: string };
      expect(gen.nonce).not.toBe(dropped);
      expect(gen.otp).toHaveLength(36);
      r = await vault(["operator", "generate-root", `-nonce=${dropped}`, init.unseal_keys_b64[0]], env);
      expect(r.code).toBe(2); // the cancelled attempt's nonce
      r = await vault(["operator", "generate-root", `-nonce=${gen.nonce}`, init.unseal_keys_b64[0]], env);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/Progress\s+1\/2/);
      r = await vault(
        ["operator", "generate-root", `-nonce=${gen.nonce}`, "-format=json", init.unseal_keys_b64[2]],
        env,
      );
      expect(r.code, r.err).toBe(0);
      const done = JSON.parse(r.out) as { complete: boolean; encoded_token: string };
      expect(done.complete).toBe(true);
      r = await vault(["operator", "generate-root", `-decode=${done.encoded_token}`, `-otp=${gen.otp}`], env);
      expect(r.code, r.err).toBe(0);
      const newRoot = r.out.trim();
      expect(newRoot).toMatch(/^hvs\./);
      authed.VAULT_TOKEN = newRoot;
      r = await vault(["token", "lookup"], authed);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/policies\s+\[root\]/);
      r = await vault(["operator", "seal"], authed);
      expect(r.code, r.err).toBe(0);
      r = await vault(["status"], env);
      expect(r.code).toBe(2);
      expect(r.out).toMatch(/Sealed\s+true/);
      for (const k of init.unseal_keys_b64.slice(0, 2))
        expect((await vault(["operator", "unseal", k], env)).code).toBe(0);
      r = await vault(["kv", "get", "-field=a", "secret/x"], authed);
      expect(r.out.trim()).toBe("b");
      // Rekey: the quorum replaces the shares (3/2 → 4/3); after a seal the old ones are refused, the new ones unseal.
      r = await vault(["operator", "rekey", "-status", "-format=json"], env);
      expect(r.code, r.err).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ started: false, required: 2 });
      r = await vault(["operator", "rekey", "-init", "-key-shares=4", "-key-threshold=3", "-format=json"], env);
      expect(r.code, r.err).toBe(0);
      const dropRekey = JSON.parse(r.out) as { nonce: string };
      r = await vault(["operator", "rekey", "-cancel"], env);
      expect(r.code).toBe(2); // Vault 1.21: a fresh rekey is cancelled only with its nonce
      expect(r.err).toMatch(/needs its nonce/);
      r = await vault(["operator", "rekey", "-cancel", `-nonce=${dropRekey.nonce}`], env);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/Success! Canceled rekeying/);
      r = await vault(["operator", "rekey", "-init", "-key-shares=4", "-key-threshold=3"], env);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/Rekey Progress\s+0\/2/);
      expect(r.out).toMatch(/New Shares\s+4/);
      expect(r.out).toMatch(/New Threshold\s+3/);
      const rekeyNonce = /Nonce\s+(\S+)/.exec(r.out)![1];
      r = await vault(["operator", "rekey", `-nonce=${dropRekey.nonce}`, init.unseal_keys_b64[0]], env);
      expect(r.code).toBe(2); // the cancelled attempt's nonce
      r = await vault(["operator", "rekey", `-nonce=${rekeyNonce}`, init.unseal_keys_b64[0]], env);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/Rekey Progress\s+1\/2/);
      r = await vault(["operator", "rekey", `-nonce=${rekeyNonce}`, init.unseal_keys_hex[2]], env);
      expect(r.code, r.err).toBe(0);
      const newKeys = [...r.out.matchAll(/^Key \d+: (\S+)$/gm)].map((m) => m[1]);
      expect(newKeys).toHaveLength(4);
      expect(r.out).toMatch(/rekeyed with 4 key shares and a key threshold of 3/);
      r = await vault(["operator", "rekey", `-nonce=${rekeyNonce}`, init.unseal_keys_b64[1]], env);
      expect(r.code).toBe(1); // the completed attempt is gone: "No rekey is in progress"
      r = await vault(["status", "-format=json"], env);
      expect(JSON.parse(r.out)).toMatchObject({ t: 3, n: 4, sealed: false });
      expect((await vault(["operator", "seal"], authed)).code).toBe(0);
      for (const k of init.unseal_keys_b64.slice(0, 2))
        expect((await vault(["operator", "unseal", k], env)).code).toBe(0);
      r = await vault(["operator", "unseal", init.unseal_keys_b64[2]], env);
      expect(r.code).toBe(2); // three old shares: they do not open the rekeyed barrier
      expect(r.err).toMatch(/invalid key shares/);
      for (const k of newKeys.slice(1)) expect((await vault(["operator", "unseal", k], env)).code).toBe(0);
      r = await vault(["status"], env);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/Sealed\s+false/);
      r = await vault(["kv", "get", "-field=a", "secret/x"], authed);
      expect(r.out.trim()).toBe("b");
    } finally {
      close();
    }
  });

  it(
    "operator rekey -init -verify: the new shares are in force only after `rekey -verify`",
    { timeout: 120_000 },
    async () => {
      const { boot, env, close } = await startServerForVaultCli();
      try {
        let r = await vault(["operator", "init", "-key-shares=3", "-key-threshold=2", "-format=json"], boot);
        expect(r.code, r.err).toBe(0);
        const init = JSON.parse(r.out) as { unseal_keys_b64: string[]; root_token: string };
        for (const k of init.unseal_keys_b64.slice(0, 2))
          expect((await vault(["operator", "unseal", k], env)).code).toBe(0);
        const authed = { ...env, VAULT_TOKEN: init.root_token };
        r = await vault(["operator", "rekey", "-init", "-verify", "-key-shares=4", "-key-threshold=3"], env);
        expect(r.code, r.err).toBe(0);
        expect(r.out).toMatch(/Verification Required\s+true/);
        const nonce = /^Nonce\s+(\S+)/m.exec(r.out)![1];
        r = await vault(["operator", "rekey", `-nonce=${nonce}`, init.unseal_keys_b64[0]], env);
        expect(r.code, r.err).toBe(0);
        r = await vault(["operator", "rekey", `-nonce=${nonce}`, init.unseal_keys_b64[2]], env);
        expect(r.code, r.err).toBe(0);
        const newKeys = [...r.out.matchAll(/^Key \d+: (\S+)$/gm)].map((m) => m[1]);
        expect(newKeys).toHaveLength(4);
        expect(r.out).toMatch(/These will not be active until after verification is complete/);
        // the CLI follows with the verification status (Vault's RekeyVerificationStatusResponse)
        expect(r.out).toMatch(/Verification Progress\s+0\/3/);
        let vnonce = /Verification Nonce\s+(\S+)/.exec(r.out)![1];
        expect(vnonce).not.toBe(nonce);
        r = await vault(["operator", "rekey", "-status"], env);
        expect(r.out).toMatch(/Rekey Progress\s+2\/2 \(verification in progress\)/);
        expect(r.out).toContain(vnonce);
        // not in force yet: the old configuration; a wrong nonce or the old shares do not verify
        r = await vault(["status", "-format=json"], env);
        expect(JSON.parse(r.out)).toMatchObject({ t: 2, n: 3, sealed: false });
        r = await vault(["operator", "rekey", "-verify", `-nonce=${nonce}`, newKeys[0]], env);
        expect(r.code).toBe(2);
        expect(r.err).toMatch(/incorrect nonce supplied/);
        for (const k of init.unseal_keys_b64)
          r = await vault(["operator", "rekey", "-verify", `-nonce=${vnonce}`, k], env);
        expect(r.code).toBe(2);
        expect(r.err).toMatch(/rekey verification failed; incorrect key shares supplied/);
        // `rekey -cancel -verify` restarts the round (DELETE sys/rekey/verify): a new nonce, the rekey stays
        r = await vault(["operator", "rekey", "-verify", "-status", "-format=json"], env);
        const failed = JSON.parse(r.out) as { nonce: string; started: boolean; progress: number };
        expect(failed).toMatchObject({ started: true, progress: 0, t: 3, n: 4 });
        expect(failed.nonce).not.toBe(vnonce);
        r = await vault(["operator", "rekey", "-cancel", "-verify"], env);
        expect(r.code, r.err).toBe(0);
        r = await vault(["operator", "rekey", "-verify", "-status", "-format=json"], env);
        vnonce = (JSON.parse(r.out) as { nonce: string }).nonce;
        expect(vnonce).not.toBe(failed.nonce);
        r = await vault(["operator", "rekey", "-verify", `-nonce=${vnonce}`, newKeys[3]], env);
        expect(r.code, r.err).toBe(0);
        expect(r.out).toMatch(/Verification Progress\s+1\/3/);
        r = await vault(["operator", "rekey", "-verify", `-nonce=${vnonce}`, newKeys[0]], env);
        expect(r.code, r.err).toBe(0);
        r = await vault(["operator", "rekey", "-verify", `-nonce=${vnonce}`, newKeys[1]], env);
        expect(r.code, r.err).toBe(0);
        expect(r.out).toMatch(/Rekey verification successful/);
        r = await vault(["status", "-format=json"], env);
        expect(JSON.parse(r.out)).toMatchObject({ t: 3, n: 4, sealed: false });
        // in force: after a seal the old shares are refused and the new ones unseal
        expect((await vault(["operator", "seal"], authed)).code).toBe(0);
        for (const k of init.unseal_keys_b64) r = await vault(["operator", "unseal", k], env);
        expect(r.code).toBe(2);
        expect(r.err).toMatch(/invalid key shares/);
        for (const k of newKeys.slice(0, 3)) r = await vault(["operator", "unseal", k], env);
        expect(r.code, r.err).toBe(0);
        expect(r.out).toMatch(/Sealed\s+false/);
      } finally {
        close();
      }
    },
  );
});

/**
 * `runtime server` over TLS on SQLite for the vault CLI: `boot` trusts the throwaway certificate served before
 * init (its CA is written beside the runtime's), `env` the runtime CA written at init.
 */
async function startServerForVaultCli() {
  const dir = mkdtempSync(path.join(tmpdir(), "bk-vaultcli-server-"));
  const port = await freePort();
  const tlsDir = path.join(dir, "tls");
  const cfg = path.join(dir, "runtime.hcl");
  writeFileSync(
    cfg,
    `storage "sqlite" { path = "${dir}/rt.db" }\nlistener "tcp" { address = "127.0.0.1:${port}" tls_dir = "${tlsDir}" }\napi_addr = "https://127.0.0.1:${port}"\n` +
      // The rekey walks make ~25 sys/rekey/* calls (the CLI follows most with a status GET) from one client in a few
      // seconds, past the default burst of 20: a 429 there is the limiter working (test/security/rekey*.test.ts
      // tests it), not what these tests are about, so this server allows more.
      `rate_limit "sys/rekey/*" { per_second = 50  burst = 200 }\n`,
  );
  const rt = await startRuntime(["server", "--config", cfg], /listening on/);
  const base = { PATH: process.env.PATH, HOME: dir, VAULT_ADDR: `https://127.0.0.1:${port}` };
  return {
    boot: { ...base, VAULT_CACERT: path.join(tlsDir, "bootstrap-ca.pem") },
    env: { ...base, VAULT_CACERT: path.join(tlsDir, "ca.pem") },
    close: () => {
      rt.proc.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
