// The `local` stack: everything the kit promises, on one machine, without a cloud account.
//   1. a simulated SEV-SNP platform (the "chip": a fake AMD key hierarchy kept in a private directory)
//   2. the vHSM runtime (Nitride attestation + Vault-compatible secrets) on SQLite, trusting that
//      platform only (every verdict is marked simulated), with PKI, SSH CA and JWT auth configured. When
//      this machine can run guests (config vhsm: auto, the default), the runtime itself runs in a real
//      QEMU guest of that platform (Vhsm mode confidential-vm, the kit image in its runtime role): `pulumi
//      up` computes its measurement from the guest's boot inputs and verifies its attested TLS before
//      sending anything; the VMs verify it the same way (no copied fingerprint). Otherwise (or vhsm:
//      process) a runtime process on this machine.
//   3. confidential VMs `web` and `db`: real QEMU guests booted from the kit image (when this machine can
//      run them: QEMU, root, the image tooling and the AmdSev firmware — else process trees, with the
//      reason printed). Each guest's expected launch measurement is computed from its exact QEMU argv —
//      AmdSev firmware + kernel + initrd + command line carrying the dm-verity root hash — and registered
//      with the SHA-256 of its user-data; a simulated PSP outside the guest measures the files QEMU
//      started with, the real enclaivelet in the guest attests, unlocks its LUKS2 data disk and installs
//      the SSH host certificate into sshd (log in with the runtime's SSH CA in known_hosts: no TOFU)
//   4. (tamperDemo) guests registered exactly like `web`, each booted with one thing changed by "the
//      host": `tampered` one firmware byte, `cmdline` the kernel command line, `initrd` a swapped
//      initrd, `kernel` another kernel file, `injected` a runcmd added to the user-data after
//      registration — refused by the runtime, nothing delivered, the reason in the outputs and the
//      audit log — and `rootfs` one block of the root filesystem, which dm-verity stops in the guest
//      before anything asks the PSP. They boot after web and db (TCG shares 2 cores). Process-tree VMs
//      measure no kernel and read no user-data: `tampered` is their only case.
// Erasable TypeScript only: Node 22 runs this file as is.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import {
  AuthMount,
  GeneratedSecret,
  LocalConfidentialVm,
  type LocalVmMode,
  Mount,
  PkiRole,
  resolveLocalVmMode,
  RuntimeWrite,
  SimulatedPlatform,
  SshRole,
  localVhsmGuestSupport,
  Vhsm,
  VhsmMode,
  VHSM_LOCAL_PLATFORM,
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
const sshPort = cfg.getNumber("sshPort") ?? 2222; // web's sshd on 127.0.0.1 (real guests)
// vms: auto (default: real QEMU guests when this machine can run them, else process trees), real, process.
const resolved = resolveLocalVmMode("stack local", (cfg.get("vms") ?? "auto") as LocalVmMode);
const real = resolved.mode === "real";
if (!real && cfg.get("vms") !== "process")
  pulumi.log.warn(`process-tree VMs instead of real QEMU guests — ${resolved.why}`);
// Real guests run under TCG on most machines: fewer vCPUs than the process trees (same rule: different
// vCPU counts, different launch digests).
const vcpus = real ? { web: 1, db: 2 } : { web: 2, db: 4 };

// 1. The simulated platform, and the runtime that trusts it.
const platform = new SimulatedPlatform("platform", { dir: path.join(stateDir, "platform") });
// By default the runtime keeps no root token: it is revoked once the deployer credential (a key under
// ~/.config/buckypaper/deployer/) is set up. The opt-out exists for tests that need root afterwards.
const keepRoot = cfg.getBoolean("insecureKeepRootTokenInState") ?? false;
// vhsm: auto (the runtime in a real QEMU guest, attested, when this machine can run guests), real, process.
// Default: the `vms` setting (process-tree VMs come with a runtime process; real guests with an attested one).
const vhsmAsked = (cfg.get("vhsm") ?? cfg.get("vms") ?? "auto") as LocalVmMode;
const vhsmResolved = resolveLocalVmMode("stack local (config vhsm)", vhsmAsked);
// The runtime's guest boots the kit's verity image with the AmdSev firmware: that must be possible here too.
if (vhsmResolved.mode === "real") {
  const s = localVhsmGuestSupport(REPO);
  if (!s.ok && vhsmAsked === "real") throw new Error(`stack local: vhsm is 'real' but this is missing: ${s.reason}`);
  if (!s.ok) Object.assign(vhsmResolved, { mode: "process", why: `missing: ${s.reason}` });
}
const attestedVhsm = vhsmResolved.mode === "real";
if (!attestedVhsm && cfg.get("vhsm") !== "process")
  pulumi.log.warn(`the vHSM runs as a process on this machine, not in an attested guest — ${vhsmResolved.why}`);
const vhsm = new Vhsm("vhsm", {
  stateDir: path.join(stateDir, "vhsm"),
  port,
  trustSimulatedSnp: platform.anchor,
  ...(attestedVhsm
    ? {
        mode: VhsmMode.ConfidentialVm,
        platform: VHSM_LOCAL_PLATFORM,
        platformDir: platform.dir,
        // The tamper demonstration of the runtime itself (tests): boot it with another firmware than measured.
        ...(cfg.get("vhsmActualFirmware") ? { actualFirmware: cfg.get("vhsmActualFirmware") } : {}),
      }
    : {
        auditLog: true,
        // The real guests reach the runtime at this address (QEMU's user-mode forward to the host loopback).
        tlsHosts: ["10.0.2.100"],
      }),
  ...(keepRoot ? { insecureKeepRootTokenInState: true } : {}),
});
const auth = keepRoot ? { token: vhsm.rootToken } : { deployer: vhsm.deployer };

// 2. Secret engines and the attested login the enclaivelet uses. With the runtime in a guest, every request
// goes over attested TLS (vhsm.attestation); the process runtime is pinned by its CA.
const connection = { url: vhsm.url, ...auth, caPem: vhsm.caPem, attestation: vhsm.attestation };
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
// One role for every workload: an attested Nitride token logs in to the workload's own ACL policy. It binds
// this runtime's own audience (Nitride's default names the issuing runtime): another runtime's token is refused.
const jwtRole = new RuntimeWrite(
  "jwt-role-workload",
  {
    connection,
    path: "auth/jwt/role/workload",
    deletePath: "auth/jwt/role/workload",
    body: {
      role_type: "jwt",
      bound_audiences: [vhsm.workloadAudience],
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
const vhsmArgs = {
  url: vhsm.url,
  caFingerprint: vhsm.caFingerprint,
  ...auth,
  caPem: vhsm.caPem,
  attestation: vhsm.attestation,
};
const vmsDir = path.join(stateDir, "vms");
const apiKey = new GeneratedSecret("web-api-key", { bytes: 24 });
const dbPassword = new GeneratedSecret("db-password", { bytes: 24 });

// A key pair for logging in to `web` (real guests): the guest authorizes the public key; the host key
// is trusted through the runtime's SSH CA alone.
const sshDir = path.join(stateDir, "ssh");
const userKey = path.join(sshDir, "id_ed25519");
if (real && !existsSync(userKey)) {
  mkdirSync(sshDir, { recursive: true, mode: 0o700 });
  const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `bk-local-${stack}`, "-f", userKey]);
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
}
const sshAuthorizedKeys = real ? [readFileSync(`${userKey}.pub`, "utf8").trim()] : [];

const web = new LocalConfidentialVm("web", {
  vhsm: vhsmArgs,
  mode: resolved.mode,
  platformDir: platform.dir,
  boot,
  vcpus: vcpus.web,
  ...(real ? {} : { cpuModel: "EPYC-v4" }),
  secrets: { API_KEY: apiKey.value },
  tls: { role: "pki/vm", commonName: `web.${domain}` },
  sshHost: { role: "ssh/host", principals: [`web.${domain}`] },
  sshPort,
  sshAuthorizedKeys,
  stateDir: path.join(vmsDir, "web"),
  waitFor: runtimeReady,
});
const db = new LocalConfidentialVm("db", {
  vhsm: vhsmArgs,
  mode: resolved.mode,
  platformDir: platform.dir,
  boot,
  vcpus: vcpus.db,
  ...(real ? {} : { cpuModel: "EPYC-v4" }),
  secrets: { DB_PASSWORD: dbPassword.value },
  tls: { role: "pki/vm", commonName: `db.${domain}` },
  stateDir: path.join(vmsDir, "db"),
  waitFor: runtimeReady,
});
const vms: Record<string, LocalConfidentialVm> = { web, db };

// 4. Tamper demonstrations, registered with exactly web's inputs (same vCPUs, same image, same user-data
// plan); the changed copies go to <stateDir>/boot. Real guests boot them once web and db are up, with
// less memory (not measured: they are expected to be refused).
if (tamperDemo) {
  const tamperDir = path.join(stateDir, "boot");
  const like = (name: string) => ({
    vhsm: vhsmArgs,
    mode: resolved.mode,
    platformDir: platform.dir,
    boot,
    vcpus: vcpus.web,
    ...(real ? { memoryMb: 768 } : { cpuModel: "EPYC-v4" }),
    secrets: { API_KEY: apiKey.value },
    stateDir: path.join(vmsDir, name),
    waitFor: real ? [...runtimeReady, web, db] : runtimeReady,
  });
  // One byte of the firmware changed, in erased flash no code reads: the guest boots exactly as before;
  // only the measurement tells.
  vms.tampered = new LocalConfidentialVm("tampered", {
    ...like("tampered"),
    tamper: { case: "firmware", dir: tamperDir },
  });
  if (real) {
    // The kernel command line, a swapped initrd, another kernel: each in the launch digest (the AmdSev
    // firmware's kernel-hashes table), so the report names another measurement.
    for (const c of ["cmdline", "initrd", "kernel"] as const)
      vms[c] = new LocalConfidentialVm(c, { ...like(c), tamper: { case: c, dir: tamperDir } });
    // One block of the root filesystem: bound through the verity root hash on the measured command line;
    // dm-verity refuses the block while the initramfs mounts the root, so the agent never runs.
    vms.rootfs = new LocalConfidentialVm("rootfs", { ...like("rootfs"), tamper: { case: "rootfs", dir: tamperDir } });
    // The host (or a cloud's metadata service) adds a command to the user-data after registration: same
    // image, same firmware, same launch measurement — only the user-data hash the agent binds differs.
    vms.injected = new LocalConfidentialVm("injected", {
      ...like("injected"),
      injectUserData: 'runcmd:\n  - [sh, -c, "echo INJECTED-RUNCMD-RAN > /dev/console"]\n',
    });
  }
}

export const runtimeUrl = vhsm.url;
export const runtimeCaFingerprint = vhsm.caFingerprint;
// With the runtime in its guest, its audit log is inside the guest (not on this machine).
export const auditLog = attestedVhsm ? "" : path.join(stateDir, "vhsm", "audit.log");
export const vhsmMode = { mode: attestedVhsm ? "confidential-vm" : "process", reason: vhsmResolved.why };
export const vhsmAttestation = vhsm.attestationSummary;
export const simulatedArkSha256 = platform.arkSha256;
export const bootInputs = web.bootInputs;
export const vmMode = { mode: resolved.mode, reason: resolved.why };
export const sshUserKey = userKey;
export const sshKnownHostsFile = path.join(sshDir, "known_hosts");
export const vm = Object.fromEntries(
  Object.entries(vms).map(([name, v]) => [
    name,
    pulumi
      .all([
        pulumi.all([v.workloadId, v.expectedMeasurement, v.measurement, v.kernelMeasured, v.verdict, v.reason]),
        // pulumi.all's tuple overloads stop at 8 elements: two groups keep each element's type.
        pulumi.all([v.delivered, v.root, v.pid, v.mode, v.status]),
        pulumi.all([v.sshPort, v.knownHosts, v.bootSeconds, v.accel]),
        pulumi.all([v.consoleLog, v.tampered, v.pspRequests]),
      ])
      .apply(
        ([
          [workloadId, expectedMeasurement, measurement, kernelMeasured, verdict, reason],
          [delivered, root, pid, mode, status],
          [sshPort, knownHosts, bootSeconds, accel],
          [consoleLog, tampered, pspRequests],
        ]) => ({
          workloadId,
          expectedMeasurement,
          measurement,
          kernelMeasured,
          verdict,
          reason,
          delivered,
          root,
          pid,
          mode,
          status,
          sshPort,
          knownHosts,
          bootSeconds,
          accel,
          consoleLog,
          tampered,
          pspRequests,
        }),
      ),
  ]),
);
