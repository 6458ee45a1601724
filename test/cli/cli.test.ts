import { describe, expect, it } from "vitest";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { repoRoot } from "../support/shared.js";
import { main } from "../../cli/main.js";

function capture() {
  const out: string[] = [],
    err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (t: string) => err.push(t) }, out, err };
}

describe("buckypaper CLI", () => {
  it("lists commands and exits 2 without one", async () => {
    const c = capture();
    expect(await main([], c.io)).toBe(2);
    expect(c.out.join("")).toContain("measure");
  });
  it("rejects an unknown command with exit 2", async () => {
    const c = capture();
    expect(await main(["frobnicate"], c.io)).toBe(2);
    expect(c.err.join("")).toContain("unknown command 'frobnicate'");
  });
  it("image build: --format takes direct or disk; the runtime's unsound or unsupported cloud choices are refused (before building)", async () => {
    for (const [args, why] of [
      [["--format", "vhd"], "--format: 'vhd' (direct or disk)"],
      [["--format", "disk", "--sign-key", "k.pem"], "--sign-key needs --sign-cert"],
      [["--format", "disk", "--sign-cert", "c.pem"], "--sign-cert needs --sign-key"],
      [["--format", "direct", "--sign-key", "k.pem", "--sign-cert", "c.pem"], "--sign-key: signs the cloud disk's UKI"],
      [["--sign-key", "k.pem", "--sign-cert", "c.pem"], "--sign-key: signs the cloud disk's UKI"],
      [
        ["--cloud", "ec2", "--sign-key", "/nonexistent/k.pem", "--sign-cert", "c.pem"],
        "--sign-key: /nonexistent/k.pem does not exist",
      ],
      [
        ["--role", "runtime", "--cloud", "ec2", "--runtime-unseal", "derived-key"],
        "--runtime-unseal derived-key: refused with --cloud ec2",
      ],
      [
        ["--role", "runtime", "--cloud", "gce", "--runtime-psp", "virtio-psp", "--runtime-unseal", "derived-key"],
        "--runtime-unseal derived-key: refused with --cloud gce",
      ],
      [
        ["--format", "disk", "--role", "runtime", "--runtime-unseal", "derived-key"],
        "--runtime-unseal derived-key: refused with --format disk",
      ],
      [
        ["--role", "runtime", "--cloud", "azure", "--runtime-unseal", "derived-key"],
        "--runtime-unseal derived-key: refused with --cloud azure",
      ],
      [
        ["--role", "runtime", "--cloud", "azure", "--runtime-psp", "sev-guest"],
        "--runtime-psp: 'sev-guest' with --cloud azure: an Azure confidential VM has no /dev/sev-guest",
      ],
      [["--role", "runtime", "--cloud", "ec2", "--format", "direct"], "--format: 'direct' with --cloud ec2"],
      [["--runtime-unseal", "shares"], "--runtime-unseal needs --role runtime"],
    ] as const) {
      const c = capture();
      expect(await main(["image", "build", ...args], c.io)).toBe(2);
      expect(c.err.join("")).toContain(why);
    }
  });
  it("image build --help: disk is the default for ec2, gce and azure, and Azure's is also a fixed VHD", async () => {
    const c = capture();
    expect(await main(["image", "build", "--help"], c.io)).toBe(0);
    const usage = c.out.join("");
    expect(usage).toMatch(/Default: disk\s+with --cloud ec2\|gce\|azure/);
    expect(usage).toMatch(/with --cloud azure also that disk as the\s+fixed VHD Azure takes/);
    expect(usage).not.toContain("not produced");
  });
  it("runs as a real process through bin/buckypaper.js", () => {
    const r = spawnSync(process.execPath, [path.join(repoRoot, "bin/buckypaper.js"), "--help"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("usage: buckypaper");
    expect(execFileSync(process.execPath, ["-p", "process.versions.node"]).toString().split(".")[0]).toBe("22");
  });
});

/** Every command and subcommand, as `buckypaper <words> --help` must answer them. */
const SUBCOMMANDS = [
  "measure",
  "measure snp",
  "measure snp-ovmf-hash",
  "measure sev",
  "measure seves",
  "measure tdx",
  "verify",
  "verify snp",
  "verify tdx",
  "verify azure",
  "runtime",
  "runtime server",
  "runtime dev",
  "runtime init",
  "runtime unseal",
  "runtime status",
  "runtime verify",
  "cloud-init",
  "cloud-init render",
  "enclaivelet",
  "enclaivelet run",
  "enclaivelet detect",
  "enclaivelet vtpm-evidence",
  "enclaivelet package",
  "simulate",
  "simulate snp",
  "simulate tdx",
];

describe("buckypaper for a newcomer", () => {
  for (const words of SUBCOMMANDS) {
    it(`'${words} --help' prints a usage and exits 0`, async () => {
      const c = capture();
      expect(await main([...words.split(" "), "--help"], c.io)).toBe(0);
      expect(c.out.join("\n")).toMatch(/usage/);
      expect(c.err.join("")).toBe("");
    });
  }

  it("'runtime dev' on a taken port prints one clear line (no stack trace) and exits 1", async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const p = spawn(
        process.execPath,
        [path.join(repoRoot, "bin/buckypaper.js"), "runtime", "dev", "--listen", `127.0.0.1:${port}`],
        {
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let err = "";
      p.stderr.on("data", (d) => (err += d));
      const code = await new Promise<number | null>((r) => p.on("close", r));
      expect(code).toBe(1);
      const lines = err
        .trim()
        .split("\n")
        .filter((l) => !l.startsWith("[info]"));
      expect(lines).toEqual([expect.stringMatching(new RegExp(`127\\.0\\.0\\.1:${port} is already in use.*--listen`))]);
      expect(err).not.toMatch(/EADDRINUSE|at .*node:net/);
    } finally {
      blocker.close();
    }
  });

  it("bin/buckypaper (the PATH entry) runs the CLI without ExperimentalWarning noise", () => {
    const r = spawnSync(path.join(repoRoot, "bin/buckypaper"), ["runtime", "--help"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("usage: buckypaper runtime");
    // `runtime server` on SQLite imports node:sqlite, whose ExperimentalWarning must not reach the user
    // (here it then stops on a bad listener address, after opening the storage).
    const dir = mkdtempSync(path.join(tmpdir(), "bk-cli-"));
    const cfg = path.join(dir, "runtime.hcl");
    writeFileSync(cfg, `storage "sqlite" { path = "${dir}/rt.db" }\nlistener "tcp" { address = "192.0.2.1:8200" }\n`);
    const s = spawnSync(path.join(repoRoot, "bin/buckypaper"), ["runtime", "server", "--config", cfg], {
      encoding: "utf8",
    });
    rmSync(dir, { recursive: true, force: true });
    expect(s.status).toBe(1);
    expect(s.stderr).toMatch(/cannot listen on 192\.0\.2\.1:8200/);
    expect(s.stderr).not.toMatch(/ExperimentalWarning/);
  });
});

describe.skipIf(!existsSync("/usr/share/ovmf/OVMF.fd"))("buckypaper measure fast path", () => {
  it("the bundled measure (dist/cli-fast) prints what the in-process command prints, errors included", async () => {
    const args = ["measure", "snp", "--ovmf", "/usr/share/ovmf/OVMF.fd", "--vcpus", "64", "--vcpu-type", "EPYC-v4"];
    const c = capture();
    expect(await main(args, c.io)).toBe(0);
    const r = spawnSync(process.execPath, [path.join(repoRoot, "bin/buckypaper.js"), ...args], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(c.out.join("").trim());
    const bad = spawnSync(
      process.execPath,
      [path.join(repoRoot, "bin/buckypaper.js"), "measure", "snp", "--vcpus", "0"],
      {
        encoding: "utf8",
      },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^buckypaper measure: /);
  });
});
