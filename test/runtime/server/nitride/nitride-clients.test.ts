// Real Vault clients against the running server: node-vault (npm) and hvac (PyPI) log in with a
// Nitride workload token through auth/jwt, read the workload's KV secret, issue a certificate from
// its PKI role, and use transit encrypt/decrypt.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { X509Certificate } from "node:crypto";
import { requireTool } from "../../../support/prereq.js";
import { attestAs, startNitrideStack, type NitrideStack } from "./nitride-support.js";

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API / an untyped CommonJS client
const nodeVault = require("node-vault") as (o: { apiVersion: string; endpoint: string; token?: string }) => any;

const hasHvac = requireTool("hvac (PyPI)", spawnSync("python3", ["-c", "import hvac"]).status === 0);

let s: NitrideStack;
beforeAll(async () => {
  s = await startNitrideStack();
  await s.rt.api("POST", "transit/keys/app", {});
}, 60_000);
afterAll(async () => {
  await s?.rt.close();
});

describe("node-vault against the runtime", () => {
  it("jwtLogin with a Nitride token, KV v2 read of its secret, PKI issue from its role; other secrets refused", async () => {
    const a = await attestAs(s, "web");
    const v = nodeVault({ apiVersion: "v1", endpoint: s.rt.url });
    const login = await v.jwtLogin({ role: "workload", jwt: a.body.data.token });
    expect(login.auth.policies).toContain("nitride-workload-web");
    expect(v.token).toBe(login.auth.client_token);
    const secret = await v.read("secret/data/web/db");
    expect(secret.data.data.password).toBe("web-db-secret");
    await expect(v.read("secret/data/other/db")).rejects.toMatchObject({ response: { statusCode: 403 } });
    const cert = await v.write("pki/issue/web", { common_name: "web.example.com", ttl: "1h" });
    expect(new X509Certificate(cert.data.certificate).subject).toContain("CN=web.example.com");
    // Refused by the workload's ACL (allowed_parameters pins its names) before the role sees it.
    await expect(v.write("pki/issue/web", { common_name: "evil.org" })).rejects.toMatchObject({
      response: { statusCode: 403 },
    });
  });

  it("transit encryptData/decryptData round trip with the root token", async () => {
    const v = nodeVault({ apiVersion: "v1", endpoint: s.rt.url, token: s.rt.rootToken });
    const plaintext = Buffer.from("node-vault says hi").toString("base64");
    const enc = await v.encryptData({ name: "app", plaintext });
    expect(enc.data.ciphertext).toMatch(/^vault:v1:/);
    const dec = await v.decryptData({ name: "app", ciphertext: enc.data.ciphertext });
    expect(dec.data.plaintext).toBe(plaintext);
  });
});

const HVAC_SCRIPT = `
import base64, json, sys, hvac
url, jwt, root = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
c = hvac.Client(url=url)
login = c.auth.jwt.jwt_login(role="workload", jwt=jwt)
out["policies"] = login["auth"]["policies"]
out["authenticated"] = c.is_authenticated()
r = c.secrets.kv.v2.read_secret_version(path="web/db", mount_point="secret", raise_on_deleted_version=True)
out["password"] = r["data"]["data"]["password"]
try:
    c.secrets.kv.v2.read_secret_version(path="other/db", mount_point="secret", raise_on_deleted_version=True)
    out["other"] = "READ"
except hvac.exceptions.Forbidden:
    out["other"] = "forbidden"
cert = c.secrets.pki.generate_certificate(name="web", common_name="web.example.com", mount_point="pki")
try:
    c.secrets.pki.generate_certificate(name="web", common_name="api.example.com", mount_point="pki")
    out["foreign_cn"] = "ISSUED"
except hvac.exceptions.Forbidden:
    out["foreign_cn"] = "forbidden"
out["certificate"] = cert["data"]["certificate"]
admin = hvac.Client(url=url, token=root)
enc = admin.secrets.transit.encrypt_data(name="app", plaintext=base64.b64encode(b"hvac says hi").decode())
ct = enc["data"]["ciphertext"]
dec = admin.secrets.transit.decrypt_data(name="app", ciphertext=ct)
out["ciphertext"] = ct
out["plaintext"] = base64.b64decode(dec["data"]["plaintext"]).decode()
print(json.dumps(out))
`;

describe.runIf(hasHvac)("hvac against the runtime", () => {
  it("jwt_login with a Nitride token, KV v2, PKI generate_certificate, transit encrypt/decrypt", async () => {
    const a = await attestAs(s, "web");
    // spawnSync would block the event loop the server runs on: run python asynchronously.
    const { spawn } = await import("node:child_process");
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn("python3", ["-c", HVAC_SCRIPT, s.rt.url, a.body.data.token, s.rt.rootToken]);
      let stdout = "",
        stderr = "";
      p.stdout.on("data", (d) => (stdout += d));
      p.stderr.on("data", (d) => (stderr += d));
      p.on("close", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`hvac exited ${code}: ${stderr}`))));
    });
    const r = JSON.parse(out);
    expect(r.authenticated).toBe(true);
    expect(r.policies).toEqual(["default", "nitride-workload-web"]);
    expect(r.password).toBe("web-db-secret");
    expect(r.other).toBe("forbidden");
    // The workload's policy pins its registered names (issue #12, attack 6): its own CN is issued,
    // another name of the role's domain is refused.
    expect(new X509Certificate(r.certificate).subject).toContain("CN=web.example.com");
    expect(r.foreign_cn).toBe("forbidden");
    expect(r.ciphertext).toMatch(/^vault:v1:/);
    expect(r.plaintext).toBe("hvac says hi");
  }, 30_000);
});
