// PKI, SSH and transit mounted in the real server and driven over HTTP: chains checked by openssl,
// certificates by ssh-keygen, ACL create/update through the engines' existence checks.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { haveCommand, requireTool } from "../../../support/prereq.js";
import { startTestRuntime, type TestRuntime } from "../../../support/runtime.js";
import { registerNitrideEngines } from "../../../../runtime/server/nitride/register.js";
import { generateEd25519 } from "../../../../runtime/server/vault/engines/ssh-wire.js";

const hasTools = requireTool(
  "openssl and ssh-keygen",
  haveCommand("openssl", ["version"]) && haveCommand("ssh-keygen", ["-?"]),
);
const dir = mkdtempSync(path.join(tmpdir(), "bk-engines-http-"));
const file = (n: string, c: string) => {
  const f = path.join(dir, n);
  writeFileSync(f, c);
  return f;
};
// Asynchronous: the server under test runs on this event loop.
const run = (cmd: string, args: string[]) =>
  new Promise<{ code: number | null; out: string }>((resolve) => {
    const p = spawn(cmd, args);
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("close", (code) => resolve({ code, out }));
  });

let rt: TestRuntime;
beforeAll(async () => {
  rt = await startTestRuntime({
    register: (r) => registerNitrideEngines(r),
    mounts: {
      "pki/": { type: "pki" },
      "pki_int/": { type: "pki" },
      "ssh/": { type: "ssh" },
      "transit/": { type: "transit" },
    },
  });
});
afterAll(async () => {
  await rt?.close();
});

describe.runIf(hasTools)("engines over HTTP", () => {
  it("PKI: root → intermediate → leaf through the API; openssl verifies the chain", async () => {
    const root = await rt.api("POST", "pki/root/generate/internal", {
      common_name: "HTTP Root",
      key_type: "ec",
      key_bits: 384,
    });
    expect(root.status).toBe(200);
    const csr = await rt.api("POST", "pki_int/intermediate/generate/internal", { common_name: "HTTP Intermediate" });
    const signed = await rt.api("POST", "pki/root/sign-intermediate", { csr: csr.body.data.csr, ttl: "8760h" });
    expect(
      (await rt.api("POST", "pki_int/intermediate/set-signed", { certificate: signed.body.data.certificate })).status,
    ).toBe(200);
    expect(
      (
        await rt.api("POST", "pki_int/roles/svc", {
          allowed_domains: "svc.internal",
          allow_subdomains: true,
          key_type: "rsa",
          key_bits: 2048,
        })
      ).status,
    ).toBe(204);
    const leaf = await rt.api("POST", "pki_int/issue/svc", { common_name: "a.svc.internal", ttl: "1h" });
    expect(leaf.status, JSON.stringify(leaf.body)).toBe(200);
    expect(leaf.body.data.private_key).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
    const rootPem = (await rt.api("GET", "pki/cert/ca")).body.data.certificate;
    const v = await run("openssl", [
      "verify",
      "-CAfile",
      file("root.pem", rootPem),
      "-untrusted",
      file("int.pem", signed.body.data.certificate),
      file("leaf.pem", leaf.body.data.certificate),
    ]);
    expect(v.code, v.out).toBe(0);
    const list = await rt.api("LIST", "pki_int/certs");
    expect(list.body.data.keys).toContain(leaf.body.data.serial_number);
  });

  it("PKI raw endpoints: ca/pem as PEM text, crl as DER that openssl parses (unauthenticated)", async () => {
    const pem = await fetch(`${rt.url}/v1/pki/ca/pem`);
    expect(pem.status).toBe(200);
    const text = await pem.text();
    expect(text).toMatch(/^-----BEGIN CERTIFICATE-----/);
    const crl = await fetch(`${rt.url}/v1/pki/crl`);
    expect(crl.headers.get("content-type")).toMatch(/pkix-crl/);
    const der = Buffer.from(await crl.arrayBuffer());
    const f = path.join(dir, "crl.der");
    writeFileSync(f, der);
    expect((await run("openssl", ["crl", "-inform", "DER", "-noout", "-in", f])).code).toBe(0);
  });

  it("SSH: CA, role and host certificate through the API; ssh-keygen accepts it; public_key is served as text", async () => {
    const ca = await rt.api("POST", "ssh/config/ca", {});
    expect(ca.status).toBe(200);
    await rt.api("POST", "ssh/roles/host", {
      key_type: "ca",
      allow_host_certificates: true,
      allowed_domains: "svc.internal",
      allow_subdomains: true,
    });
    const r = await rt.api("POST", "ssh/sign/host", {
      public_key: generateEd25519().publicKey,
      cert_type: "host",
      valid_principals: "h1.svc.internal",
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const k = await run("ssh-keygen", ["-L", "-f", file("h1-cert.pub", r.body.data.signed_key)]);
    expect(k.code, k.out).toBe(0);
    expect(k.out).toContain("host certificate");
    const pub = await fetch(`${rt.url}/v1/ssh/public_key`);
    expect(await pub.text()).toBe(`${ca.body.data.public_key}\n`);
  });

  it("ACL: a policy with only `create` on transit/keys/* can create a key but not overwrite it", async () => {
    await rt.api("PUT", "sys/policies/acl/keymaker", {
      policy:
        'path "transit/keys/*" { capabilities = ["create"] }\npath "transit/encrypt/*" { capabilities = ["update"] }',
    });
    const t = await rt.api("POST", "auth/token/create", { policies: ["keymaker"] });
    const tok = t.body.auth.client_token;
    expect((await rt.api("POST", "transit/keys/fresh", {}, tok)).status).toBe(200);
    expect((await rt.api("POST", "transit/keys/fresh", {}, tok)).status).toBe(403);
    // encrypt to a missing key would create it: that needs `create` on transit/encrypt/*.
    expect((await rt.api("POST", "transit/encrypt/missing", { plaintext: "aGk=" }, tok)).status).toBe(403);
    expect((await rt.api("POST", "transit/encrypt/fresh", { plaintext: "aGk=" }, tok)).status).toBe(200);
  });
});
