// Attested TLS with the runtime as a real process (`buckypaper runtime server`): the simulated platform loaded by
// the CLI entry point (single process), and two workers reading evidence from a configfs-tsm-shaped directory —
// every worker serves the same in-memory key, which no file in the state directory holds. Checked with the
// `buckypaper runtime verify` process (exit 0 / 1).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { bin, cli } from "./core-procs.js";
import { initPlatform, loadPlatform } from "../../../runtime/sim/localvm/platform.js";
import { openTls } from "../../../runtime/client/attested-tls.js";
import { startFakeConfigfsTsm, type FakeConfigfs } from "../guest/fake-configfs.js";
import { MEASUREMENT, OTHER_MEASUREMENT, insecureGet, runtimeVerifyArgs } from "../attested-runtime-support.js";
import https from "node:https";
import { DatabaseSync } from "node:sqlite";

/** A JSON request over TLS without judging the certificate (set-up only; the verdicts come from the CLI). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
function insecureJson(url: string, method: string, p: string, body: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(`/v1/${p}`, url),
      // A new connection each time (no keep-alive): the workers take connections in turn.
      { method, rejectUnauthorized: false, agent: false, headers: { "content-type": "application/json" } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("end", () => {
          const t = Buffer.concat(chunks).toString("utf8");
          resolve({ status: res.statusCode ?? 0, body: t ? JSON.parse(t) : undefined });
        });
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

const dir = mkdtempSync(path.join(tmpdir(), "bk-att-procs-"));
const platformDir = path.join(dir, "platform");
const procs: ChildProcess[] = [];
let fake: FakeConfigfs | undefined;

function start(config: string): Promise<{ url: string; out: () => string; proc: ChildProcess }> {
  const file = path.join(dir, `config-${procs.length}.hcl`);
  writeFileSync(file, config);
  const proc = spawn(process.execPath, [bin, "runtime", "server", "--config", file], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  procs.push(proc);
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start:\n${out}`)), 60_000);
    const on = (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+) .*\n[^]*Attested TLS: .*SPKI SHA-256 [0-9a-f]{64}/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], out: () => out, proc });
      }
    };
    proc.stdout!.on("data", on);
    proc.stderr!.on("data", on);
    proc.once("exit", (c) => {
      clearTimeout(timer);
      reject(new Error(`exited ${c}:\n${out}`));
    });
  });
}

const files = (d: string): string[] =>
  readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(path.join(d, e.name)) : [path.join(d, e.name)],
  );

beforeAll(async () => {
  await initPlatform(platformDir);
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 500));
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("runtime server with attested TLS (real processes)", () => {
  it('attestation "simulated": the CLI loads the platform; runtime verify exits 0 / 1', async () => {
    const state = path.join(dir, "single");
    const s = await start(`
      storage "sqlite" { path = "${state}/runtime.db" }
      listener "tcp" { address = "127.0.0.1:0" }
      attestation "simulated" { platform_dir = "${platformDir}"  measurement = "${MEASUREMENT}" }
    `);
    const spki = /SPKI SHA-256 ([0-9a-f]{64})/.exec(s.out())![1];
    const anchor = path.join(platformDir, "anchor.json");
    const ok = await cli(runtimeVerifyArgs(s.url, anchor, MEASUREMENT));
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`SPKI SHA-256 ${spki}`);
    const bad = await cli(runtimeVerifyArgs(s.url, anchor, OTHER_MEASUREMENT));
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/REFUSED: policy\.measurement/);
    // The listener key is nowhere on disk: no PEM key, no file containing the served certificate's key.
    for (const f of files(state)) {
      expect(f).not.toMatch(/key|\.pem$/);
      expect(statSync(f).mode & 0o077, f).toBe(0);
    }
  });

  it("two workers, evidence from configfs-tsm: every worker serves the same attested key", async () => {
    const sim = await loadPlatform(platformDir);
    fake = await startFakeConfigfsTsm(async (inblob) => {
      const r = await sim.report({ measurement: MEASUREMENT, reportData: inblob });
      return { outblob: Buffer.from(r.report), auxblob: Buffer.from(r.certTable) };
    });
    const state = path.join(dir, "workers");
    const s = await start(`
      storage "sqlite" { path = "${state}/runtime.db" }
      listener "tcp" { address = "127.0.0.1:0" }
      workers = 2
      attestation "configfs-tsm" { root = "${fake.root}" }
    `);
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const c = await openTls(s.url);
      c.socket.destroy();
      seen.add(c.spkiSha256);
    }
    expect(seen.size).toBe(1);
    const anchor = path.join(platformDir, "anchor.json");
    for (let i = 0; i < 2; i++) {
      const r = await cli(runtimeVerifyArgs(s.url, anchor, MEASUREMENT));
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }
    expect(fake.inblobs.length).toBeGreaterThanOrEqual(2);
    // Initialised and unsealed through whichever worker answers: every worker binds the same instance id (one
    // barrier), and `runtime verify --instance-id` accepts it on every connection.
    const init = await insecureJson(s.url, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 });
    expect(init.status, JSON.stringify(init.body)).toBe(200);
    const unseal = await insecureJson(s.url, "PUT", "sys/unseal", { key: init.body.keys[0] });
    expect(unseal.body.sealed).toBe(false);
    const ids = new Set<string | null>();
    for (let i = 0; i < 6; i++)
      ids.add((await insecureGet(s.url, `/v1/sys/attestation?nonce=${"5c".repeat(16)}${i}${i}`)).body.data.instance_id);
    expect(ids.size).toBe(1);
    const [id] = [...ids];
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const pinned = await cli(runtimeVerifyArgs(s.url, anchor, MEASUREMENT, "--instance-id", id!));
    expect(pinned.code, pinned.stdout + pinned.stderr).toBe(0);
    expect(JSON.parse(readFileSync(path.join(platformDir, "anchor.json"), "utf8")).ark_sha256).toMatch(
      /^[0-9a-f]{64}$/,
    );
  });

  it("two workers: storage wiped under the sealed runtime cannot be re-initialised, not even by a respawned worker", async () => {
    // The attested key outlives a worker (the supervisor holds it), so the instance it served must too: a worker
    // forked after a crash learns it from the supervisor (docs/security.md "One attested key, one instance").
    const sim = await loadPlatform(platformDir);
    const tsm = await startFakeConfigfsTsm(async (inblob) => {
      const r = await sim.report({ measurement: MEASUREMENT, reportData: inblob });
      return { outblob: Buffer.from(r.report), auxblob: Buffer.from(r.certTable) };
    });
    try {
      const state = path.join(dir, "workers-wiped");
      const s = await start(`
        storage "sqlite" { path = "${state}/runtime.db" }
        listener "tcp" { address = "127.0.0.1:0" }
        workers = 2
        attestation "configfs-tsm" { root = "${tsm.root}" }
      `);
      const init = await insecureJson(s.url, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 });
      expect(init.status, JSON.stringify(init.body)).toBe(200);
      expect((await insecureJson(s.url, "PUT", "sys/unseal", { key: init.body.keys[0] })).body.sealed).toBe(false);
      const id = (await insecureGet(s.url, `/v1/sys/attestation?nonce=${"6d".repeat(16)}`)).body.data.instance_id;
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      const seal = await new Promise<number>((resolve, reject) => {
        const req = https.request(
          new URL("/v1/sys/seal", s.url),
          { method: "PUT", rejectUnauthorized: false, headers: { "x-vault-token": init.body.root_token } },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          },
        );
        req.on("error", reject);
        req.end();
      });
      expect(seal).toBeLessThan(300);
      // The host wipes the database under the running workers, then crashes one of them.
      const db = new DatabaseSync(path.join(state, "runtime.db"));
      db.exec("DELETE FROM bk_kv");
      db.close();
      const pids = [...new Set([...s.out().matchAll(/worker (\d+): /g)].map((m) => Number(m[1])))];
      expect(pids.length).toBeGreaterThanOrEqual(1);
      process.kill(pids[0], "SIGKILL");
      const deadline = Date.now() + 60_000;
      while (!/exited \(SIGKILL\); starting a new one/.test(s.out()) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 3000)); // the new worker opens its storage and listens
      // Connections are spread round-robin: several attempts reach the respawned worker as well.
      for (let i = 0; i < 6; i++) {
        const r = await insecureJson(s.url, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 });
        expect(r.status, JSON.stringify(r.body)).toBe(409);
        expect(JSON.stringify(r.body)).toContain(`served instance ${id}`);
        expect(r.body).not.toHaveProperty("root_token");
      }
      const left = new DatabaseSync(path.join(state, "runtime.db"));
      expect(left.prepare("SELECT COUNT(*) AS n FROM bk_kv").get()).toEqual({ n: 0 });
      left.close();
    } finally {
      await tsm.close();
    }
  });
});
