// PKI engine: chains and CRLs must satisfy `openssl verify`; CSRs come from `openssl req`.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { PkiBackend } from "../../../../runtime/server/vault/engines/pki.js";
import { haveCommand, requireTool } from "../../../support/prereq.js";
import { Harness } from "../nitride/nitride-harness.js";

const hasOpenssl = requireTool("openssl", haveCommand("openssl", ["version"]));
const dir = mkdtempSync(path.join(tmpdir(), "bk-pki-"));
const file = (name: string, content: string | Buffer) => {
  const f = path.join(dir, name);
  writeFileSync(f, content);
  return f;
};
const openssl = (args: string[]) => {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr };
};

async function chain() {
  const h = new Harness();
  await h.mount("pki/", new PkiBackend());
  await h.mount("pki_int/", new PkiBackend());
  const root = await h.call("update", "pki/root/generate/internal", {
    common_name: "Buckypaper Root",
    key_type: "ec",
    key_bits: 384,
    ttl: "87600h",
  });
  const csr = await h.call("update", "pki_int/intermediate/generate/internal", {
    common_name: "Buckypaper Intermediate",
  });
  const signed = await h.call("update", "pki/root/sign-intermediate", {
    csr: csr!.data!.csr,
    ttl: "43800h",
    max_path_length: 0,
  });
  await h.call("update", "pki_int/intermediate/set-signed", {
    certificate: `${signed!.data!.certificate}\n${root!.data!.certificate}`,
  });
  await h.call("update", "pki_int/config/urls", {
    issuing_certificates: "http://127.0.0.1:8200/v1/pki_int/ca",
    crl_distribution_points: "http://127.0.0.1:8200/v1/pki_int/crl",
  });
  await h.call("update", "pki_int/roles/web", {
    allowed_domains: "example.com",
    allow_subdomains: true,
    key_type: "ec",
    key_bits: 256,
    ttl: "72h",
    max_ttl: "720h",
  });
  return { h, rootPem: root!.data!.certificate as string, intPem: signed!.data!.certificate as string };
}

describe.runIf(hasOpenssl)("pki engine against openssl", () => {
  it("root → intermediate → issued leaf verifies with openssl; key matches cert; SANs and EKUs as asked", async () => {
    const { h, rootPem, intPem } = await chain();
    const r = await h.call("update", "pki_int/issue/web", {
      common_name: "www.example.com",
      alt_names: "api.example.com",
      ip_sans: "10.0.0.5",
      ttl: "24h",
    });
    const d = r!.data!;
    expect(r!.secretKeys).toEqual(["private_key"]);
    expect(d.private_key).toMatch(/^-----BEGIN EC PRIVATE KEY-----/);
    expect(d.serial_number).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2})+$/);
    expect(d.ca_chain).toEqual([intPem, rootPem]);
    const v = openssl([
      "verify",
      "-CAfile",
      file("root.pem", rootPem),
      "-untrusted",
      file("int.pem", intPem),
      file("leaf.pem", d.certificate as string),
    ]);
    expect(v.status, v.out).toBe(0);
    const leaf = new X509Certificate(d.certificate as string);
    expect(leaf.subjectAltName).toBe("DNS:api.example.com, DNS:www.example.com, IP Address:10.0.0.5");
    expect(leaf.checkPrivateKey(createPrivateKey(d.private_key as string))).toBe(true);
    expect((Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 1000).toBe(24 * 3600 + 30);
    const text = openssl(["x509", "-noout", "-text", "-in", path.join(dir, "leaf.pem")]).out;
    expect(text).toContain("TLS Web Server Authentication, TLS Web Client Authentication");
    expect(text).toContain("CA Issuers - URI:http://127.0.0.1:8200/v1/pki_int/ca");
    const inter = openssl(["x509", "-noout", "-text", "-in", path.join(dir, "int.pem")]).out;
    expect(inter).toMatch(/CA:TRUE, pathlen:0/);
  });

  it("signs an openssl-generated CSR (RSA role) and the chain verifies; the CSR's SANs are kept", async () => {
    const { h, rootPem, intPem } = await chain();
    await h.call("update", "pki_int/roles/rsa", {
      allowed_domains: "example.com",
      allow_subdomains: true,
      key_type: "rsa",
      key_bits: 2048,
    });
    const key = path.join(dir, "csr.key");
    const csrFile = path.join(dir, "req.csr");
    const g = openssl([
      "req",
      "-new",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      csrFile,
      "-subj",
      "/CN=db.example.com",
      "-addext",
      "subjectAltName=DNS:db2.example.com",
    ]);
    expect(g.status, g.out).toBe(0);
    const r = await h.call("update", "pki_int/sign/rsa", { csr: readFileSync(csrFile, "utf8") });
    expect(r!.data!.private_key).toBeUndefined();
    const v = openssl([
      "verify",
      "-CAfile",
      file("root2.pem", rootPem),
      "-untrusted",
      file("int2.pem", intPem),
      file("signed.pem", r!.data!.certificate as string),
    ]);
    expect(v.status, v.out).toBe(0);
    expect(new X509Certificate(r!.data!.certificate as string).subjectAltName).toBe(
      "DNS:db2.example.com, DNS:db.example.com",
    );
    // An EC CSR does not satisfy an RSA role.
    const ecCsr = (await h.call("update", "pki_int/intermediate/generate/exported", { common_name: "x.example.com" }))!
      .data!.csr;
    await expect(h.call("update", "pki_int/sign/rsa", { csr: ecCsr })).rejects.toMatchObject({
      status: 400,
      message: expect.stringMatching(/csr: key must be rsa/),
    });
  });

  it("revocation appears in the CRL and openssl -crl_check then refuses the certificate", async () => {
    const { h } = await chain();
    // Single-level CA for a simple crl_check.
    const r = await h.call("update", "pki/roles/any", { allow_any_name: true });
    void r;
    const rootPem = (await h.call("read", "pki/ca/pem"))!.data!.http_raw_body as string;
    const leaf = await h.call("update", "pki/issue/any", { common_name: "svc.internal" });
    const leafFile = file("crl-leaf.pem", leaf!.data!.certificate as string);
    const crl1 = (await h.call("read", "pki/crl/pem"))!.data!.http_raw_body as string;
    expect(
      openssl(["verify", "-crl_check", "-CAfile", file("r.pem", rootPem), "-CRLfile", file("c1.pem", crl1), leafFile])
        .status,
    ).toBe(0);
    await h.call("update", "pki/revoke", { serial_number: leaf!.data!.serial_number });
    const crl2 = (await h.call("read", "pki/crl/pem"))!.data!.http_raw_body as string;
    const v = openssl([
      "verify",
      "-crl_check",
      "-CAfile",
      path.join(dir, "r.pem"),
      "-CRLfile",
      file("c2.pem", crl2),
      leafFile,
    ]);
    expect(v.status).not.toBe(0);
    expect(v.out).toMatch(/certificate revoked/);
    const der = (await h.call("read", "pki/crl"))!.data!.http_raw_body as Buffer;
    expect(openssl(["crl", "-inform", "DER", "-noout", "-in", file("c.der", der)]).status).toBe(0);
    const rec = await h.call("read", `pki/cert/${leaf!.data!.serial_number}`);
    expect(rec!.data!.revocation_time).toBeGreaterThan(0);
  });

  it("refuses names, TTLs and inputs the role does not allow, naming the field", async () => {
    const { h } = await chain();
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ["pki_int/issue/web", { common_name: "evil.org" }, /common_name: "evil.org" is not allowed/],
      ["pki_int/issue/web", { common_name: "example.com" }, /common_name/],
      ["pki_int/issue/web", { common_name: "a.example.com", alt_names: "b.evil.org" }, /alt_names: "b.evil.org"/],
      ["pki_int/issue/web", { common_name: "a.example.com", ip_sans: "not-an-ip" }, /ip_sans/],
      ["pki_int/issue/web", { common_name: "a.example.com", ttl: "1000h" }, /ttl/],
      ["pki_int/issue/web", { common_name: "a.example.com", ttl: "soon" }, /ttl: invalid duration/],
      ["pki_int/issue/nope", { common_name: "a.example.com" }, /unknown role/],
      ["pki_int/sign/web", { csr: "garbage" }, /csr: not a parseable/],
      ["pki/root/generate/internal", { common_name: "again" }, /already configured/],
      ["pki/roles/x", { key_type: "dsa" }, /key_type/],
    ];
    for (const [p, d, msg] of cases)
      await expect(h.call("update", p, d)).rejects.toMatchObject({ status: 400, message: expect.stringMatching(msg) });
    await expect(
      h.call("update", "pki_int/intermediate/set-signed", {
        certificate: (await h.call("read", "pki/ca/pem"))!.data!.http_raw_body,
      }),
    ).rejects.toMatchObject({ status: 400 });
  });
});

describe("pki issue/sign lifetime", () => {
  it("without ttl, a role whose max_ttl (30m) is below the mount default (1h) issues capped at max_ttl with Vault's warning", async () => {
    const h = new Harness();
    await h.mount("pki/", new PkiBackend());
    await h.call("update", "pki/root/generate/internal", { common_name: "Root", key_type: "ec", ttl: "87600h" });
    await h.call("update", "pki/roles/short", {
      allowed_domains: "example.com",
      allow_subdomains: true,
      max_ttl: "30m",
    });
    const r = await h.call("update", "pki/issue/short", { common_name: "a.example.com" });
    expect(r!.warnings).toEqual([expect.stringMatching(/maxTTL "1800s", so maxTTL is being used/)]);
    const cert = new X509Certificate(r!.data!.certificate as string);
    const life = (new Date(cert.validTo).getTime() - Date.now()) / 1000;
    expect(life).toBeGreaterThan(1700);
    expect(life).toBeLessThanOrEqual(1800);
    // An explicit ttl above max_ttl is still refused, naming the field.
    await expect(h.call("update", "pki/issue/short", { common_name: "a.example.com", ttl: "2h" })).rejects.toThrow(
      /ttl: 7200s exceeds the role's max_ttl of 1800s/,
    );
  });
});
