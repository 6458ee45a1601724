// The operator lifecycle with real processes: `runtime server --config` (SQLite, TLS), `runtime
// init` pinned to the bootstrap certificate, `runtime unseal` to the threshold, `runtime status`,
// TLS pinned to the runtime CA printed at init, restart comes up sealed, config errors exit 2.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, writeFileSync, existsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startServerProc, cli, type ServerProc } from "./core-procs.js";

describe("runtime server lifecycle (processes, SQLite, TLS)", () => {
  let dir: string;
  let cfg: string;
  let srv: ServerProc | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "bk-life-"));
    cfg = path.join(dir, "runtime.hcl");
    writeFileSync(
      cfg,
      `
      storage "sqlite" { path = "data/runtime.db" }
      listener "tcp" {
        address   = "127.0.0.1:0"
        tls_dir   = "tls"
        tls_hosts = ["runtime.test"]
      }
      audit_file = "audit/audit.log"
    `,
    );
  });
  afterAll(async () => {
    await srv?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it("initializes, unseals with 2 of 3 shares, pins the runtime CA, and restarts sealed", async () => {
    srv = await startServerProc(cfg);
    expect(srv.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(srv.bootstrapFp).toMatch(/^[0-9a-f]{64}$/);
    const pinBoot = ["--address", srv.url, "--ca-fingerprint", srv.bootstrapFp!];

    const st0 = await cli(["runtime", "status", ...pinBoot]);
    expect(st0.code).toBe(1);
    expect(st0.stdout).toMatch(/Initialized\s+false/);
    // A wrong pin is refused before anything is sent.
    const wrongPin = await cli(["runtime", "status", "--address", srv.url, "--ca-fingerprint", "00".repeat(32)]);
    expect(wrongPin.code).not.toBe(0);
    expect(wrongPin.stderr).toMatch(/pinned fingerprint/);

    const init = await cli([
      "runtime",
      "init",
      ...pinBoot,
      "--key-shares",
      "3",
      "--key-threshold",
      "2",
      "--insecure-print-to-pipe",
      "--format",
      "json",
    ]);
    expect(init.code).toBe(0);
    const out = JSON.parse(init.stdout);
    expect(out.unseal_keys_b64).toHaveLength(3);
    expect(out.root_token).toMatch(/^hvs\./);
    expect(out.runtime_ca_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(existsSync(path.join(dir, "tls/server-key.pem"))).toBe(true);
    expect(statSync(path.join(dir, "tls/server-key.pem")).mode & 0o077).toBe(0);
    writeFileSync(path.join(dir, "ca.pem"), out.runtime_ca_pem);

    // From now on the listener presents a certificate issued by the runtime CA: pin that, or trust the CA file.
    const pinCa = ["--address", srv.url, "--ca-fingerprint", out.runtime_ca_sha256];
    const again = await cli([
      "runtime",
      "init",
      ...pinCa,
      "--key-shares",
      "1",
      "--key-threshold",
      "1",
      "--insecure-print-to-pipe",
    ]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already initialized/);
    const u1 = await cli(["runtime", "unseal", ...pinCa, out.unseal_keys_b64[2]]);
    expect(u1.code).toBe(0);
    expect(u1.stdout).toMatch(/Sealed\s+true/);
    expect(u1.stdout).toMatch(/Unseal Progress\s+1\/2/);
    const u2 = await cli([
      "runtime",
      "unseal",
      "--address",
      srv.url,
      "--ca-cert",
      path.join(dir, "ca.pem"),
      out.unseal_keys_b64[0],
    ]);
    expect(u2.code).toBe(0);
    expect(u2.stdout).toMatch(/Sealed\s+false/);
    expect((await cli(["runtime", "status", ...pinCa])).code).toBe(0);

    await srv.kill();
    srv = await startServerProc(cfg);
    expect(srv.bootstrapFp).toBeUndefined(); // the runtime-CA certificate from tls_dir is served from the start
    const st = await cli([
      "runtime",
      "status",
      "--address",
      srv.url,
      "--ca-fingerprint",
      out.runtime_ca_sha256,
      "--format",
      "json",
    ]);
    expect(st.code).toBe(1);
    expect(JSON.parse(st.stdout)).toMatchObject({ initialized: true, sealed: true, t: 2, n: 3 });
    const bad = await cli([
      "runtime",
      "unseal",
      ...["--address", srv.url, "--ca-fingerprint", out.runtime_ca_sha256],
      "bm90LWEta2V5",
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/key share/);
  });

  it("exits 1 with a clear message when the SQLite file is not a database", async () => {
    writeFileSync(path.join(dir, "garbage.db"), Buffer.alloc(8192, 0x5a));
    const c = path.join(dir, "garbage.hcl");
    writeFileSync(
      c,
      `storage "sqlite" { path = "garbage.db" }\nlistener "tcp" { address = "127.0.0.1:0"\n tls_disable = true }`,
    );
    const r = await cli(["runtime", "server", "--config", c]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/SQLite storage is corrupt: file is not a database/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it("exits 2 with a message naming the field for a bad config", async () => {
    const badCfg = path.join(dir, "bad.hcl");
    writeFileSync(badCfg, `storage "sqlite" { }\nlistener "tcp" { address = "127.0.0.1:0" }`);
    const r = await cli(["runtime", "server", "--config", badCfg]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/storage\.sqlite\.path: required/);
    const r2 = await cli(["runtime", "server", "--config", path.join(dir, "missing.hcl")]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/--config .*ENOENT/);
  });
});
