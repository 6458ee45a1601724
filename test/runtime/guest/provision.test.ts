// Provisioning actions on their own: LUKS2 with the real cryptsetup (on a loop device when the
// machine allows, else on a file), staged commits, env-file syntax, path containment, config errors.
import { describe, expect, it, afterAll } from "vitest";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { unlockVolume, luksCommands } from "../../../runtime/guest/provision/luks.js";
import { commitWrites, renderEnvFile, underRoot, ProvisionError } from "../../../runtime/guest/provision/files.js";
import { parseConfig, ConfigError } from "../../../runtime/guest/config.js";
import { memoryLogger } from "../../../runtime/guest/log.js";
import { spawnRunner, type CommandRunner } from "../../../runtime/guest/exec.js";
import { haveCommand, requireTool } from "../../support/prereq.js";

const temps: string[] = [];
const loops: string[] = [];
afterAll(async () => {
  for (const l of loops) spawnSync("losetup", ["-d", l]);
  for (const d of temps) await rm(d, { recursive: true, force: true });
});
async function tempDir(prefix: string) {
  const d = await mkdtemp(path.join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

const hasCryptsetup = haveCommand("cryptsetup", ["--version"]);
const hasDeviceMapper = spawnSync("dmsetup", ["version"], { stdio: "ignore" }).status === 0;

/** A 24 MiB backing file, attached to a loop device when we may (root + working loop driver). */
async function blankDevice(): Promise<{ device: string; kind: "loop" | "file" }> {
  const file = path.join(await tempDir("bk-luks-"), "disk.img");
  spawnSync("truncate", ["-s", "24M", file]);
  if (process.getuid?.() === 0) {
    const r = spawnSync("losetup", ["-f", "--show", file], { encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim().startsWith("/dev/loop")) {
      loops.push(r.stdout.trim());
      return { device: r.stdout.trim(), kind: "loop" };
    }
  }
  console.warn("[note] no loop device available here: LUKS runs on a plain file");
  return { device: file, kind: "file" };
}

/** Real cryptsetup throughout; only the dm mapping (open/mkfs/mount) is replaced by the real key
 *  check `cryptsetup open --test-passphrase` when the kernel has no device-mapper. */
function runnerFor(calls: string[][]): CommandRunner {
  return {
    async run(argv, opts) {
      calls.push([...argv]);
      if (!hasDeviceMapper) {
        if (argv[0] === "cryptsetup" && argv[1] === "status")
          return { code: 4, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
        if (argv[0] === "cryptsetup" && argv[1] === "open")
          return spawnRunner.run(["cryptsetup", "open", "--test-passphrase", "--key-file", "-", argv.at(-2)!], opts);
        if (argv[0].startsWith("mkfs.") || argv[0] === "mount")
          return { code: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
      }
      return spawnRunner.run(argv, opts);
    },
  };
}

describe("LUKS2 volume (real cryptsetup)", () => {
  it("first boot formats a blank device; the next boot only opens it; a wrong key cannot open it", async (ctx) => {
    if (!requireTool("cryptsetup", hasCryptsetup)) return ctx.skip();
    if (!hasDeviceMapper)
      console.warn(
        "[note] the kernel has no device-mapper here: opening the mapping is checked with 'cryptsetup open --test-passphrase'; mkfs/mount are asserted as command lines",
      );
    const { device, kind } = await blankDevice();
    const root = await tempDir("bk-luks-root-");
    const name = `bk-t${randomBytes(3).toString("hex")}`;
    const key = randomBytes(32);
    const v = { device, name, filesystem: "ext4" as const };
    const calls: string[][] = [];
    const first = await unlockVolume(v, key, root, runnerFor(calls), memoryLogger());
    if (hasDeviceMapper) spawnSync("cryptsetup", ["close", name]);
    expect(first).toMatchObject({ formatted: true, opened: true });
    expect(calls.map((c) => c.slice(0, 2).join(" "))).toEqual([
      "cryptsetup isLuks",
      "blkid -p",
      "cryptsetup luksFormat",
      "cryptsetup status",
      "cryptsetup open",
      "mkfs.ext4 -q",
    ]);
    expect(calls.flat().join(" ")).not.toContain(key.toString("hex"));
    expect(calls.flat().join(" ")).not.toContain(key.toString("base64"));
    const dump = spawnSync("cryptsetup", ["luksDump", device], { encoding: "utf8" });
    expect(dump.stdout).toMatch(/^Version:\s+2$/m);
    expect(dump.stdout).toMatch(new RegExp(`Label:\\s+${name}`));

    const second: string[][] = [];
    const again = await unlockVolume(v, key, root, runnerFor(second), memoryLogger());
    if (hasDeviceMapper) spawnSync("cryptsetup", ["close", name]);
    expect(again.formatted).toBe(false);
    expect(second.some((c) => c[1] === "luksFormat")).toBe(false);

    await expect(unlockVolume(v, randomBytes(32), root, runnerFor([]), memoryLogger())).rejects.toThrow(/volume\.open/);
    console.warn(`[info] LUKS2 exercised on a ${kind === "loop" ? "loop device" : "plain file"}`);
  });

  it("never formats a device that holds something else", async (ctx) => {
    if (!requireTool("cryptsetup + mkfs.ext4", hasCryptsetup && haveCommand("mkfs.ext4", ["-V"]))) return ctx.skip();
    const { device } = await blankDevice();
    expect(spawnSync("mkfs.ext4", ["-q", "-F", device]).status).toBe(0);
    const calls: string[][] = [];
    await expect(
      unlockVolume({ device, name: "bk-x" }, randomBytes(32), "/", runnerFor(calls), memoryLogger()),
    ).rejects.toThrow(/not LUKS and not blank \(ext4\): refusing to format/);
    expect(calls.some((c) => c[1] === "luksFormat")).toBe(false);
  });

  it("refuses a short key before touching the device", async () => {
    const calls: string[][] = [];
    await expect(
      unlockVolume({ device: "/dev/null", name: "x" }, Buffer.alloc(16), "/", runnerFor(calls), memoryLogger()),
    ).rejects.toThrow(/too short/);
    expect(calls).toEqual([]);
  });

  it("command lines: the key file is always stdin", () => {
    const c = luksCommands({ device: "/dev/vdb", name: "data", filesystem: "xfs" });
    expect(c.format.slice(-3)).toEqual(["--key-file", "-", "/dev/vdb"]);
    expect(c.open).toEqual(["cryptsetup", "open", "--type", "luks2", "--key-file", "-", "/dev/vdb", "data"]);
    expect(c.mkfs).toEqual(["mkfs.xfs", "-q", "-L", "data", "/dev/mapper/data"]);
  });
});

describe("staged commit", () => {
  it("writes all files with their modes, or none when one cannot be staged", async () => {
    const root = await tempDir("bk-commit-");
    const runner = spawnRunner;
    const ok = await commitWrites(
      root,
      [
        { path: "/a/one", content: Buffer.from("1"), mode: 0o600, what: "one" },
        { path: "/b/two", content: Buffer.from("2"), mode: 0o644, owner: "root", what: "two" },
      ],
      runner,
      memoryLogger(),
    );
    expect(ok.written).toEqual(["/a/one", "/b/two"]);
    expect((await stat(path.join(root, "a/one"))).mode & 0o777).toBe(0o600);
    // Second run: unchanged. A mode change alone is noticed.
    expect(
      (
        await commitWrites(
          root,
          [{ path: "/a/one", content: Buffer.from("1"), mode: 0o600, what: "one" }],
          runner,
          memoryLogger(),
        )
      ).unchanged,
    ).toEqual(["/a/one"]);
    expect(
      (
        await commitWrites(
          root,
          [{ path: "/a/one", content: Buffer.from("1"), mode: 0o640, what: "one" }],
          runner,
          memoryLogger(),
        )
      ).written,
    ).toEqual(["/a/one"]);

    // The third write cannot be staged (unknown owner): the first two must not be committed either.
    const fresh = await tempDir("bk-commit2-");
    await expect(
      commitWrites(
        fresh,
        [
          { path: "/c/first", content: Buffer.from("secret-1"), mode: 0o600, what: "first" },
          { path: "/c/second", content: Buffer.from("secret-2"), mode: 0o600, what: "second" },
          { path: "/d/third", content: Buffer.from("secret-3"), mode: 0o600, owner: "no-such-user-bk", what: "third" },
        ],
        runner,
        memoryLogger(),
      ),
    ).rejects.toThrow(ProvisionError);
    expect(await readdir(path.join(fresh, "c"))).toEqual([]); // no file, no leftover stage
    expect(await readdir(fresh)).not.toContain("d");
  });

  it("unknown owners are a clear error", async () => {
    const root = await tempDir("bk-owner-");
    await expect(
      commitWrites(
        root,
        [{ path: "/x", content: Buffer.from("x"), mode: 0o600, owner: "no-such-user-bk", what: "x" }],
        spawnRunner,
        memoryLogger(),
      ),
    ).rejects.toThrow(/user 'no-such-user-bk' does not exist/);
  });

  it("paths cannot escape the root", () => {
    expect(underRoot("/tmp/r", "/etc/x")).toBe("/tmp/r/etc/x");
    expect(underRoot("/tmp/r", "/../../etc/passwd")).toBe("/tmp/r/etc/passwd");
    expect(underRoot("/tmp/r/", "/a/./b/../c")).toBe("/tmp/r/a/c");
    expect(underRoot("/tmp/r", "/")).toBe("/tmp/r");
    // A sibling sharing the root's name as a prefix is not under it.
    expect(underRoot("/tmp/r", "/../r2/x")).toBe("/tmp/r/r2/x");
  });

  it("with the guest's own root '/' (the real agent) paths resolve in place and still cannot climb out", () => {
    expect(underRoot("/", "/data")).toBe("/data");
    expect(underRoot("/", "/etc/web/app.env")).toBe("/etc/web/app.env");
    expect(underRoot("/", "/")).toBe("/");
    expect(underRoot("/", "/../../etc/shadow")).toBe("/etc/shadow");
    expect(underRoot("/", "//etc//x")).toBe("/etc/x");
  });

  it("relative and NUL-carrying guest paths are refused, naming the path", () => {
    for (const bad of ["etc/x", "../etc/passwd", "", "./x", "/etc/x\0y"])
      expect(() => underRoot("/", bad)).toThrow(ProvisionError);
    expect(() => underRoot("/tmp/r", "../../etc/passwd")).toThrow(
      /path: "..\/..\/etc\/passwd" is not an absolute guest path/,
    );
  });

  it("env files use systemd EnvironmentFile quoting", () => {
    expect(renderEnvFile({ A: 'x"y', B: "back\\slash", C: "two\nlines" }).toString()).toBe(
      'A="x\\"y"\nB="back\\\\slash"\nC="two\\nlines"\n',
    );
  });

  it("reads back what it wrote", async () => {
    const root = await tempDir("bk-read-");
    await commitWrites(
      root,
      [{ path: "/etc/env", content: renderEnvFile({ K: "v" }), mode: 0o600, what: "env" }],
      spawnRunner,
      memoryLogger(),
    );
    expect(await readFile(path.join(root, "etc/env"), "utf8")).toBe('K="v"\n');
  });
});

describe("agent config", () => {
  const base = { runtimeUrl: "https://rt:8200", runtimeCaSha256: "a".repeat(64), workloadId: "w" };
  it("defaults", () => {
    const c = parseConfig(base);
    expect(c.evidence).toMatchObject({
      provider: "auto",
      configfsRoot: "/sys/kernel/config/tsm/report",
      sevGuestDevice: "/dev/sev-guest",
    });
    expect(c.root).toBe("/");
    expect(c.jwtRole).toBe("workload");
    expect(parseConfig({ ...base, volume: { device: "/dev/vdb", mountpoint: "/data" } }).volume).toEqual({
      device: "/dev/vdb",
      name: "bk-data",
      filesystem: "ext4",
      mountpoint: "/data",
    });
    expect(parseConfig({ ...base, volume: { device: "/dev/vdb" } }).volume?.filesystem).toBeUndefined();
  });
  it("errors name the field", () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ ...base, runtimeUrl: "http://rt" }, /^runtimeUrl: must be https/],
      [{ ...base, files: [{ path: "rel", secret: "s" }] }, /^files\[0\]\.path/],
      [{ ...base, files: [{ path: "/x", secret: "s", mode: 600 }] }, /^files\[0\]\.mode/],
      [{ ...base, envFiles: [{ path: "/x", vars: { "BAD-NAME": "s" } }] }, /envFiles\[0\]\.vars\.BAD-NAME/],
      [{ ...base, evidence: { provider: "tpm" } }, /^evidence\.provider/],
      [{ ...base, volume: { device: "/dev/x", filesystem: "btrfs" } }, /^volume\.filesystem/],
      [{ ...base, hook: { command: [] } }, /^hook\.command/],
      [{ ...base, typo: 1 }, /^typo: unknown field/],
    ];
    for (const [c, re] of bad) {
      let err: unknown;
      try {
        parseConfig(c);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(c)).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(re);
    }
  });
});
