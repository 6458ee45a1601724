// provider/service.ts — what the Vhsm component's RuntimeService does — with a real `buckypaper
// runtime server` process: locally and on a host reached over real SSH (a private sshd on loopback).
// Start + init + unseal, crash → restart + unseal from the keys in state, stop + delete (the opt-out);
// by default: root revoked, deployer credential, shares only encrypted, restart unsealed by the local
// recovery key, or — with operators' keys — by a quorum of operators with the CLI.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { requireTool } from "../support/prereq.js";
import {
  createService,
  deleteService,
  diffService,
  ensureRunning,
  serviceRunning,
  checkService,
  type ServiceInputs,
  type ServiceOutputs,
} from "../../provider/service.js";
import { runtimeRequest, RuntimeApiError } from "../../provider/client.js";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { statSync, writeFileSync } from "node:fs";
import { generateRecoveryKey, shareKeyId, recoveryKeyId } from "../../runtime/client/recovery-share.js";
import { renderRuntimeConfig } from "../../runtime/server/http/config-render.js";
import { SSHD, startTestSshd, type TestSshd } from "./sshd.js";
import { freePort } from "../support/net.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CLI = [process.execPath, path.join(ROOT, "bin", "buckypaper.js")];

async function inputs(stateDir: string, ssh?: TestSshd, hostKey?: string, workers?: number): Promise<ServiceInputs> {
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const i: ServiceInputs = {
    stateDir,
    serverCommand: [...CLI, "runtime", "server", "--config", "{config}"],
    config: renderRuntimeConfig({
      stateDir,
      listenAddress: "127.0.0.1",
      port,
      tls: true,
      publicHost: "127.0.0.1",
      publicUrl: url,
      workers,
    }),
    url,
    keyShares: 3,
    keyThreshold: 2,
    // lifecycle() checks the opt-out (root token and unseal keys in the outputs); the default is below.
    insecureKeepRootTokenInState: true,
  };
  if (ssh)
    i.ssh = {
      host: ssh.host,
      port: ssh.port,
      user: ssh.user,
      privateKey: ssh.clientKey,
      hostKey: hostKey ?? ssh.knownHosts,
    };
  return i;
}

async function lifecycle(i: ServiceInputs, expectWorkers = 0): Promise<void> {
  const out = await createService(i);
  try {
    expect(out.unsealKeys).toHaveLength(3);
    expect(out.caFingerprint).toMatch(/^[0-9a-f]{64}$/);
    // The CA returned by init is the one the listener now serves, pinned by fingerprint alone.
    const conn = { url: i.url, token: out.rootToken, caFingerprint: out.caFingerprint };
    const status = (await runtimeRequest(conn, "GET", "sys/seal-status")).body as {
      sealed: boolean;
      t: number;
      n: number;
    };
    expect(status).toMatchObject({ sealed: false, t: 2, n: 3 });
    expect(await serviceRunning(out)).toBe(true);
    expect(
      await diffService(out as unknown as Record<string, unknown>, i as unknown as Record<string, unknown>),
    ).toMatchObject({ changes: false, replaces: [] });

    // Crash: diff notices, ensureRunning restarts from the same storage and unseals with 2 of 3 keys.
    const pid = Number(readFileSync(path.join(i.stateDir, "runtime.pid"), "utf8"));
    const workers = i.ssh
      ? []
      : readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    expect(workers).toHaveLength(expectWorkers);
    process.kill(pid, "SIGKILL");
    await new Promise((r) => setTimeout(r, 300));
    // Workers of a killed supervisor shut down on their own (they lose its IPC channel).
    for (let t = 0; t < 50 && workers.some((w) => existsSync(`/proc/${w}`)); t++)
      await new Promise((r) => setTimeout(r, 100));
    expect(workers.filter((w) => existsSync(`/proc/${w}`))).toEqual([]);
    expect(await serviceRunning(out)).toBe(false);
    expect(
      (await diffService(out as unknown as Record<string, unknown>, i as unknown as Record<string, unknown>)).changes,
    ).toBe(true);
    const again = await ensureRunning(out, i);
    expect(again.rootToken).toBe(out.rootToken);
    expect(await serviceRunning(again)).toBe(true);
    const self = (await runtimeRequest(conn, "GET", "auth/token/lookup-self")).body as { data: { policies: string[] } };
    expect(self.data.policies).toContain("root");
  } finally {
    await deleteService(i);
  }
  expect(existsSync(i.stateDir)).toBe(false);
  await expect(
    runtimeRequest({ url: i.url, token: "x", caFingerprint: "00".repeat(32) }, "GET", "sys/health"),
  ).rejects.toThrow(/ECONNREFUSED/);
}

describe("RuntimeService on this machine", () => {
  it("start, init (3 shares, threshold 2), unseal, crash + restart, delete", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-svc-"));
    try {
      await lifecycle(await inputs(path.join(tmp, "vhsm")));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);

  it("the same with workers = 2: a SIGKILL of the supervisor takes its workers down, and the restart unseals them all", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-svc-"));
    try {
      const i = await inputs(path.join(tmp, "vhsm"), undefined, undefined, 2);
      expect(JSON.parse(i.config).workers).toBe(2);
      await lifecycle(i, 2); // and checks that the killed supervisor's 2 workers are gone before the restart
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);

  it("a server that cannot start fails with its log, and leaves nothing behind", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-svc-"));
    const i = await inputs(path.join(tmp, "vhsm"));
    i.config = '{"storage": {"nosuch": {}}, "listener": {"tcp": {"address": "127.0.0.1:1"}}}';
    i.startTimeout = 20;
    await expect(createService(i)).rejects.toThrow(/storage: unknown type 'nosuch'/);
    expect(existsSync(i.stateDir)).toBe(false);
    rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  it("check names bad settings", () => {
    const r = checkService({ stateDir: "relative", url: "ftp://x", serverCommand: [], keyShares: 2, keyThreshold: 3 });
    expect(r.failures.map((f) => f.property).sort()).toEqual(["keyThreshold", "serverCommand", "stateDir", "url"]);
  });
});

describe("RuntimeService by default: no root token, no share, no private key in its outputs", () => {
  const walk = (v: unknown): string => JSON.stringify(v);

  it("bootstraps the deployer, revokes root; a crash is unsealed by the local recovery key; delete removes the key files", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-svc-"));
    try {
      const i = await inputs(path.join(tmp, "vhsm"));
      delete i.insecureKeepRootTokenInState;
      i.keyShares = 1;
      i.keyThreshold = 1;
      i.deployerKeyFile = path.join(tmp, "cfg", "deployer.pem");
      i.localRecoveryKeyFile = path.join(tmp, "cfg", "recovery.jwk");
      const out = await createService(i);
      try {
        expect(out.rootToken).toBeUndefined();
        expect(out.unsealKeys).toBeUndefined();
        expect(out.deployer).toEqual({
          mount: "bk-deployer",
          role: "deployer",
          keyFile: i.deployerKeyFile,
          // the runtime's own deployer JWT audience (a JWT for another runtime is refused)
          audience: expect.stringMatching(/^buckypaper-deployer:[0-9a-f]{32}$/),
        });
        expect(out.recoveryShares).toHaveLength(1);
        const privateKey = readFileSync(i.deployerKeyFile, "utf8");
        const recoveryKey = readFileSync(i.localRecoveryKeyFile, "utf8");
        for (const f of [i.deployerKeyFile, i.localRecoveryKeyFile]) expect(statSync(f).mode & 0o777).toBe(0o600);
        const text = walk(out);
        expect(text).not.toContain(privateKey.split("\n")[1]);
        expect(text).not.toContain(JSON.parse(recoveryKey).d);
        expect(shareKeyId(out.recoveryShares![0])).toBe(await recoveryKeyId(JSON.parse(recoveryKey)));
        const dc = { url: i.url, deployer: out.deployer!, caFingerprint: out.caFingerprint };
        expect((await runtimeRequest(dc, "GET", "sys/mounts")).status).toBe(200);

        const pid = Number(readFileSync(path.join(i.stateDir, "runtime.pid"), "utf8"));
        process.kill(pid, "SIGKILL");
        await new Promise((r) => setTimeout(r, 300));
        expect(await serviceRunning(out)).toBe(false);
        const again = await ensureRunning(out, i);
        expect(await serviceRunning(again)).toBe(true);
        expect(again.rootToken).toBeUndefined();
        expect((await runtimeRequest(dc, "GET", "sys/mounts")).status).toBe(200);
      } finally {
        await deleteService(i);
      }
      expect(existsSync(i.deployerKeyFile)).toBe(false);
      expect(existsSync(i.localRecoveryKeyFile)).toBe(false);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);

  it("operators' keys (2 of 3): a restarted runtime stays sealed and says how to unseal; two operators unseal it with the CLI", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-svc-"));
    try {
      const i = await inputs(path.join(tmp, "vhsm"));
      delete i.insecureKeepRootTokenInState;
      const ops = await Promise.all([0, 1, 2].map(() => generateRecoveryKey()));
      i.recoveryKeys = ops.map((o) => JSON.stringify(o.publicJwk));
      i.deployerKeyFile = path.join(tmp, "cfg", "deployer.pem");
      // A private JWK given as a recipient is refused, naming the field.
      const bad = checkService({ ...i, recoveryKeys: [JSON.stringify(ops[0].privateJwk), ...i.recoveryKeys.slice(1)] });
      expect(bad.failures.map((f) => f.property)).toEqual(["recoveryKeys[0]"]);
      expect(checkService({ ...i, recoveryKeys: i.recoveryKeys.slice(1) }).failures.map((f) => f.property)).toEqual([
        "recoveryKeys",
      ]);
      const out = await createService(i);
      try {
        expect(out.recoveryShares).toHaveLength(3);
        const text = walk(out);
        for (const o of ops) expect(text).not.toContain(String(o.privateJwk.d));
        const pid = Number(readFileSync(path.join(i.stateDir, "runtime.pid"), "utf8"));
        process.kill(pid, "SIGKILL");
        await new Promise((r) => setTimeout(r, 300));
        await expect(ensureRunning(out, i)).rejects.toThrow(/sealed and Pulumi holds no unseal key.*2 of\s+3 shares/s);
        // Operators 1 and 3, each with their own private key file, each with their own share.
        const pin = ["--address", i.url, "--ca-fingerprint", out.caFingerprint];
        for (const n of [0, 2]) {
          const keyFile = path.join(tmp, `op${n}.jwk`);
          writeFileSync(keyFile, JSON.stringify(ops[n].privateJwk), { mode: 0o600 });
          const shareFile = path.join(tmp, `share${n}.jwe`);
          writeFileSync(shareFile, out.recoveryShares![n]);
          // Another operator's key does not open this share.
          if (n === 0) {
            const wrong = path.join(tmp, "wrong.jwk");
            writeFileSync(wrong, JSON.stringify(ops[1].privateJwk), { mode: 0o600 });
            const r = await promisify(execFile)(CLI[0], [
              CLI[1],
              "runtime",
              "unseal",
              ...pin,
              "--share",
              shareFile,
              "--recovery-key",
              wrong,
            ]).catch((e) => e);
            expect(String(r.stderr)).toMatch(/does not open with that key/);
          }
          await promisify(execFile)(CLI[0], [
            CLI[1],
            "runtime",
            "unseal",
            ...pin,
            "--share",
            shareFile,
            "--recovery-key",
            keyFile,
          ]);
        }
        expect(await serviceRunning(out)).toBe(true);
        const again = await ensureRunning(out, i);
        expect(await serviceRunning(again)).toBe(true);
        const dc = { url: i.url, deployer: out.deployer!, caFingerprint: out.caFingerprint };
        expect((await runtimeRequest(dc, "GET", "sys/mounts")).status).toBe(200);
      } finally {
        await deleteService(i);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);

  it("the opt-out cannot be turned back on once root is revoked; turning it off migrates in place", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-svc-"));
    try {
      const i = await inputs(path.join(tmp, "vhsm"));
      i.keyShares = 1;
      i.keyThreshold = 1;
      const old = await createService(i); // opt-out: root token and keys in the outputs
      try {
        const next = {
          ...i,
          insecureKeepRootTokenInState: undefined,
          deployerKeyFile: path.join(tmp, "d.pem"),
          localRecoveryKeyFile: path.join(tmp, "r.jwk"),
        };
        const migrated = await ensureRunning(old, next);
        expect(migrated.rootToken).toBeUndefined();
        expect(migrated.unsealKeys).toBeUndefined();
        expect(migrated.recoveryShares).toHaveLength(1);
        const r = await runtimeRequest(
          { url: i.url, token: old.rootToken!, caFingerprint: old.caFingerprint },
          "GET",
          "auth/token/lookup-self",
        ).catch((e) => e);
        expect(r).toBeInstanceOf(RuntimeApiError);
        expect((r as RuntimeApiError).status).toBe(403);
        await expect(ensureRunning(migrated, { ...next, insecureKeepRootTokenInState: true })).rejects.toThrow(
          /cannot be turned on/,
        );
      } finally {
        await deleteService(i);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);
});

const HAVE_SSHD = requireTool("OpenSSH server (sshd)", existsSync(SSHD));

describe.skipIf(!HAVE_SSHD)("RuntimeService over SSH", () => {
  let sshd: TestSshd;
  beforeAll(async () => {
    sshd = await startTestSshd();
  }, 30_000);
  afterAll(async () => sshd?.close());

  it("start, init, unseal, crash + restart, delete on the remote host", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-svc-ssh-"));
    try {
      await lifecycle(await inputs(path.join(tmp, "vhsm"), sshd));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 180_000);

  it("refuses a host whose key does not match the pinned one", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-svc-ssh-"));
    const wrong = `[127.0.0.1]:${sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n`;
    const i = await inputs(path.join(tmp, "vhsm"), sshd, wrong);
    await expect(createService(i)).rejects.toThrow(/ssh 127\.0\.0\.1: exit 255/);
    expect(existsSync(i.stateDir)).toBe(false);
    rmSync(tmp, { recursive: true, force: true });
  }, 60_000);
});

export type { ServiceOutputs };
