// Tamper demonstrations of the local stack's real guests: what a host admin could change without touching
// the registration, made from the guest image's own files. Each case writes its changed copy into a
// directory the caller names (outside the guests' directories, so destroying a guest keeps it) and is
// deterministic: the same image gives the same bytes, so a second `up` changes nothing.
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { newcArchive } from "../../images/guest/cpio.js";
import { INIT_SCRIPT } from "../../images/guest/init-script.js";
import type { LocalGuestImage } from "../../runtime/sim/qemu/local-image.js";

/** What is changed (injected user-data is `injectUserData`, not a boot input). */
export const LOCAL_TAMPER_CASES = ["firmware", "cmdline", "initrd", "kernel", "rootfs"] as const;
export type LocalTamperCase = (typeof LOCAL_TAMPER_CASES)[number];

/** One line per case, for logs and the stack's summary. */
export const TAMPER_DESCRIPTION: Record<LocalTamperCase, string> = {
  firmware: "one byte of the firmware changed (in erased flash the firmware never reads)",
  cmdline: "kernel command line changed (systemd.debug-shell=1 added: a root shell on tty9)",
  initrd: "initrd swapped (the image's, plus an appended archive whose /init replaces the kit's)",
  kernel: "kernel swapped (the image's kernel with 4 KiB appended: boots the same, another file)",
  rootfs: "one block of the root filesystem modified (the last squashfs data block)",
};

/** Boot inputs the guest really starts with, where they differ from the registered ones. */
export interface TamperedBoot {
  firmware?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  rootImage?: string;
}

/** The console line the attacker's /init prints (tests look for it: the swapped initrd really ran). */
export const ATTACKER_INITRD_MARK = "ATTACKER-INITRD";

/** The longest run of erased (0xFF) bytes of a firmware image: flash space no firmware code reads. */
export function longestErasedRun(fw: Buffer): { start: number; len: number } {
  let best = { start: 0, len: 0 };
  for (let i = 0; i < fw.length;) {
    if (fw[i] !== 0xff) {
      i++;
      continue;
    }
    let j = i;
    while (j < fw.length && fw[j] === 0xff) j++;
    if (j - i > best.len) best = { start: i, len: j - i };
    i = j;
  }
  return best;
}

/** The middle of the longest run of erased (0xFF) bytes (the middle of the file when there is none). */
export function erasedByte(fw: Buffer): number {
  const run = longestErasedRun(fw);
  return run.len === 0 ? fw.length >> 1 : run.start + (run.len >> 1);
}

/** A copy of `src` with one byte flipped (the firmware case; also the process-tree VMs' demonstration). */
export function firmwareWithOneByteChanged(src: string, dst: string): string {
  const fw = readFileSync(src);
  fw[erasedByte(fw)] ^= 0x01;
  writeIfChanged(dst, fw);
  return dst;
}

function writeIfChanged(file: string, data: Buffer): void {
  if (existsSync(file) && readFileSync(file).equals(data)) return;
  writeFileSync(`${file}.tmp`, data);
  renameSync(`${file}.tmp`, file);
}

/** Writes the changed input of `kind` into `dir` (created) and says which input it replaces. */
export async function tamperedBoot(kind: LocalTamperCase, image: LocalGuestImage, dir: string): Promise<TamperedBoot> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  switch (kind) {
    case "firmware":
      return { firmware: firmwareWithOneByteChanged(image.firmware, path.join(dir, "OVMF-modified.fd")) };
    case "cmdline":
      return { append: `${image.append} systemd.debug-shell=1` };
    case "kernel": {
      const out = path.join(dir, "vmlinuz-swapped");
      // Trailing bytes after the PE sections: the EFI stub loads exactly as before, the file hashes differently.
      writeIfChanged(out, Buffer.concat([readFileSync(image.kernel), Buffer.alloc(4096, 0x41)]));
      return { kernel: out };
    }
    case "initrd": {
      // The kernel unpacks concatenated archives in order: the appended /init replaces the kit's.
      const tmp = await mkdtemp(path.join(dir, ".evil-"));
      try {
        await writeFile(
          path.join(tmp, "init"),
          INIT_SCRIPT.replace("export PATH=/bin\n", `export PATH=/bin\necho "${ATTACKER_INITRD_MARK}" >/dev/console\n`),
          { mode: 0o755 },
        );
        const out = path.join(dir, "initrd-swapped.img");
        writeIfChanged(out, Buffer.concat([readFileSync(image.initrd), await newcArchive(tmp)]));
        return { initrd: out };
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    }
    case "rootfs": {
      // Named after the image's root hash: copied once per image (hundreds of MiB); older copies go.
      const name = `rootfs-${image.verity.rootHash.slice(0, 16)}-modified.img`;
      const out = path.join(dir, name);
      for (const f of readdirSync(dir))
        if (/^rootfs-[0-9a-f]{16}-modified\.img(\.tmp)?$/.test(f) && f !== name)
          rmSync(path.join(dir, f), { force: true });
      if (!existsSync(out)) {
        await copyFile(image.rootImage, `${out}.tmp`);
        // One byte of the last data block (squashfs's id/fragment tables, read when the root is mounted).
        const at = (image.verity.dataBlocks - 1) * image.verity.dataBlockSize + 100;
        const fd = openSync(`${out}.tmp`, "r+");
        try {
          const b = Buffer.alloc(1);
          readSync(fd, b, 0, 1, at);
          b[0] ^= 0x01;
          writeSync(fd, b, 0, 1, at);
        } finally {
          closeSync(fd);
        }
        renameSync(`${out}.tmp`, out);
      }
      return { rootImage: out };
    }
  }
}
