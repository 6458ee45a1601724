// Real Vault clients against a running runtime: node-vault (npm) and hvac (PyPI) doing KV v2 round
// trips, policy writes, token create / lookup-self / renew-self / revoke-self, and the LIST verb.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawnSync, execFile } from "node:child_process";
import { promisify } from "node:util";
import { createRequire } from "node:module";
import { startTestRuntime, type TestRuntime } from "../../support/runtime.js";
import { requireTool } from "../../support/prereq.js";

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- node-vault is untyped CommonJS
const nodeVault = require("node-vault") as (o: { endpoint: string; token?: string; apiVersion?: string }) => any;

let rt: TestRuntime;
beforeAll(async () => {
  rt = await startTestRuntime();
});
afterAll(async () => {
  await rt?.close();
});

describe("node-vault client", () => {
  it("writes, reads, lists and deletes KV v2 secrets", async () => {
    const v = nodeVault({ endpoint: rt.url, token: rt.rootToken });
    await v.write("secret/data/node/app", { data: { user: "svc", password: "pw-node-1" } });
    await v.write("secret/data/node/app", { data: { user: "svc", password: "pw-node-2" }, options: { cas: 1 } });
    const r = await v.read("secret/data/node/app");
    expect(r.data.data).toEqual({ user: "svc", password: "pw-node-2" });
    expect(r.data.metadata.version).toBe(2);
    const l = await v.list("secret/metadata/node");
    expect(l.data.keys).toEqual(["app"]);
    await expect(v.write("secret/data/node/app", { data: { x: "y" }, options: { cas: 1 } })).rejects.toMatchObject({
      response: { statusCode: 400 },
    });
    await v.delete("secret/metadata/node/app");
    await expect(v.read("secret/data/node/app")).rejects.toMatchObject({ response: { statusCode: 404 } });
  });

  it("runs the token lifecycle with a policy-limited child token", async () => {
    const admin = nodeVault({ endpoint: rt.url, token: rt.rootToken });
    await admin.addPolicy({ name: "node-reader", rules: 'path "secret/data/node-ro/*" { capabilities = ["read"] }' });
    await admin.write("secret/data/node-ro/cfg", { data: { k: "v" } });
    const created = await admin.tokenCreate({ policies: ["node-reader"], ttl: "1h" });
    const childToken = created.auth.client_token as string;
    expect(created.auth.policies).toEqual(["default", "node-reader"]);
    expect(created.auth.lease_duration).toBeGreaterThan(3500);
    const child = nodeVault({ endpoint: rt.url, token: childToken });
    const self = await child.tokenLookupSelf();
    expect(self.data.policies).toEqual(["default", "node-reader"]);
    expect(self.data.ttl).toBeGreaterThan(3500);
    expect((await child.read("secret/data/node-ro/cfg")).data.data).toEqual({ k: "v" });
    await expect(child.write("secret/data/node-ro/cfg", { data: { k: "w" } })).rejects.toMatchObject({
      response: { statusCode: 403 },
    });
    const renewed = await child.tokenRenewSelf({ increment: "2h" });
    expect(renewed.auth.lease_duration).toBeGreaterThan(7000);
    await child.tokenRevokeSelf();
    await expect(child.tokenLookupSelf()).rejects.toMatchObject({ response: { statusCode: 403 } });
  });

  it("reports seal status and health like Vault", async () => {
    const v = nodeVault({ endpoint: rt.url });
    const s = await v.status();
    expect(s).toMatchObject({ sealed: false, initialized: true, type: "shamir" });
    const h = await v.health();
    expect(h.initialized).toBe(true);
  });
});

const HVAC_SCRIPT = String.raw`
import json, sys, hvac
url, root = sys.argv[1], sys.argv[2]
c = hvac.Client(url=url, token=root)
assert c.is_authenticated()
assert c.sys.is_initialized() and not c.sys.is_sealed()
c.secrets.kv.v2.create_or_update_secret(path="py/app", secret={"api_key": "hvac-secret-1"})
c.secrets.kv.v2.create_or_update_secret(path="py/app", secret={"api_key": "hvac-secret-2"}, cas=1)
r = c.secrets.kv.v2.read_secret_version(path="py/app", raise_on_deleted_version=True)
out = {"read": r["data"]["data"], "version": r["data"]["metadata"]["version"]}
out["v1"] = c.secrets.kv.v2.read_secret_version(path="py/app", version=1, raise_on_deleted_version=True)["data"]["data"]
out["list"] = c.secrets.kv.v2.list_secrets(path="py")["data"]["keys"]
meta = c.secrets.kv.v2.read_secret_metadata(path="py/app")["data"]
out["current_version"] = meta["current_version"]
c.secrets.kv.v2.patch(path="py/app", secret={"extra": "x"})
out["patched"] = c.secrets.kv.v2.read_secret_version(path="py/app", raise_on_deleted_version=True)["data"]["data"]
c.secrets.kv.v2.delete_latest_version_of_secret(path="py/app")
c.secrets.kv.v2.undelete_secret_versions(path="py/app", versions=[3])
c.secrets.kv.v2.destroy_secret_versions(path="py/app", versions=[1])
out["destroyed_v1"] = c.secrets.kv.v2.read_secret_metadata(path="py/app")["data"]["versions"]["1"]["destroyed"]
try:
    c.secrets.kv.v2.create_or_update_secret(path="py/app", secret={"api_key": "x"}, cas=1)
    out["cas_refused"] = False
except hvac.exceptions.InvalidRequest:
    out["cas_refused"] = True
c.sys.create_or_update_policy(name="py-ro", policy='path "secret/data/py/*" { capabilities = ["read"] }')
out["policy"] = c.sys.read_policy(name="py-ro")["data"]["rules"]
t = c.auth.token.create(policies=["py-ro"], ttl="30m")
tok = t["auth"]["client_token"]
child = hvac.Client(url=url, token=tok)
me = child.auth.token.lookup_self()["data"]
out["child_policies"] = me["policies"]
out["child_ttl_ok"] = 1700 < me["ttl"] <= 1800
out["child_read"] = child.secrets.kv.v2.read_secret_version(path="py/app", raise_on_deleted_version=True)["data"]["data"]
try:
    child.secrets.kv.v2.create_or_update_secret(path="py/app", secret={"x": "y"})
    out["child_write_refused"] = False
except hvac.exceptions.Forbidden:
    out["child_write_refused"] = True
out["renew_ttl"] = child.auth.token.renew_self(increment="1h")["auth"]["lease_duration"]
child.auth.token.revoke_self()
try:
    child.auth.token.lookup_self()
    out["revoked"] = False
except hvac.exceptions.Forbidden:
    out["revoked"] = True
mounts = c.sys.list_mounted_secrets_engines()["data"]
out["mount_types"] = sorted(m["type"] for m in mounts.values())
print(json.dumps(out))
`;

describe("hvac client (PyPI)", () => {
  const have = spawnSync("python3", ["-c", "import hvac"]).status === 0;
  it.runIf(requireTool("python3 hvac (pip install hvac)", have))(
    "round-trips KV v2 and the token lifecycle",
    async () => {
      // Async: the runtime under test lives in this process, so the event loop must keep running.
      const r = await promisify(execFile)("python3", ["-c", HVAC_SCRIPT, rt.url, rt.rootToken], {
        encoding: "utf8",
        timeout: 60_000,
      });
      expect(r.stderr).not.toMatch(/Traceback/);
      const out = JSON.parse(r.stdout);
      expect(out.read).toEqual({ api_key: "hvac-secret-2" });
      expect(out.version).toBe(2);
      expect(out.v1).toEqual({ api_key: "hvac-secret-1" });
      expect(out.list).toEqual(["app"]);
      expect(out.current_version).toBe(2);
      expect(out.patched).toEqual({ api_key: "hvac-secret-2", extra: "x" });
      expect(out.destroyed_v1).toBe(true);
      expect(out.cas_refused).toBe(true);
      expect(out.policy).toContain("secret/data/py/*");
      expect(out.child_policies).toEqual(["default", "py-ro"]);
      expect(out.child_ttl_ok).toBe(true);
      expect(out.child_read).toEqual({ api_key: "hvac-secret-2", extra: "x" });
      expect(out.child_write_refused).toBe(true);
      expect(out.renew_ttl).toBeGreaterThan(3500);
      expect(out.revoked).toBe(true);
      expect(out.mount_types).toContain("kv");
    },
  );
});
