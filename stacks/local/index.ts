// The `local` stack: everything the kit promises, on one machine, without a cloud account.
//   1. a simulated SEV-SNP platform (the "chip": a fake AMD key hierarchy kept in a private directory)
//   2. the vHSM runtime (Nitride attestation + Vault-compatible secrets) on SQLite, trusting that
//      platform only (every verdict is marked simulated), with PKI, SSH CA and JWT auth configured
//   3. confidential VMs whose boot inputs are real files (Debian's OVMF, a pinned Debian kernel and
//      initrd): their expected launch measurements are computed by the engine and registered; each VM
//      is a local process whose simulated PSP measures what it is actually started with and whose
//      enclaivelet attests and provisions its secrets into the VM's private root
//   4. (tamperDemo) a VM registered like `web` but started with a modified firmware: refused, nothing delivered
// Erasable TypeScript only: Node 22 runs this file as is.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import {
  AuthMount,
  GeneratedSecret,
  LocalConfidentialVm,
  Mount,
  PkiRole,
  RuntimeWrite,
  SimulatedPlatform,
  SshRole,
  Vhsm,
} from "buckypaper";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const cfg = new pulumi.Config();
const stack = pulumi.getStack();
const stateDir = path.resolve(cfg.get("stateDir") ?? path.join(REPO, ".bk", "local", stack));
const port = cfg.getNumber("port") ?? 8200;
const domain = cfg.get("domain") ?? "bk.internal";
const tamperDemo = cfg.getBoolean("tamperDemo") ?? true;
const boot = {
  firmware: cfg.get("firmware") ?? "/usr/share/ovmf/OVMF.fd",
  kernel: cfg.get("kernel") ?? path.join(REPO, ".bk", "boot", "vmlinuz"),
  initrd: cfg.get("initrd") ?? path.join(REPO, ".bk", "boot", "initrd.img"),
  append: cfg.get("append") ?? "console=ttyS0 root=/dev/vda1 ro",
};

// 1. The simulated platform, and the runtime that trusts it.
const platform = new SimulatedPlatform("platform", { dir: path.join(stateDir, "platform") });
const vhsm = new Vhsm("vhsm", {
  stateDir: path.join(stateDir, "vhsm"),
  port,
  trustSimulatedSnp: platform.anchor,
  auditLog: true,
});

// 2. Secret engines and the attested login the enclaivelet uses.
const connection = { url: vhsm.url, token: vhsm.rootToken, caPem: vhsm.caPem };
const kv = new Mount("kv", { connection, path: "secret", type: "kv" });
const pki = new Mount("pki", { connection, path: "pki", type: "pki" });
const ssh = new Mount("ssh", { connection, path: "ssh", type: "ssh" });
const jwt = new AuthMount("jwt", { connection, path: "jwt", type: "jwt" });
const pkiRoot = new RuntimeWrite(
  "pki-root",
  {
    connection,
    path: "pki/root/generate/internal",
    body: { common_name: `Buckypaper local CA (${stack})`, key_type: "ec", key_bits: 256, ttl: "87600h" },
  },
  { dependsOn: [pki] },
);
const sshCa = new RuntimeWrite(
  "ssh-ca",
  { connection, path: "ssh/config/ca", body: { generate_signing_key: true } },
  { dependsOn: [ssh] },
);
const jwtConfig = new RuntimeWrite(
  "jwt-config",
  { connection, path: "auth/jwt/config", body: { nitride_mount: "nitride" } },
  { dependsOn: [jwt] },
);
// One role for every workload: an attested Nitride token logs in to the workload's own ACL policy.
const jwtRole = new RuntimeWrite(
  "jwt-role-workload",
  {
    connection,
    path: "auth/jwt/role/workload",
    deletePath: "auth/jwt/role/workload",
    body: {
      role_type: "jwt",
      bound_audiences: ["buckypaper"],
      user_claim: "sub",
      bound_claims: { platform: "snp" },
      token_policies: ["nitride-workload-{{sub}}"],
      token_policies_template_claims: true,
      token_ttl: "10m",
    },
  },
  { dependsOn: [jwtConfig] },
);
const tlsRole = new PkiRole(
  "tls",
  { connection, name: "vm", allowedDomains: [domain], allowSubdomains: true, keyType: "ec", keyBits: 256, ttl: "72h" },
  { dependsOn: [pkiRoot] },
);
const hostRole = new SshRole(
  "ssh-host",
  { connection, name: "host", allowHostCertificates: true, allowedDomains: domain, allowSubdomains: true, ttl: "72h" },
  { dependsOn: [sshCa] },
);
const runtimeReady = [vhsm, kv, jwtRole, tlsRole, hostRole];

// 3. The confidential VMs.
const vhsmArgs = { url: vhsm.url, caFingerprint: vhsm.caFingerprint, token: vhsm.rootToken, caPem: vhsm.caPem };
const vmsDir = path.join(stateDir, "vms");
const apiKey = new GeneratedSecret("web-api-key", { bytes: 24 });
const dbPassword = new GeneratedSecret("db-password", { bytes: 24 });

const web = new LocalConfidentialVm("web", {
  vhsm: vhsmArgs,
  platformDir: platform.dir,
  boot,
  vcpus: 2,
  cpuModel: "EPYC-v4",
  secrets: { API_KEY: apiKey.value },
  tls: { role: "pki/vm", commonName: `web.${domain}` },
  sshHost: { role: "ssh/host", principals: [`web.${domain}`] },
  stateDir: path.join(vmsDir, "web"),
  waitFor: runtimeReady,
});
const db = new LocalConfidentialVm("db", {
  vhsm: vhsmArgs,
  platformDir: platform.dir,
  boot,
  vcpus: 4,
  cpuModel: "EPYC-v4",
  secrets: { DB_PASSWORD: dbPassword.value },
  tls: { role: "pki/vm", commonName: `db.${domain}` },
  stateDir: path.join(vmsDir, "db"),
  waitFor: runtimeReady,
});
const vms: Record<string, LocalConfidentialVm> = { web, db };

// 4. Tamper demonstration: registered with exactly web's boot inputs, started with a firmware that
// differs in one byte (a stand-in for a patched or backdoored OVMF build).
if (tamperDemo) {
  const modified = path.join(stateDir, "boot", "OVMF-modified.fd");
  const fw = readFileSync(boot.firmware);
  fw[fw.length >> 1] ^= 0x01;
  if (!existsSync(modified) || !readFileSync(modified).equals(fw)) {
    mkdirSync(path.dirname(modified), { recursive: true });
    writeFileSync(modified, fw);
  }
  vms.tampered = new LocalConfidentialVm("tampered", {
    vhsm: vhsmArgs,
    platformDir: platform.dir,
    boot,
    vcpus: 2,
    cpuModel: "EPYC-v4",
    actualBoot: { firmware: modified },
    secrets: { API_KEY: apiKey.value },
    stateDir: path.join(vmsDir, "tampered"),
    waitFor: runtimeReady,
  });
}

export const runtimeUrl = vhsm.url;
export const runtimeCaFingerprint = vhsm.caFingerprint;
export const auditLog = path.join(stateDir, "vhsm", "audit.log");
export const simulatedArkSha256 = platform.arkSha256;
export const bootInputs = boot;
export const vm = Object.fromEntries(
  Object.entries(vms).map(([name, v]) => [
    name,
    pulumi
      .all([
        v.workloadId,
        v.expectedMeasurement,
        v.measurement,
        v.kernelMeasured,
        v.verdict,
        v.reason,
        v.delivered,
        v.root,
        v.pid,
      ])
      .apply(
        ([workloadId, expectedMeasurement, measurement, kernelMeasured, verdict, reason, delivered, root, pid]) => ({
          workloadId,
          expectedMeasurement,
          measurement,
          kernelMeasured,
          verdict,
          reason,
          delivered,
          root,
          pid,
        }),
      ),
  ]),
);
