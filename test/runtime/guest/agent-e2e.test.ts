// The enclaivelet end to end against a real runtime over HTTPS (pinned CA), with simulated SNP
// evidence exposed through a configfs-tsm-shaped directory: secrets delivered and provisioned into a
// temporary root; wrong measurement → nothing delivered, nothing written; runtime down → retries
// then a clear failure; a replayed attestation → refused; the LUKS volume formatted for real.
import { describe, expect, it, beforeAll, afterAll } from "vitest";
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { execFile, spawnSync } from "node:child_process";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { runAgent, type AgentOutcome } from "../../../runtime/guest/agent.js";
import type { AttestObserver } from "../../../runtime/guest/attest.js";
import { parseConfig, type EnclaiveletConfig } from "../../../runtime/guest/config.js";
import { memoryLogger, formatLogLine, type LogEvent } from "../../../runtime/guest/log.js";
import { spawnRunner, type CommandRunner } from "../../../runtime/guest/exec.js";
import { sshCertValidBefore } from "../../../runtime/guest/provision/ssh.js";
import type { WireEvidence, EvidenceProvider } from "../../../runtime/guest/evidence/types.js";
import { RuntimeError } from "../../../runtime/guest/client.js";
import { startFakeConfigfsTsm, type FakeConfigfs } from "./fake-configfs.js";
import { startEnclaiveletStack, GOOD_MEASUREMENT, WRONG_MEASUREMENT, type EnclaiveletStack } from "./stack.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";

const hasCryptsetup = haveCommand("cryptsetup", ["--version"]);
const isRoot = process.getuid?.() === 0;
// dm-crypt mappings need a working device-mapper in the kernel; containers often lack it even when
// /dev/mapper/control exists. `dmsetup version` asks the kernel driver and fails without it.
const hasDeviceMapper = spawnSync("dmsetup", ["version"], { stdio: "ignore" }).status === 0;

let stack: EnclaiveletStack;
let good: FakeConfigfs;
let wrong: FakeConfigfs;
const temps: string[] = [];

async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

beforeAll(async () => {
  stack = await startEnclaiveletStack();
  const fakeKernel = (measurement: string) => async (inblob: Buffer) => {
    const r = await stack.sim.report({ measurement, reportData: inblob });
    return { outblob: Buffer.from(r.report), auxblob: Buffer.from(r.certTable) };
  };
  good = await startFakeConfigfsTsm(fakeKernel(GOOD_MEASUREMENT));
  wrong = await startFakeConfigfsTsm(fakeKernel(WRONG_MEASUREMENT));
});

afterAll(async () => {
  await good?.close();
  await wrong?.close();
  await stack?.rt.close();
  for (const d of temps) await rm(d, { recursive: true, force: true });
});

function config(root: string, over: Record<string, unknown> = {}): EnclaiveletConfig {
  return parseConfig({
    runtimeUrl: stack.rt.url,
    runtimeCaSha256: stack.caSha256,
    workloadId: "web",
    evidence: { provider: "configfs-tsm", configfsRoot: good.root },
    root,
    retry: { attempts: 4, initialDelayMs: 5, maxDelayMs: 40 },
    files: [
      { path: "/etc/app/db-password", secret: "web/db", field: "password", mode: "0640", owner: "root", group: "root" },
    ],
    envFiles: [{ path: "/etc/app/env", vars: { DB_PASSWORD: "web/db#password", API_KEY: "secret/data/web/api#key" } }],
    tls: {
      certPath: "/etc/ssl/bk/tls.crt",
      keyPath: "/etc/ssl/bk/tls.key",
      chainPath: "/etc/ssl/bk/chain.pem",
      renewBeforeSeconds: 3600,
    },
    ssh: { keyTypes: ["ed25519"], dir: "/etc/ssh", renewBeforeSeconds: 3600 },
    hook: { command: ["sh", "-c", 'echo provisioned > "$BUCKYPAPER_ROOT/hook-ran"'] },
    ...over,
  });
}

/** Records every command line (never stdin, only its length); runs them for real. Without a
 *  device-mapper, `cryptsetup open` becomes `cryptsetup open --test-passphrase` (the real key check
 *  against the real LUKS header, without creating a mapping) and mkfs/mount are recorded only. */
function luksAwareRunner(calls: { argv: string[]; stdinBytes: number }[]): CommandRunner {
  const ok = { code: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
  return {
    async run(argv, opts) {
      calls.push({ argv: [...argv], stdinBytes: opts?.stdin?.length ?? 0 });
      if (!hasDeviceMapper || !isRoot) {
        if (argv[0] === "cryptsetup" && argv[1] === "status") return { ...ok, code: 4 };
        if (argv[0] === "cryptsetup" && argv[1] === "open")
          return spawnRunner.run(["cryptsetup", "open", "--test-passphrase", "--key-file", "-", argv.at(-2)!], opts);
        if (argv[0].startsWith("mkfs.") || argv[0] === "mount") return ok;
        if (argv[0] === "mountpoint") return { ...ok, code: 1 };
      }
      return spawnRunner.run(argv, opts);
    },
  };
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

const journal = (events: LogEvent[]) => events.map(formatLogLine).join("\n");

describe("enclaivelet end to end (real runtime over HTTPS, simulated SNP via configfs-tsm)", () => {
  let root: string;
  let device: string;
  let first: AgentOutcome;
  const calls: { argv: string[]; stdinBytes: number }[] = [];
  const log = memoryLogger();
  const captured: { workload_id: string; nonce: string; evidence: WireEvidence; ephemeral_public_key: string }[] = [];
  let luks = false;

  beforeAll(async () => {
    root = await tempDir("bk-root-");
    device = path.join(await tempDir("bk-disk-"), "data.img");
    await writeFile(device, Buffer.alloc(0));
    spawnSync("truncate", ["-s", "20M", device]);
    luks = hasCryptsetup;
    if (!hasDeviceMapper || !isRoot)
      console.warn(
        `[note] no device-mapper here (${hasDeviceMapper ? "not root" : "'dmsetup version' fails: no kernel device-mapper"}): the LUKS2 volume is formatted for real and its key checked with 'cryptsetup open --test-passphrase'; opening the mapping, mkfs and mount are asserted as command lines only`,
      );
    const cfg = config(
      root,
      luks ? { volume: { device, name: "bk-e2e-data", filesystem: "ext4", mountpoint: "/srv/data" } } : {},
    );
    first = await runAgent(cfg, { log, runner: luksAwareRunner(calls), onAttestRequest: (r) => void captured.push(r) });
  });

  it("attests, receives the bundle and provisions every file into the root", async () => {
    expect(first.error).toBeUndefined();
    expect(first.ok).toBe(true);
    expect(first.exitCode).toBe(0);
    expect(await readFile(path.join(root, "etc/app/db-password"), "utf8")).toBe("web-db-s3cret");
    expect((await stat(path.join(root, "etc/app/db-password"))).mode & 0o777).toBe(0o640);
    expect(await readFile(path.join(root, "etc/app/env"), "utf8")).toBe(
      'DB_PASSWORD="web-db-s3cret"\nAPI_KEY="api-k3y-with-\\"quote\\""\n',
    );
    expect((await stat(path.join(root, "etc/app/env"))).mode & 0o777).toBe(0o600);
    expect(await readFile(path.join(root, "hook-ran"), "utf8")).toBe("provisioned\n");
    // Only this workload's secrets.
    const everything = (
      await Promise.all((await listTree(root)).map((f) => readFile(path.join(root, f), "utf8")))
    ).join("\n");
    expect(everything).not.toContain("other-db-s3cret");
  });

  it("TLS: key and certificate from the workload's PKI role, matching, with the chain", async () => {
    const cert = new X509Certificate(await readFile(path.join(root, "etc/ssl/bk/tls.crt")));
    const key = createPrivateKey(await readFile(path.join(root, "etc/ssl/bk/tls.key")));
    expect(cert.publicKey.equals(createPublicKey(key))).toBe(true);
    expect(cert.subject).toContain("CN=web.example.com");
    expect(cert.subjectAltName).toContain("www.example.com");
    expect((await stat(path.join(root, "etc/ssl/bk/tls.key"))).mode & 0o777).toBe(0o600);
    const chain = new X509Certificate(await readFile(path.join(root, "etc/ssl/bk/chain.pem")));
    expect(cert.verify(chain.publicKey)).toBe(true);
  });

  it("SSH: a host key generated in the guest, certified by the runtime's SSH CA, and the sshd drop-in", async (ctx) => {
    if (!requireTool("ssh-keygen", haveCommand("ssh-keygen", ["-?"]))) return ctx.skip();
    const keyPath = path.join(root, "etc/ssh/ssh_host_ed25519_key");
    expect((await stat(keyPath)).mode & 0o777).toBe(0o600);
    const certLine = await readFile(keyPath + "-cert.pub", "utf8");
    expect(certLine).toMatch(/^ssh-ed25519-cert-v01@openssh.com /);
    const shown = spawnSync("ssh-keygen", ["-L", "-f", keyPath + "-cert.pub"], { encoding: "utf8" });
    expect(shown.stdout).toMatch(/Type: ssh-ed25519-cert-v01@openssh.com host certificate/);
    expect(shown.stdout).toMatch(/web\.example\.com/);
    // The certificate is for our key: ssh-keygen derives the same public key from the private one.
    const pub = spawnSync("ssh-keygen", ["-y", "-f", keyPath], { encoding: "utf8" }).stdout.trim().split(/\s+/)[1];
    const certPub = (await readFile(keyPath + ".pub", "utf8")).trim().split(/\s+/)[1];
    expect(pub).toBe(certPub);
    expect(sshCertValidBefore(certLine) * 1000).toBeGreaterThan(Date.now());
    expect(await readFile(path.join(root, "etc/ssh/sshd_config.d/50-buckypaper-host-cert.conf"), "utf8")).toContain(
      "HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub",
    );
  });

  it("LUKS2: formatted on first boot with the key passed on stdin, never on a command line", async (ctx) => {
    if (!requireTool("cryptsetup", hasCryptsetup)) return ctx.skip();
    const dump = spawnSync("cryptsetup", ["luksDump", device], { encoding: "utf8" });
    expect(dump.status).toBe(0);
    expect(dump.stdout).toMatch(/^Version:\s+2$/m);
    const format = calls.find((c) => c.argv[0] === "cryptsetup" && c.argv[1] === "luksFormat")!;
    expect(format.argv).toEqual([
      "cryptsetup",
      "luksFormat",
      "--type",
      "luks2",
      "--batch-mode",
      "--pbkdf",
      "pbkdf2",
      "--pbkdf-force-iterations",
      "1000",
      "--label",
      "bk-e2e-data",
      "--key-file",
      "-",
      device,
    ]);
    expect(format.stdinBytes).toBe(32);
    const open = calls.find((c) => c.argv[0] === "cryptsetup" && c.argv[1] === "open")!;
    expect(open.argv).toEqual(["cryptsetup", "open", "--type", "luks2", "--key-file", "-", device, "bk-e2e-data"]);
    expect(open.stdinBytes).toBe(32);
    expect(calls.find((c) => c.argv[0] === "mkfs.ext4")?.argv).toEqual([
      "mkfs.ext4",
      "-q",
      "-L",
      "bk-e2e-data",
      "/dev/mapper/bk-e2e-data",
    ]);
    expect(calls.find((c) => c.argv[0] === "mount")?.argv).toEqual([
      "mount",
      "/dev/mapper/bk-e2e-data",
      path.join(root, "srv/data"),
    ]);
    // The open above really checked the runtime's disk key against the header: a wrong key fails.
    const wrongKey = spawnSync("cryptsetup", ["open", "--test-passphrase", "--key-file", "-", device], {
      input: Buffer.alloc(32, 1),
    });
    expect(wrongKey.status).not.toBe(0);
  });

  it("the journal has stable prefixed JSON lines and no secret", () => {
    const text = journal(log.events);
    for (const line of text.split("\n")) {
      expect(line.startsWith("enclaivelet: ")).toBe(true);
      JSON.parse(line.slice("enclaivelet: ".length));
    }
    expect(log.events.map((e) => e.event)).toEqual(
      expect.arrayContaining([
        "start",
        "evidence.collected",
        "attest.ok",
        "login.ok",
        "bundle.received",
        "provision.file",
        "hook.ok",
        "done",
      ]),
    );
    expect(text).not.toContain("web-db-s3cret");
    expect(text).not.toMatch(/PRIVATE KEY/);
  });

  it("is idempotent on reboot: nothing rewritten, the volume not formatted again, certificates kept", async () => {
    const again: typeof calls = [];
    const cfg = config(
      root,
      luks ? { volume: { device, name: "bk-e2e-data", filesystem: "ext4", mountpoint: "/srv/data" } } : {},
    );
    const before = (await stat(path.join(root, "etc/ssl/bk/tls.crt"))).mtimeMs;
    const r = await runAgent(cfg, { log: memoryLogger(), runner: luksAwareRunner(again) });
    expect(r.error).toBeUndefined();
    expect(r.written).toEqual([]);
    expect(r.unchanged.length).toBeGreaterThanOrEqual(3);
    expect(again.some((c) => c.argv[1] === "luksFormat")).toBe(false);
    expect((await stat(path.join(root, "etc/ssl/bk/tls.crt"))).mtimeMs).toBe(before);
  });

  it("renews the TLS certificate once it is inside the renewal window", async () => {
    const cert = new X509Certificate(await readFile(path.join(root, "etc/ssl/bk/tls.crt")));
    const r = await runAgent(
      config(root, {
        tls: { certPath: "/etc/ssl/bk/tls.crt", keyPath: "/etc/ssl/bk/tls.key", renewBeforeSeconds: 48 * 3600 },
      }),
      { log: memoryLogger() },
    );
    expect(r.error).toBeUndefined();
    expect(r.written).toEqual(expect.arrayContaining(["/etc/ssl/bk/tls.crt", "/etc/ssl/bk/tls.key"]));
    expect(new X509Certificate(await readFile(path.join(root, "etc/ssl/bk/tls.crt"))).serialNumber).not.toBe(
      cert.serialNumber,
    );
  });

  it("a captured attestation replayed as-is is refused (the nonce is single use)", async () => {
    expect(captured).toHaveLength(1);
    const err = await stack.client.request("POST", "nitride/attest", { body: captured[0] }).catch((e) => e);
    expect(err).toBeInstanceOf(RuntimeError);
    expect(err.status).toBe(403);
    expect(err.message).toMatch(/nonce/);
  });

  it("captured evidence replayed under a fresh nonce is refused (REPORT_DATA binding) and nothing is written", async () => {
    const replayRoot = await tempDir("bk-replay-");
    const replaying: EvidenceProvider = {
      name: "simulator",
      available: async () => true,
      collect: async () => captured[0].evidence,
    };
    const events = memoryLogger();
    const r = await runAgent(config(replayRoot), { log: events, provider: replaying });
    expect(r.ok).toBe(false);
    expect(r.exitCode).toBe(1);
    expect(r.reason).toBe("refused");
    expect(r.error).toMatch(/report-data/);
    expect(await listTree(replayRoot)).toEqual([]);
    expect(events.events.filter((e) => e.event === "retry")).toEqual([]); // a refusal is final at once
  });
});

describe("enclaivelet refusals and failures leave nothing behind", () => {
  it("pqHybrid: false sends no ML-KEM key: a require_pq_hybrid workload refuses it, nothing written; a classical workload still provisions", async () => {
    await stack.admin("PUT", "nitride/workloads/pq-only", {
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      secrets: { kv: [] },
      require_pq_hybrid: true,
    });
    const root = await tempDir("bk-pqoptout-");
    const captured: Parameters<AttestObserver>[0][] = [];
    const r = await runAgent(config(root, { workloadId: "pq-only", pqHybrid: false }), {
      log: memoryLogger(),
      onAttestRequest: (x) => void captured.push(x),
    });
    expect(captured).toHaveLength(1);
    expect(captured[0].mlkem_public_key).toBeUndefined();
    expect(r.ok).toBe(false);
    expect(r.reason).toBe("refused");
    expect(r.error).toMatch(/require_pq_hybrid/);
    expect(await listTree(root)).toEqual([]);
    // The same opt-out against a workload without the requirement: classical sealing, provisioned.
    const classicRoot = await tempDir("bk-pqclassic-");
    const seen: Parameters<AttestObserver>[0][] = [];
    const ok = await runAgent(config(classicRoot, { pqHybrid: false }), {
      log: memoryLogger(),
      runner: luksAwareRunner([]),
      onAttestRequest: (x) => void seen.push(x),
    });
    expect(ok.ok, ok.error).toBe(true);
    expect(seen[0].mlkem_public_key).toBeUndefined();
    expect(await listTree(classicRoot)).toContain("etc/app/db-password");
    expect(() => config(root, { pqHybrid: "no" })).toThrow(/pqHybrid: must be true or false/);
  });

  it("wrong measurement: attestation refused, nothing delivered, nothing written, exit 1", async () => {
    const root = await tempDir("bk-wrong-");
    const calls: { argv: string[]; stdinBytes: number }[] = [];
    const events = memoryLogger();
    const device = path.join(await tempDir("bk-wrongdisk-"), "d.img");
    spawnSync("truncate", ["-s", "20M", device]);
    const r = await runAgent(
      config(root, {
        evidence: { provider: "configfs-tsm", configfsRoot: wrong.root },
        volume: { device, name: "bk-wrong", filesystem: "ext4" },
      }),
      { log: events, runner: luksAwareRunner(calls) },
    );
    expect(r.ok).toBe(false);
    expect(r.exitCode).toBe(1);
    expect(r.reason).toBe("refused");
    expect(r.error).toMatch(/policy\.measurement/);
    expect(await listTree(root)).toEqual([]);
    expect(calls.filter((c) => c.argv[0] === "cryptsetup")).toEqual([]);
    expect(events.events.some((e) => e.event === "bundle.received")).toBe(false);
    expect(events.events.at(-1)).toMatchObject({ level: "error", event: "failed", reason: "refused" });
  });

  it("a secret missing from the bundle fails before anything is written (stage, then commit)", async () => {
    const root = await tempDir("bk-missing-");
    const r = await runAgent(
      config(root, {
        files: [
          { path: "/etc/app/db-password", secret: "web/db", field: "password" },
          { path: "/etc/app/nope", secret: "web/not-granted" },
        ],
      }),
      { log: memoryLogger() },
    );
    expect(r.ok).toBe(false);
    expect(r.reason).toBe("provision");
    expect(r.error).toMatch(/web\/not-granted/);
    expect(await listTree(root)).toEqual([]);
  });

  it("runtime down: retries with growing backoff, then a clear failure and nothing written", async () => {
    const root = await tempDir("bk-down-");
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const delays: number[] = [];
    const events = memoryLogger();
    const r = await runAgent(
      config(root, {
        runtimeUrl: `https://127.0.0.1:${port}`,
        retry: { attempts: 5, initialDelayMs: 100, maxDelayMs: 1000 },
      }),
      {
        log: events,
        sleep: async (ms) => void delays.push(ms),
      },
    );
    expect(r.ok).toBe(false);
    expect(r.exitCode).toBe(1);
    expect(r.reason).toBe("unreachable");
    expect(r.error).toMatch(/gave up after 5 attempts.*ECONNREFUSED/);
    expect(delays).toHaveLength(4);
    // Full jitter in [50 %, 100 %] of 100·2^(n-1): each bound doubles.
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(50 * 2 ** i);
      expect(d).toBeLessThanOrEqual(100 * 2 ** i);
    });
    expect(events.events.filter((e) => e.event === "retry")).toHaveLength(4);
    expect(await listTree(root)).toEqual([]);
  });

  it("runtime reachable only after a few failed connections: retries, then provisions", async () => {
    const root = await tempDir("bk-flaky-");
    const target = new URL(stack.rt.url);
    let connections = 0;
    // A TCP front that drops the first three connections (network still coming up), then relays.
    const front = createServer((sock) => {
      if (connections++ < 3) return void sock.destroy();
      const up = connect(Number(target.port), target.hostname);
      sock.pipe(up).pipe(sock);
      up.on("error", () => sock.destroy());
      sock.on("error", () => up.destroy());
    });
    await new Promise<void>((r) => front.listen(0, "127.0.0.1", () => r()));
    try {
      const events = memoryLogger();
      const r = await runAgent(
        config(root, {
          runtimeUrl: `https://127.0.0.1:${(front.address() as { port: number }).port}`,
          retry: { attempts: 6, initialDelayMs: 5, maxDelayMs: 20 },
        }),
        { log: events },
      );
      expect(r.error).toBeUndefined();
      expect(r.ok).toBe(true);
      expect(events.events.filter((e) => e.event === "retry").length).toBeGreaterThanOrEqual(1);
      expect(await readFile(path.join(root, "etc/app/db-password"), "utf8")).toBe("web-db-s3cret");
    } finally {
      front.close();
    }
  });

  it("a runtime whose certificate does not chain to the pinned CA is refused before any request", async () => {
    const root = await tempDir("bk-pin-");
    const r = await runAgent(config(root, { runtimeCaSha256: "ab".repeat(32) }), { log: memoryLogger() });
    expect(r.ok).toBe(false);
    expect(r.reason).toBe("pinning");
    expect(r.error).toMatch(/matches the pinned runtime CA/);
    expect(await listTree(root)).toEqual([]);
  });
});

describe("buckypaper enclaivelet run (the CLI as systemd runs it)", () => {
  it("provisions from a config file and prints prefixed JSON journal lines; exit 0", async () => {
    const root = await tempDir("bk-cli-");
    const cfgFile = path.join(await tempDir("bk-cli-cfg-"), "enclaivelet.json");
    await writeFile(
      cfgFile,
      JSON.stringify({
        runtimeUrl: stack.rt.url,
        runtimeCaSha256: stack.caSha256,
        workloadId: "web",
        evidence: { provider: "configfs-tsm", configfsRoot: good.root },
        root,
        files: [{ path: "/run/secrets/db", secret: "web/db", field: "password" }],
      }),
    );
    // Asynchronous: the runtime and the fake kernel live in this process and must keep serving.
    const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [path.join(repoRoot, "bin/buckypaper.js"), "enclaivelet", "run", "--config", cfgFile],
        { encoding: "utf8", timeout: 60_000 },
        (err, stdout, stderr) =>
          resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
      );
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines.every((l) => l.startsWith("enclaivelet: "))).toBe(true);
    expect(JSON.parse(lines.at(-1)!.slice(13))).toMatchObject({ event: "done", written: 1 });
    expect(await readFile(path.join(root, "run/secrets/db"), "utf8")).toBe("web-db-s3cret");
  });

  it("a bad config is a usage error (exit 2) naming the field", () => {
    const dir = path.join(tmpdir(), `bk-badcfg-${process.pid}.json`);
    spawnSync("sh", ["-c", `echo '{"runtimeUrl":"https://x","runtimeCaSha256":"zz","workloadId":"w"}' > ${dir}`]);
    const r = spawnSync(
      process.execPath,
      [path.join(repoRoot, "bin/buckypaper.js"), "enclaivelet", "run", "--config", dir],
      { encoding: "utf8" },
    );
    spawnSync("rm", ["-f", dir]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/runtimeCaSha256/);
  });
});

describe("enclaivelet with TDX (simulated Intel hierarchy behind configfs-tsm, provider tdx_guest)", () => {
  const MRTD = Buffer.alloc(48, 0x7d);
  const RTMRS = [0, 1, 2, 3].map((i) => Buffer.alloc(48, 0x20 + i));
  let tdxFake: FakeConfigfs;

  beforeAll(async () => {
    const { TdxSimulator } = await import("../../../runtime/sim/tdx.js");
    const tdx = await TdxSimulator.create();
    await stack.admin("PUT", "nitride/config", { simulated_tdx_roots: [tdx.rootFingerprint], intel_pcs: "off" });
    await stack.admin("PUT", "secret/data/tdx/app", { data: { token: "tdx-app-s3cret" } });
    await stack.admin("PUT", "nitride/workloads/tdx-app", {
      platforms: ["tdx"],
      reference_values: { tdx: [{ mrtd: MRTD.toString("hex"), rtmrs: RTMRS.map((r) => r.toString("hex")) }] },
      secrets: { kv: ["secret/data/tdx/app"] },
    });
    await stack.admin("POST", "auth/jwt/role/tdx", {
      role_type: "jwt",
      bound_audiences: ["buckypaper"],
      user_claim: "sub",
      bound_claims: { platform: "tdx" },
      token_policies: ["nitride-workload-{{sub}}"],
      token_policies_template_claims: true,
      token_ttl: "10m",
    });
    tdxFake = await startFakeConfigfsTsm(
      async (inblob) => ({ outblob: Buffer.from(tdx.quote({ mrTd: MRTD, rtmrs: RTMRS, reportData: inblob })) }),
      "tdx_guest",
    );
  });
  afterAll(async () => tdxFake?.close());

  it("attests with a TD quote and provisions the TDX workload's secret", async () => {
    const root = await tempDir("bk-tdx-");
    const events = memoryLogger();
    const r = await runAgent(
      parseConfig({
        runtimeUrl: stack.rt.url,
        runtimeCaSha256: stack.caSha256,
        workloadId: "tdx-app",
        jwtRole: "tdx",
        evidence: { provider: "configfs-tsm", configfsRoot: tdxFake.root },
        root,
        files: [{ path: "/run/secrets/token", secret: "tdx/app#token" }],
      }),
      { log: events },
    );
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(events.events.find((e) => e.event === "evidence.collected")).toMatchObject({ kind: "tdx" });
    expect(await readFile(path.join(root, "run/secrets/token"), "utf8")).toBe("tdx-app-s3cret");
  });
});
