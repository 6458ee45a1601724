// What every test that boots a real QEMU guest from the kit image needs before it can run: the host tools the
// image build and the boot use, root (mmdebstrap, loop-free squashfs + verity), and the AmdSev OVMF whose SNP
// kernel-hashes table puts kernel, initrd and command line into the launch digest. Asked once per file at
// import, like prereq.ts: a missing part skips with a visible message, and fails under CI=true.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { haveCommand, requireTool } from "./prereq.js";
import { repoRoot } from "./shared.js";

/** The AmdSev OVMF build (scripts/build-firmware.sh caches it), or "" when it is not built. */
export const KIT_FIRMWARE =
  spawnSync(path.join(repoRoot, "scripts/build-firmware.sh"), ["--print-path"], { encoding: "utf8" }).stdout?.trim() ??
  "";

/** Debian's QEMU 7.2 has no EPYC-v4; the engine knows every model's VMSA signature. */
export const KIT_GUEST_CPU = "EPYC-Milan";

/** dm-verity's own refusal or the kit init's. Not any "Kernel panic": under a loaded TCG host a guest can panic
 * for unrelated reasons (timer check, a firmware runtime-services fault) and reboot (panic=-1). */
export const VERITY_STOP =
  /verity: .*(data block \d+ is corrupted|verification failed)|dm-verity rejected|cannot mount the verified root/;

/**
 * True when this machine can build the kit image and boot it. `what` names the test's purpose in the skip
 * message; `extra` adds the test's own needs (a label and whether they are met).
 */
export function kitGuestReady(what: string, extra: Array<[label: string, ok: boolean]> = []): boolean {
  const tools = ["qemu-system-x86_64", "genisoimage", "socat", "ssh", "mmdebstrap", "mksquashfs", "veritysetup"];
  const versionFlag: Record<string, string[]> = { socat: ["-V"], ssh: ["-V"], mksquashfs: ["-version"] };
  const labels = ["QEMU", "genisoimage", "socat", "ssh", "mmdebstrap", "mksquashfs", "veritysetup"];
  return (
    requireTool(
      `${[...labels, ...extra.map(([l]) => l)].join(", ")} and root (${what})`,
      tools.every((t) => haveCommand(t, versionFlag[t] ?? ["--version"])) &&
        extra.every(([, ok]) => ok) &&
        process.getuid?.() === 0,
    ) &&
    requireTool(
      "the AmdSev OVMF with the SNP kernel-hashes table (scripts/build-firmware.sh)",
      KIT_FIRMWARE !== "" && existsSync(KIT_FIRMWARE),
    )
  );
}
