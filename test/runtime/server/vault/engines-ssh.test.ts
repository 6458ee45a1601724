// SSH CA engine: certificates must be accepted by the real OpenSSH tools (ssh-keygen parses them and
// checks the CA signature while doing so).
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { SshBackend } from "../../../../runtime/server/vault/engines/ssh.js";
import { generateEd25519 } from "../../../../runtime/server/vault/engines/ssh-wire.js";
import { haveCommand, requireTool } from "../../../support/prereq.js";
import { Harness } from "../nitride/nitride-harness.js";

const hasKeygen = requireTool("ssh-keygen (openssh-client)", haveCommand("ssh-keygen", ["-?"]));
const dir = mkdtempSync(path.join(tmpdir(), "bk-ssh-"));

function keygen(args: string[], file: string, content: string): { status: number | null; out: string } {
  const f = path.join(dir, file);
  writeFileSync(f, content);
  chmodSync(f, 0o600);
  const r = spawnSync("ssh-keygen", [...args, f], { encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr };
}

async function setup() {
  const h = new Harness();
  await h.mount("ssh/", new SshBackend());
  const ca = await h.call("update", "ssh/config/ca", { generate_signing_key: true });
  await h.call("update", "ssh/roles/host", {
    key_type: "ca",
    allow_host_certificates: true,
    allowed_domains: "example.com",
    allow_subdomains: true,
    ttl: "24h",
    max_ttl: "48h",
  });
  await h.call("update", "ssh/roles/user", {
    key_type: "ca",
    allow_user_certificates: true,
    allowed_users: "alice,bob",
    default_user: "alice",
    default_extensions: { "permit-pty": "" },
    allowed_extensions: "permit-pty,permit-port-forwarding",
    allowed_critical_options: "force-command",
    ttl: "30m",
    max_ttl: "1h",
  });
  return { h, caKey: ca!.data!.public_key as string };
}

describe.runIf(hasKeygen)("ssh CA engine against ssh-keygen", () => {
  it("signs an Ed25519 host key: ssh-keygen -L shows host cert, principals, CA key and validity", async () => {
    const { h, caKey } = await setup();
    const host = generateEd25519("host");
    const r = await h.call("update", "ssh/sign/host", {
      public_key: host.publicKey,
      cert_type: "host",
      valid_principals: "vm1.example.com,vm1.db.example.com",
    });
    const signed = r!.data!.signed_key as string;
    expect(signed.startsWith("ssh-ed25519-cert-v01@openssh.com ")).toBe(true);
    const { status, out } = keygen(["-L", "-f"], "host-cert.pub", signed);
    expect(status, out).toBe(0);
    expect(out).toContain("Type: ssh-ed25519-cert-v01@openssh.com host certificate");
    expect(out).toMatch(/vm1\.example\.com\s+vm1\.db\.example\.com/);
    const caFp = keygen(["-l", "-f"], "ca.pub", `${caKey}\n`).out.split(/\s+/)[1];
    expect(out).toContain(`Signing CA: ED25519 ${caFp}`);
    expect(out).toContain(`Serial: ${BigInt(`0x${r!.data!.serial_number}`)}`);
    const m = /Valid: from (\S+) to (\S+)/.exec(out)!;
    const span = (Date.parse(m[2]) - Date.parse(m[1])) / 1000;
    expect(span).toBe(24 * 3600 + 30);
  });

  it("signs user certs for ECDSA and RSA keys with default extensions and a force-command option", async () => {
    const { h } = await setup();
    for (const t of ["ecdsa", "rsa"]) {
      const kf = path.join(dir, `id_${t}`);
      expect(spawnSync("ssh-keygen", ["-q", "-t", t, "-N", "", "-f", kf]).status).toBe(0);
      const pub = spawnSync("cat", [`${kf}.pub`], { encoding: "utf8" }).stdout;
      const r = await h.call("update", "ssh/sign/user", {
        public_key: pub,
        critical_options: { "force-command": "/bin/true" },
      });
      const { status, out } = keygen(["-L", "-f"], `${t}-cert.pub`, r!.data!.signed_key as string);
      expect(status, out).toBe(0);
      expect(out).toContain("user certificate");
      expect(out).toMatch(/Principals:\s+alice/);
      expect(out).toMatch(/force-command \/bin\/true/);
      expect(out).toMatch(/Extensions:\s+permit-pty/);
    }
  });

  it("a tampered certificate is rejected by ssh-keygen (signature really checked)", async () => {
    const { h } = await setup();
    const r = await h.call("update", "ssh/sign/user", {
      public_key: generateEd25519().publicKey,
      valid_principals: "bob",
    });
    const [type, b64] = (r!.data!.signed_key as string).trim().split(" ");
    const blob = Buffer.from(b64, "base64");
    const idx = blob.indexOf(Buffer.from("bob"));
    blob[idx] = "c".charCodeAt(0);
    const { status } = keygen(["-L", "-f"], "tampered-cert.pub", `${type} ${blob.toString("base64")}\n`);
    expect(status).not.toBe(0);
  });

  it("issue generates a key pair whose private key OpenSSH loads and matches the certificate", async () => {
    const { h } = await setup();
    const r = await h.call("update", "ssh/issue/host", { cert_type: "host", valid_principals: "vm2.example.com" });
    expect(r!.secretKeys).toEqual(["private_key"]);
    const derived = keygen(["-y", "-f"], "issued", r!.data!.private_key as string);
    expect(derived.status, derived.out).toBe(0);
    const certKey = Buffer.from((r!.data!.signed_key as string).split(" ")[1], "base64");
    const pubB64 = derived.out.trim().split(" ")[1];
    // The certificate embeds the same 32-byte Ed25519 key as the generated private key.
    expect(certKey.includes(Buffer.from(pubB64, "base64").subarray(19))).toBe(true);
  });

  it("refuses what the role does not allow, naming the field", async () => {
    const { h } = await setup();
    const pub = generateEd25519().publicKey;
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      [
        "ssh/sign/host",
        { public_key: pub, cert_type: "host", valid_principals: "evil.org" },
        /valid_principals: "evil.org"/,
      ],
      ["ssh/sign/host", { public_key: pub, cert_type: "host", valid_principals: "example.com" }, /valid_principals/],
      [
        "ssh/sign/host",
        { public_key: pub, cert_type: "user", valid_principals: "alice" },
        /cert_type: user certificates are not allowed/,
      ],
      ["ssh/sign/user", { public_key: pub, valid_principals: "root" }, /"root" is not an allowed user/],
      [
        "ssh/sign/user",
        { public_key: pub, extensions: { "permit-X11-forwarding": "" } },
        /extensions: "permit-X11-forwarding"/,
      ],
      ["ssh/sign/user", { public_key: pub, ttl: "2h" }, /ttl/],
      ["ssh/sign/user", { public_key: "ssh-ed25519 AAAA" }, /public_key/],
      ["ssh/sign/user", { public_key: pub, key_id: "me" }, /key_id/],
      ["ssh/sign/nope", { public_key: pub }, /unknown role/],
    ];
    for (const [p, d, msg] of cases)
      await expect(h.call("update", p, d)).rejects.toMatchObject({ status: 400, message: expect.stringMatching(msg) });
    await expect(h.call("update", "ssh/config/ca", {})).rejects.toMatchObject({ status: 400 });
  });

  it("serves the CA public key as text", async () => {
    const { h, caKey } = await setup();
    const r = await h.call("read", "ssh/public_key");
    expect(r!.data).toEqual({ http_content_type: "text/plain", http_raw_body: `${caKey}\n`, http_status_code: 200 });
  });
});
