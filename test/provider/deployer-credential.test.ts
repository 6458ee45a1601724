// The deployer credential (provider/bootstrap.ts) against a real runtime over HTTP: bootstrap with the
// root token, which is then revoked (403); the deployer logs in with a one-minute JWT signed by its key
// file and can register what the components register — and, as a hostile client, cannot read secret
// values, issue PKI/SSH certificates, export or import CA keys, change its own or any policy, mint
// tokens, grant itself other policies through a JWT role, or touch Nitride's trust configuration.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startTestRuntime, type TestRuntime } from "../support/runtime.js";
import { bootstrapDeployer, rotateDeployerKey } from "../../provider/bootstrap.js";
import { dataOf, runtimeRequest, RuntimeApiError, type RuntimeConnection } from "../../provider/client.js";
import * as h from "../../provider/handlers.js";
import {
  DEPLOYER_KEY_ENV,
  forgetDeployerTokens,
  generateDeployerKey,
  signDeployerJwt,
  type DeployerAuth,
} from "../../runtime/client/deployer.js";
import { createPrivateKey } from "node:crypto";

let rt: TestRuntime;
let tmp: string;
let root: string;
let deployer: DeployerAuth;
let dc: RuntimeConnection;
/** An operator's read-only view (an orphan token made before root was revoked): to see that nothing changed. */
let op: RuntimeConnection;

const status = async (
  c: RuntimeConnection,
  method: "GET" | "POST" | "PUT" | "DELETE" | "LIST",
  p: string,
  body?: unknown,
) => {
  try {
    return (await runtimeRequest(c, method, p, body)).status;
  } catch (e) {
    if (e instanceof RuntimeApiError) return e.status;
    throw e;
  }
};

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bk-deployer-"));
  rt = await startTestRuntime({
    mounts: { "pki/": { type: "pki" }, "ssh/": { type: "ssh" } },
    auth: { "jwt/": { type: "jwt" } },
  });
  root = rt.rootToken;
  // What an operator set up before: a secret, a CA, an SSH CA, a role to issue from, a powerful policy.
  await rt.api("POST", "secret/data/prod/db", { data: { password: "operator-secret-7f3a" } });
  await rt.api("POST", "pki/root/generate/internal", { common_name: "ca", key_type: "ec", key_bits: 256 });
  await rt.api("POST", "pki/roles/web", { allowed_domains: ["web.internal"], allow_bare_domains: true });
  await rt.api("POST", "ssh/config/ca", { generate_signing_key: true });
  await rt.api("POST", "ssh/roles/host", { key_type: "ca", allow_host_certificates: true, allowed_domains: "x" });
  await rt.api("PUT", "sys/policies/acl/admin", { policy: 'path "*" { capabilities = ["read", "sudo"] }' });
  await rt.api("POST", "auth/jwt/config", { nitride_mount: "nitride" });
  await rt.api("PUT", "sys/policies/acl/operator-view", {
    policy: 'path "*" { capabilities = ["read", "list"] }',
  });
  const orphan = await rt.api("POST", "auth/token/create-orphan", { policies: ["operator-view"], ttl: "1h" });
  op = { url: rt.url, token: (orphan.body as { auth: { client_token: string } }).auth.client_token };
  deployer = await bootstrapDeployer({
    rootToken: root,
    url: rt.url,
    keyFile: path.join(tmp, "cfg", "deployer", "t.pem"),
    rootWrites: [{ path: "nitride/config", body: { kds: "off" } }],
  });
  dc = { url: rt.url, deployer };
}, 60_000);

afterAll(async () => {
  await rt?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  delete process.env[DEPLOYER_KEY_ENV];
});

describe("bootstrap", () => {
  it("revokes the root token: using it afterwards is a 403", async () => {
    expect(await status({ url: rt.url, token: root }, "GET", "auth/token/lookup-self")).toBe(403);
    expect(await status({ url: rt.url, token: root }, "GET", "secret/data/prod/db")).toBe(403);
    expect(await status({ url: rt.url, token: root }, "GET", "sys/policies/acl/admin")).toBe(403);
  });

  it("writes the deployer's private key 0600 in a 0700 directory, and applied the root-only writes", async () => {
    expect(statSync(deployer.keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(deployer.keyFile)).mode & 0o777).toBe(0o700);
    const self = (await runtimeRequest(dc, "GET", "auth/token/lookup-self")).body as {
      data: { policies: string[]; ttl: number; display_name: string };
    };
    expect(self.data.policies.sort()).toEqual(["bk-deployer", "default"]);
    expect(self.data.ttl).toBeGreaterThan(0);
    expect(self.data.ttl).toBeLessThanOrEqual(15 * 60);
  });

  it("refuses a key file others can read, and a JWT signed by another key", async () => {
    chmodSync(deployer.keyFile, 0o644);
    forgetDeployerTokens();
    await expect(runtimeRequest(dc, "GET", "auth/token/lookup-self")).rejects.toThrow(/readable by group or others/);
    chmodSync(deployer.keyFile, 0o600);
    const other = createPrivateKey(generateDeployerKey().privatePem);
    const r = await fetch(`${rt.url}/v1/auth/bk-deployer/login`, {
      method: "POST",
      body: JSON.stringify({ role: "deployer", jwt: await signDeployerJwt(other, undefined, deployer.audience) }),
    });
    expect(r.status).toBe(403);
    // An expired JWT from the right key is refused too.
    const { readFileSync } = await import("node:fs");
    const mine = createPrivateKey(readFileSync(deployer.keyFile, "utf8"));
    const old = await fetch(`${rt.url}/v1/auth/bk-deployer/login`, {
      method: "POST",
      body: JSON.stringify({
        role: "deployer",
        jwt: await signDeployerJwt(mine, Math.floor(Date.now() / 1000) - 600, deployer.audience),
      }),
    });
    expect(old.status).toBe(403);
  });
});

describe("what the deployer may do (what the components register)", () => {
  it("mounts, KV writes (version read from metadata), roles, CA generation, JWT roles, workloads", async () => {
    expect(await status(dc, "POST", "sys/mounts/kv2", { type: "kv", options: { version: "2" } })).toBe(204);
    const c = h.check("secret", { connection: dc, mount: "kv2", path: "app", data: { k: "v1" } });
    expect(c.failures).toEqual([]);
    const made = await h.create("secret", c.inputs);
    expect(made.outs.version).toBe(1);
    // refresh cannot read the value: it follows the version, and forgets the value when someone else wrote
    expect(await h.read("secret", made.id, made.outs)).toEqual({ id: made.id, props: made.outs });
    await runtimeRequest(dc, "POST", "kv2/data/app", { data: { k: "by-hand" } });
    const drift = await h.read("secret", made.id, made.outs);
    expect(drift.props.version).toBe(2);
    expect(drift.props.data).toBeUndefined(); // so the next `up` writes ours again
    expect(h.diff("secret", drift.props, c.inputs).changes).toBe(true);
    // destroy: the deployer may not delete metadata, so the current version is soft-deleted (undeletable)
    await h.remove("secret", made.id, drift.props);
    const meta = dataOf(await runtimeRequest(op, "GET", "kv2/metadata/app")) as {
      current_version: number;
      versions: Record<string, { deletion_time: string }>;
    };
    expect(meta.current_version).toBe(2);
    expect(meta.versions["2"].deletion_time).not.toBe("");
    expect(meta.versions["1"].deletion_time).toBe("");
    expect(await status(dc, "POST", "sys/mounts/pki2", { type: "pki" })).toBe(204);
    expect(await status(dc, "POST", "pki2/root/generate/internal", { common_name: "x", key_type: "ec" })).toBe(200);
    expect(await status(dc, "POST", "pki2/roles/vm", { allowed_domains: ["a.internal"] })).toBe(204);
    expect(await status(dc, "POST", "sys/mounts/ssh2", { type: "ssh" })).toBe(204);
    expect(await status(dc, "POST", "ssh2/config/ca", { generate_signing_key: true })).toBe(200);
    expect(await status(dc, "POST", "sys/mounts/transit2", { type: "transit" })).toBe(204);
    expect(await status(dc, "DELETE", "sys/mounts/transit2")).toBe(204);
    // the bodies the AuthMount and Mount resources send
    const am = h.check("authMount", { connection: dc, path: "jwt2", type: "jwt" });
    expect(am.failures).toEqual([]);
    await h.create("authMount", am.inputs);
    const mt = h.check("mount", { connection: dc, path: "transit3", type: "transit" });
    expect(mt.failures).toEqual([]);
    const made3 = await h.create("mount", mt.inputs);
    await h.remove("mount", made3.id, made3.outs);
    expect(await status(dc, "POST", "auth/jwt2/config", { nitride_mount: "nitride" })).toBe(204);
    expect(
      await status(dc, "POST", "auth/jwt2/role/workload", {
        bound_audiences: ["buckypaper"],
        user_claim: "sub",
        token_policies: ["nitride-workload-{{sub}}"],
        token_policies_template_claims: true,
      }),
    ).toBe(204);
    // A workload may be given KV values, a certificate and an SSH host certificate the deployer cannot get itself.
    const wl = await status(dc, "POST", "nitride/workloads/web-1", {
      platforms: ["snp"],
      reference_values: { snp_measurements: ["ab".repeat(48)] },
      secrets: {
        kv: ["secret/data/prod/db"],
        pki: { role: "pki/web", common_name: "web.internal" },
        ssh: { role: "ssh/host", principals: ["x"] },
        disk_key: true,
      },
    });
    expect([200, 204]).toContain(wl);
    expect(await status(dc, "GET", "nitride/workloads/web-1")).toBe(200);
    // ...and the delegate grant is no read grant.
    expect(await status(dc, "GET", "nitride/delegate/secret/data/prod/db")).toBe(403);
  });
});

const PUBLIC_PEM = generateDeployerKey().publicPem;

describe("hostile deployer: every escalation is refused", () => {
  const denied: Array<[string, "GET" | "POST" | "PUT" | "DELETE" | "LIST", string, unknown?]> = [
    ["read a secret value", "GET", "secret/data/prod/db"],
    ["read a secret's subkeys", "GET", "secret/subkeys/prod/db"],
    ["read its own write back", "GET", "kv2/data/app"],
    ["issue a PKI certificate", "POST", "pki/issue/web", { common_name: "web.internal" }],
    ["sign a CSR", "POST", "pki/sign/web", { csr: "x", common_name: "web.internal" }],
    ["export a new PKI root key", "POST", "pki/root/generate/exported", { common_name: "evil" }],
    ["sign an intermediate", "POST", "pki/root/sign-intermediate", { csr: "x" }],
    ["issue an SSH certificate", "POST", "ssh/sign/host", { public_key: "ssh-ed25519 AAAA", cert_type: "host" }],
    ["import an SSH CA key it knows", "POST", "ssh/config/ca", { private_key: "k", public_key: "p" }],
    [
      "rewrite its own policy",
      "PUT",
      "sys/policies/acl/bk-deployer",
      { policy: 'path "*" { capabilities = ["read"] }' },
    ],
    [
      "rewrite its own policy (old path)",
      "PUT",
      "sys/policy/bk-deployer",
      { policy: 'path "*" { capabilities = ["read"] }' },
    ],
    ["write a new policy", "PUT", "sys/policies/acl/mine", { policy: 'path "*" { capabilities = ["read"] }' }],
    ["read the admin policy", "GET", "sys/policies/acl/admin"],
    ["mint a child token with root", "POST", "auth/token/create", { policies: ["root"] }],
    ["mint a child token with its own policy", "POST", "auth/token/create", { policies: ["bk-deployer"] }],
    ["mint an orphan token", "POST", "auth/token/create-orphan", { policies: ["admin"] }],
    [
      "change its own role",
      "POST",
      "auth/bk-deployer/role/deployer",
      { token_policies: ["bk-deployer"], token_ttl: "768h", bound_audiences: ["buckypaper-deployer"] },
    ],
    [
      "grant a JWT role the admin policy",
      "POST",
      "auth/jwt/role/evil",
      { bound_audiences: ["x"], token_policies: ["admin"] },
    ],
    [
      "grant it through the comma form",
      "POST",
      "auth/jwt/role/evil",
      { bound_audiences: ["x"], token_policies: "nitride-workload-x,admin" },
    ],
    [
      "grant it through the legacy field",
      "POST",
      "auth/jwt/role/evil",
      { bound_audiences: ["x"], policies: ["admin"] },
    ],
    [
      "grant its own policy to a role it controls",
      "POST",
      "auth/jwt/role/evil",
      { bound_audiences: ["x"], token_policies: ["bk-deployer"] },
    ],
    ["trust simulated evidence", "PUT", "nitride/config", { accept_simulated: true }],
    ["rotate Nitride's signing keys", "POST", "nitride/keys/rotate", {}],
    ["enable an audit device", "PUT", "sys/audit/mine", { type: "file", options: { file_path: "/tmp/x" } }],
    ["remount a secrets engine", "POST", "sys/remount", { from: "secret", to: "mine" }],
    ["remount nitride", "POST", "sys/remount", { from: "nitride", to: "n2" }],
    ["disable nitride", "DELETE", "sys/mounts/nitride"],
    ["tune nitride", "POST", "sys/mounts/nitride/tune", { description: "mine", max_lease_ttl: "87600h" }],
    ["mount a second Nitride it could configure", "POST", "sys/mounts/nitride2", { type: "nitride" }],
    ["mount an engine with lease settings", "POST", "sys/mounts/kv3", { type: "kv", config: { max_lease_ttl: "1h" } }],
    ["tune a mount", "POST", "sys/mounts/secret/tune", { max_lease_ttl: "87600h" }],
    ["disable its own auth mount", "DELETE", "sys/auth/bk-deployer"],
    ["re-enable its own auth mount", "POST", "sys/auth/bk-deployer", { type: "jwt" }],
    ["tune its own auth mount", "POST", "sys/auth/bk-deployer/tune", { default_lease_ttl: "768h" }],
    ["tune its own auth mount (CLI path)", "POST", "sys/mounts/auth/bk-deployer/tune", { max_lease_ttl: "768h" }],
    ["enable a token auth method", "POST", "sys/auth/tok2", { type: "token" }],
    ["make a JWT mount trust its own key", "POST", "auth/jwt/config", { jwt_validation_pubkeys: [PUBLIC_PEM] }],
    ["make a JWT mount trust its JWKS", "POST", "auth/jwt/config", { jwks_url: "http://127.0.0.1:9/jwks" }],
    ["make a JWT mount trust its issuer", "POST", "auth/jwt/config", { oidc_discovery_url: "http://127.0.0.1:9" }],
    ["point a JWT mount at another Nitride", "POST", "auth/jwt/config", { nitride_mount: "nitride2" }],
    ["switch its own login to a JWKS", "POST", "auth/bk-deployer/config", { jwks_url: "http://127.0.0.1:9/jwks" }],
    [
      "allow another algorithm for its own login",
      "POST",
      "auth/bk-deployer/config",
      { jwt_validation_pubkeys: [PUBLIC_PEM], jwt_supported_algs: ["RS256"] },
    ],
    ["delete KV metadata it did not create", "DELETE", "secret/metadata/prod/db"],
    ["destroy KV versions", "POST", "secret/destroy/prod/db", { versions: [1] }],
    ["shrink a secret's kept versions", "POST", "secret/metadata/prod/db", { max_versions: 1 }],
    ["seal the runtime", "PUT", "sys/seal", {}],
    ["rotate the barrier key", "POST", "sys/rotate", {}],
  ];
  let before: string;
  it("(snapshot of what the operator sees)", async () => {
    before = await operatorView();
  });
  for (const [what, method, p, body] of denied)
    it(`cannot ${what} (${method} ${p})`, async () => {
      expect(await status(dc, method, p, body)).toBe(403);
    });
  it("and nothing changed: mount tables, JWT configs and roles, Nitride, the operator's secret", async () => {
    expect(await operatorView()).toBe(before);
    expect(before).toContain("operator-secret-7f3a");
  });
});

/** What the hostile attempts aim at, as the operator's read-only token sees it. */
async function operatorView(): Promise<string> {
  const out: Record<string, unknown> = {};
  for (const p of [
    "sys/mounts",
    "sys/auth",
    "sys/mounts/nitride/tune",
    "sys/auth/bk-deployer/tune",
    "sys/mounts/secret/tune",
    "auth/jwt/config",
    "auth/bk-deployer/config",
    "auth/bk-deployer/role/deployer",
    "nitride/config",
    "secret/metadata/prod/db",
    "secret/data/prod/db",
    "sys/policies/acl/bk-deployer",
  ]) {
    const r = await runtimeRequest(op, "GET", p);
    expect(r.status, p).toBe(200);
    out[p] = dataOf(r);
  }
  return JSON.stringify(out);
}

describe("audience per runtime, jti replay cache", () => {
  const login = (url: string, jwt: string) =>
    fetch(`${url}/v1/auth/bk-deployer/login`, { method: "POST", body: JSON.stringify({ role: "deployer", jwt }) });

  it("a deployer JWT is accepted once: the same JWT replayed is refused", async () => {
    const { readFileSync } = await import("node:fs");
    const key = createPrivateKey(readFileSync(deployer.keyFile, "utf8"));
    expect(deployer.audience).toMatch(/^buckypaper-deployer:[0-9a-f]{32}$/);
    const jwt = await signDeployerJwt(key, undefined, deployer.audience);
    expect((await login(rt.url, jwt)).status).toBe(200);
    const again = await login(rt.url, jwt);
    expect(again.status).toBe(403);
    expect(await again.text()).toMatch(/jti claim already used/);
    // the shared audience of earlier releases is no longer bound
    expect((await login(rt.url, await signDeployerJwt(key))).status).toBe(403);
  });

  it("the same key trusted by two runtimes: a JWT for one is refused by the other", async () => {
    const { readFileSync } = await import("node:fs");
    const pem = readFileSync(deployer.keyFile, "utf8");
    const key = createPrivateKey(pem);
    const other = await startTestRuntime({});
    try {
      const { createPublicKey } = await import("node:crypto");
      process.env[DEPLOYER_KEY_ENV] = pem; // one key for both runtimes (a CI secret)
      const b = await bootstrapDeployer({
        rootToken: other.rootToken,
        url: other.url,
        keyFile: path.join(tmp, "unused.pem"),
        publicPem: createPublicKey(key).export({ type: "spki", format: "pem" }).toString(),
      });
      delete process.env[DEPLOYER_KEY_ENV];
      expect(b.audience).not.toBe(deployer.audience);
      const forA = await signDeployerJwt(key, undefined, deployer.audience);
      expect((await login(other.url, forA)).status).toBe(403);
      expect((await login(other.url, await signDeployerJwt(key, undefined, b.audience))).status).toBe(200);
      // ...and the JWT refused by B was not used up by that attempt: A still takes it once
      expect((await login(rt.url, forA)).status).toBe(200);
    } finally {
      delete process.env[DEPLOYER_KEY_ENV];
      await other.close();
    }
  });
});

describe("rotation", () => {
  it("a new key replaces the old one: the old key can no longer log in, the new one can", async () => {
    const { readFileSync } = await import("node:fs");
    const before = readFileSync(deployer.keyFile, "utf8");
    await rotateDeployerKey({ url: rt.url, deployer });
    const after = readFileSync(deployer.keyFile, "utf8");
    expect(after).not.toBe(before);
    expect(statSync(deployer.keyFile).mode & 0o777).toBe(0o600);
    const old = await fetch(`${rt.url}/v1/auth/bk-deployer/login`, {
      method: "POST",
      body: JSON.stringify({
        role: "deployer",
        jwt: await signDeployerJwt(createPrivateKey(before), undefined, deployer.audience),
      }),
    });
    expect(old.status).toBe(403);
    forgetDeployerTokens();
    expect(await status(dc, "GET", "auth/token/lookup-self")).toBe(200);
  });

  it(`${DEPLOYER_KEY_ENV} takes precedence over the key file`, async () => {
    process.env[DEPLOYER_KEY_ENV] = generateDeployerKey().privatePem;
    forgetDeployerTokens();
    await expect(runtimeRequest(dc, "GET", "auth/token/lookup-self")).rejects.toThrow(/HTTP 403/);
    delete process.env[DEPLOYER_KEY_ENV];
    forgetDeployerTokens();
    expect(await status(dc, "GET", "auth/token/lookup-self")).toBe(200);
  });
});
