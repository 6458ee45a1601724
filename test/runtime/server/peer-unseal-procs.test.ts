// Peer unseal with the runtime as real processes (`buckypaper runtime server`, attestation "simulated": the CLI
// loads the simulated platform and trusts only its anchor for peers): replica A initialised with
// `runtime init --peer-threshold 1` and unsealed by its operator; replica B on the same SQLite file starts sealed
// and, with `peer_unseal { peers = [A] }`, unseals itself from A at start — no operator, no share on disk.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { cli, startServerProc, type ServerProc } from "./core-procs.js";
import { initPlatform } from "../../../runtime/sim/localvm/platform.js";
import { MEASUREMENT } from "../attested-runtime-support.js";
import { call } from "./peer-unseal-support.js";

const dir = mkdtempSync(path.join(tmpdir(), "bk-peer-procs-"));
const platformDir = path.join(dir, "platform");
const procs: ServerProc[] = [];

function config(name: string, extra = ""): string {
  const file = path.join(dir, `${name}.hcl`);
  writeFileSync(
    file,
    `
    storage "sqlite" { path = "${dir}/state/runtime.db" }
    listener "tcp" { address = "127.0.0.1:0" }
    attestation "simulated" { platform_dir = "${platformDir}"  measurement = "${MEASUREMENT}" }
    ${extra}
  `,
  );
  return file;
}

async function until(what: string, f: () => Promise<boolean>, tries = 150): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`gave up waiting for ${what}`);
}

beforeAll(async () => {
  await initPlatform(platformDir);
});
afterAll(async () => {
  for (const p of procs) await p.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe("peer unseal between runtime processes", () => {
  it("a replica started sealed unseals itself from an attested peer; the CLI sets the threshold at init", async () => {
    const a = await startServerProc(config("a"));
    procs.push(a);
    const bad = await cli(["runtime", "init", "--address", a.url, "--tls-skip-verify", "--peer-threshold", "0"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--peer-threshold: an integer 1\.\.255/);
    const init = await cli([
      "runtime",
      "init",
      "--address",
      a.url,
      "--tls-skip-verify",
      "--insecure-print-to-pipe",
      "--key-shares",
      "1",
      "--key-threshold",
      "1",
      "--peer-threshold",
      "1",
      "--format",
      "json",
    ]);
    expect(init.code, init.stderr).toBe(0);
    const out = JSON.parse(init.stdout) as { unseal_keys_b64: string[]; root_token: string; peer_threshold: number };
    expect(out.peer_threshold).toBe(1);
    const key = out.unseal_keys_b64[0];
    expect((await call(a.url, "PUT", "sys/unseal", { key })).body.sealed).toBe(false);
    expect(
      (await call(a.url, "POST", "sys/mounts/secret", { type: "kv", options: { version: "2" } }, out.root_token))
        .status,
    ).toBe(204);
    expect(
      (await call(a.url, "POST", "secret/data/app", { data: { v: "through-a-peer" } }, out.root_token)).status,
    ).toBe(200);

    const b = await startServerProc(config("b", `peer_unseal { peers = ["${a.url}"]  retry_interval = "2s" }`));
    procs.push(b);
    await until(
      "B unsealed by its peer",
      async () => (await call(b.url, "GET", "sys/seal-status")).body.sealed === false,
    );
    expect(b.output()).toMatch(/peer unseal: share \d+ from https:\/\/127\.0\.0\.1:\d+ \(1\/1\)/);
    expect(b.output()).toMatch(/runtime unsealed by 1 attested peer\(s\)/);
    const read = await call(b.url, "GET", "secret/data/app", undefined, out.root_token);
    expect(read.body.data.data.v).toBe("through-a-peer");
    // Nothing of the key on disk in clear, nor in either process's output.
    const files = readdirSync(path.join(dir, "state")).map((f) => readFileSync(path.join(dir, "state", f)));
    for (const f of files) expect(f.includes(Buffer.from(key, "base64"))).toBe(false);
    expect(a.output() + b.output()).not.toContain(key);
  });
});
