// The encrypted data volume: LUKS2, unlocked with the disk key from the attested bundle. The key is
// handed to cryptsetup on stdin (`--key-file -`), so it never touches a disk or a command line.
// First boot (a blank device) formats it; a device holding anything else is refused, never wiped.
// The key is 256 random bits, not a passphrase, so a cheap PBKDF costs no security and keeps boots fast.
import { stat } from "node:fs/promises";
import type { VolumeConfig } from "../config.js";
import { CommandError, mustRun, type CommandRunner } from "../exec.js";
import type { Logger } from "../log.js";
import { ProvisionError, underRoot } from "./files.js";

export function luksCommands(v: VolumeConfig) {
  const mapper = `/dev/mapper/${v.name}`;
  return {
    isLuks: ["cryptsetup", "isLuks", v.device],
    /** blkid exits 2 when it finds no signature at all: a blank device. */
    probe: ["blkid", "-p", "-o", "value", "-s", "TYPE", v.device],
    format: [
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
      v.name,
      "--key-file",
      "-",
      v.device,
    ],
    status: ["cryptsetup", "status", v.name],
    open: ["cryptsetup", "open", "--type", "luks2", "--key-file", "-", v.device, v.name],
    mkfs: v.filesystem
      ? [
          `mkfs.${v.filesystem}`,
          "-q",
          ...(v.filesystem === "ext4" ? ["-L", v.name] : ["-L", v.name.slice(0, 12)]),
          mapper,
        ]
      : undefined,
    mapper,
  };
}

export interface VolumeResult {
  formatted: boolean;
  opened: boolean;
  mounted: boolean;
}

export async function unlockVolume(
  v: VolumeConfig,
  key: Buffer,
  root: string,
  runner: CommandRunner,
  log: Logger,
): Promise<VolumeResult> {
  if (key.length < 32) throw new ProvisionError("volume", `disk key too short (${key.length} bytes; need ≥ 32)`);
  const cmd = luksCommands(v);
  const result: VolumeResult = { formatted: false, opened: false, mounted: false };
  const run = async (argv: string[], stdin?: Buffer) => {
    try {
      return await mustRun(runner, argv, { stdin, timeoutMs: 300_000 });
    } catch (e) {
      throw new ProvisionError(`volume.${argv[1] ?? argv[0]}`, (e as CommandError).message);
    }
  };

  const isLuks = (await runner.run(cmd.isLuks)).code === 0;
  if (!isLuks) {
    const probe = await runner.run(cmd.probe);
    if (probe.code !== 2) {
      const found = probe.stdout.toString("utf8").trim() || `blkid exit ${probe.code}`;
      throw new ProvisionError("volume", `${v.device} is not LUKS and not blank (${found}): refusing to format it`);
    }
    await run(cmd.format, key);
    result.formatted = true;
    log({ level: "info", event: "volume.formatted", device: v.device, name: v.name });
  }
  if ((await runner.run(cmd.status)).code !== 0) {
    await run(cmd.open, key);
    result.opened = true;
    log({ level: "info", event: "volume.opened", device: v.device, mapper: cmd.mapper });
  }
  if (result.formatted && cmd.mkfs) {
    await run(cmd.mkfs);
    log({ level: "info", event: "volume.mkfs", filesystem: v.filesystem, mapper: cmd.mapper });
  }
  if (v.mountpoint) {
    const target = underRoot(root, v.mountpoint);
    if ((await runner.run(["mountpoint", "-q", target])).code !== 0) {
      await stat(target).catch(async () =>
        (await import("node:fs/promises")).mkdir(target, { recursive: true, mode: 0o755 }),
      );
      await run(["mount", cmd.mapper, target]);
      result.mounted = true;
      log({ level: "info", event: "volume.mounted", mapper: cmd.mapper, mountpoint: v.mountpoint });
    }
  }
  return result;
}
