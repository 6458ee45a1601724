// provider/service.ts — what the Vhsm component's RuntimeService does — with a real `buckypaper
// runtime server` process: locally and on a host reached over real SSH (a private sshd on loopback).
// Start + init + unseal, crash → restart + unseal from the keys in state, stop + delete.
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
import { runtimeRequest } from "../../provider/client.js";
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
