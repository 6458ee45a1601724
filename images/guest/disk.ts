// The cloud disk (`buckypaper image build --format disk`, the default with --cloud ec2|gce): the built image
// packed as a raw GPT disk a UEFI firmware boots — EC2 and GCE boot disks, not a kernel file:
//   1 ESP (FAT32)   \EFI\BOOT\BOOTX64.EFI = a UKI: Debian's systemd-stub (systemd-boot-efi, pinned in boot.lock)
//                   with .osrel, .cmdline, .uname, .initrd and .linux sections added by objcopy
//   2 root          the squashfs (rootfs.img up to verity.hashOffset), GPT name bk-root-<root hash prefix>
//   3 root-verity   the dm-verity hash tree (rootfs.img from verity.hashOffset), bk-verity-<prefix>
// The UKI's command line names the partitions by label and carries the verity root hash, so the firmware's PE
// measurement of the UKI (PCR 4) and systemd-stub's section measurements (PCR 11) cover kernel, initramfs,
// command line and — through the root hash — the root filesystem. The initramfs is the image's own with a second
// newc archive appended (the kernel unpacks both; later entries win): the disk /init (disk-init.ts) and the storage
// drivers the clouds attach disks with (NVMe on EC2 Nitro and GCE, virtio-scsi on GCE, virtio-blk on QEMU; for an
// image built --cloud azure also Hyper-V's VMBus and storvsc SCSI, AZURE_DISK_MODULES). An Azure disk is also
// written as a fixed VHD (vhd.ts), the format Azure takes.
// Built in userspace from the image's files only (no loop device, no root, no device-mapper): the kernel modules
// and os-release come out of the squashfs with unsquashfs, the FAT with mkfs.fat/mcopy, the GPT from gpt.ts.
// Deterministic: GUIDs derived from the inputs (root/verity partition UUIDs from the root hash, as the
// Discoverable Partitions Specification suggests), FAT serial and times fixed (--invariant, SOURCE_DATE_EPOCH).
import { createHash, X509Certificate } from "node:crypto";
import { closeSync, existsSync, openSync, readSync } from "node:fs";
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  utimes,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { newcArchive } from "./cpio.js";
import { CREDENTIAL_CMDLINE } from "./credentials.js";
import { DISK_INIT_SCRIPT } from "./disk-init.js";
import { run } from "./exec.js";
import { readFatFile } from "./fat.js";
import {
  ATTR_READ_ONLY,
  FIRST_USABLE_LBA,
  PARTITION_TYPE,
  SECTOR,
  decodeGpt,
  encodeGpt,
  type GptPartition,
} from "./gpt.js";
import { INITRD_MODULES, moduleLoadOrder } from "./initrd.js";
import { sha256Hex, type DiskRecord, type ImageManifest, type StubPin } from "./manifest.js";
import { writeFixedVhd } from "./vhd.js";
import { efiImageDigest } from "../pe.js";

export type { DiskPartitionRecord, DiskRecord, StubPin } from "./manifest.js";

// The manifest's `disk` record gains `vhd` here rather than in manifest.ts: manifest.ts is an input of every image's
// cache key (build.ts recipeDigest), and a field that only Azure's disk carries must not rebuild every cached image.
declare module "./manifest.js" {
  interface DiskRecord {
    /**
     * Images built --cloud azure: the disk as the fixed VHD Azure takes (images/guest/vhd.ts) — the raw disk (`path`)
     * zero-padded to `virtualSize` (a whole MiB), then the 512-byte footer; `size` is the file's. Timestamp (Unix
     * seconds) = SOURCE_DATE_EPOCH, unique id derived from the raw disk's SHA-256. Absent for the other clouds.
     */
    vhd?: { path: string; sha256: string; size: number; virtualSize: number; uniqueId: string; timestamp: number };
    /**
     * Disks built with a Secure Boot signing key (DiskBuildOptions.signing): the UKI carries an Authenticode
     * signature by this certificate (public data only; the key is never copied). `unsignedSha256` is the UKI before
     * the signature was appended (8-byte aligned, so the firmware's PCR 4 digest is the same for both).
     */
    signature?: { certSha256: string; certPem: string; subject: string; tool: string; unsignedSha256: string };
  }
}

/** Storage drivers the disk's initramfs adds to the image's (virtio_pci, virtio_blk, dm, squashfs, overlay). */
export const DISK_MODULES = [...INITRD_MODULES, "nvme", "virtio_scsi", "sd_mod"] as const;
/**
 * An Azure Gen2 (Hyper-V) VM, confidential ones included, attaches its OS disk through VMBus to the storvsc SCSI
 * driver (sd_mod for the disk; scsi_mod and scsi_transport_fc come in as dependencies). Only disks of images built
 * --cloud azure carry them, so the EC2/GCE disks (and their predicted boot chains) stay as they were.
 */
export const AZURE_DISK_MODULES = [...DISK_MODULES, "hv_vmbus", "hv_storvsc", "scsi_mod", "sd_mod"] as const;
/** NIC drivers the clouds need, checked to be in the root (udev loads them there; the initramfs needs no NIC). */
export const CLOUD_NIC_MODULES = ["ena", "gve", "virtio_net"] as const;
/** Azure's: the synthetic NIC (netvsc) and the Mellanox VF of accelerated networking. */
export const AZURE_NIC_MODULES = ["hv_netvsc", "mlx5_core"] as const;
/** Where UEFI firmware looks for a boot loader on a disk without boot entries (removable-media path). */
export const UKI_ESP_PATH = "/EFI/BOOT/BOOTX64.EFI";
const MIB = 1 << 20;
const STUB_IN_DEB = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";

export interface DiskBuildOptions {
  /** The built image's directory and manifest (image.json). */
  imageDir: string;
  manifest: ImageManifest;
  repoRoot: string;
  cacheDir: string;
  sourceDateEpoch: number;
  /**
   * Sign the UKI for Secure Boot with the customer's db key (PEM private key and certificate paths). Only the
   * certificate (and its digest, in the cache key and the record) is kept; the key is read by the signer in place.
   */
  signing?: { key: string; cert: string };
  /** Extra newc archives appended to the initramfs, e.g. a test hook (/bk-hook). In the key and the record. */
  testLayers?: Buffer[];
  rebuild?: boolean;
  progress?: (line: string) => void;
}

export function parseBootLock(text: string, source = "boot.lock"): StubPin {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const pins = lines.map((l, i) => {
    const f = l.split(/\s+/);
    if (f.length !== 4 || f[0] !== "deb" || !/^[0-9a-f]{64}$/.test(f[3]))
      throw new Error(`${source}: line ${i + 1}: expected 'deb <package> <version> <sha256>'`);
    return { package: f[1], version: f[2], sha256: f[3] };
  });
  const stub = pins.find((p) => p.package === "systemd-boot-efi");
  if (!stub) throw new Error(`${source}: no systemd-boot-efi pin`);
  return stub;
}

/** The pinned systemd-stub (downloaded once with apt into <cache>/debs and checked by SHA-256). */
export async function pinnedStub(cacheDir: string, pin: StubPin): Promise<{ stub: Buffer; deb: string }> {
  const debs = path.join(cacheDir, "debs");
  await mkdir(debs, { recursive: true });
  const deb = path.join(debs, `${pin.package}_${pin.version.replace(/:/g, "%3a")}_amd64.deb`);
  if (!existsSync(deb) || sha256Hex(await readFile(deb)) !== pin.sha256) {
    const tmp = await mkdtemp(path.join(debs, ".dl-"));
    try {
      await chmod(tmp, 0o755);
      await run(["apt-get", "download", `${pin.package}=${pin.version}`], { cwd: tmp });
      const got = (await readdir(tmp)).filter((f) => f.endsWith(".deb"));
      if (got.length !== 1) throw new Error(`apt-get download ${pin.package}=${pin.version} gave ${got.join(", ")}`);
      const data = await readFile(path.join(tmp, got[0]));
      if (sha256Hex(data) !== pin.sha256)
        throw new Error(
          `${pin.package} ${pin.version}: the archive's .deb has SHA-256 ${sha256Hex(data)}, boot.lock pins ${pin.sha256}`,
        );
      await rename(path.join(tmp, got[0]), deb);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  const x = await mkdtemp(path.join(debs, ".x-"));
  try {
    await run(["dpkg-deb", "-x", deb, x]);
    return { stub: await readFile(path.join(x, STUB_IN_DEB)), deb };
  } finally {
    await rm(x, { recursive: true, force: true });
  }
}

/** The disk recipe's own sources (as recipeDigest does for the image): a changed step is a new key. */
async function diskRecipeDigest(repoRoot: string, azure: boolean): Promise<string> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const h = createHash("sha256");
  // The VHD writer makes only Azure's disk: the others' key does not depend on it.
  for (const f of ["disk", "disk-init", "gpt", "cpio", ...(azure ? ["vhd"] : [])]) {
    const p = [path.join(repoRoot, "images/guest", `${f}.ts`), path.join(here, `${f}.js`)].find(existsSync);
    if (!p) throw new Error(`images/guest/${f} is missing`);
    h.update(f).update(await readFile(p));
  }
  return h.digest("hex");
}

/** A version-4-shaped GUID from 16 bytes of a digest (deterministic, RFC 4122 variant bits set). */
export function guidFromDigest(d: Buffer): string {
  const b = Buffer.from(d.subarray(0, 16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function diskCmdline(m: ImageManifest, rootLabel: string, verityLabel: string): string {
  // nvme_core.io_timeout: AWS's recommendation for EBS volumes on Nitro (the default 30 s can fail I/O
  // during EBS maintenance); harmless elsewhere. systemd.mask=systemd-pcrphase*: systemd 252 in the root
  // extends PCR 11 with boot phases ("sysinit", "ready", …) whenever systemd-stub booted it (the
  // StubPcrKernelImage EFI variable), outside the firmware's event log — the quoted PCR 11 would then neither
  // replay from the log nor equal the predicted UKI value. CREDENTIAL_CMDLINE: no systemd credential from the
  // VMM's SMBIOS/fw_cfg or the ESP (images/guest/credentials.ts).
  return (
    `console=ttyS0 panic=-1 no_timer_check ${CREDENTIAL_CMDLINE} nvme_core.io_timeout=4294967295 ` +
    `systemd.mask=systemd-pcrphase.service systemd.mask=systemd-pcrphase-sysinit.service ` +
    `bk.root=PARTLABEL=${rootLabel} bk.verity=PARTLABEL=${verityLabel} bk.roothash=${m.verity.rootHash}`
  );
}

/** Section start addresses after the stub's own image (objcopy needs explicit VMAs), as ukify lays them out. */
function stubEnd(stub: Buffer): number {
  const pe = stub.readUInt32LE(0x3c);
  const count = stub.readUInt16LE(pe + 6);
  const table = pe + 24 + stub.readUInt16LE(pe + 20);
  let end = 0;
  for (let i = 0; i < count; i++) {
    const s = table + i * 40;
    end = Math.max(end, stub.readUInt32LE(s + 12) + Math.max(stub.readUInt32LE(s + 8), stub.readUInt32LE(s + 16)));
  }
  return end;
}

async function buildUki(stage: string, stubFile: string, sections: [string, Buffer][], epoch: number): Promise<Buffer> {
  const stub = await readFile(stubFile);
  const align = 0x10000;
  let vma = Math.ceil(stubEnd(stub) / align) * align;
  const args: string[] = [];
  for (const [name, data] of sections) {
    const f = path.join(stage, `section${name}`);
    await writeFile(f, data);
    args.push("--add-section", `${name}=${f}`, "--change-section-vma", `${name}=0x${vma.toString(16)}`);
    vma += Math.ceil(data.length / align) * align;
  }
  const out = path.join(stage, "uki.efi");
  await run(["objcopy", ...args, stubFile, out]);
  return pinPeTimestamp(await readFile(out), epoch);
}

/** The Authenticode signer: osslsigncode, whose -time fixes the signingTime attribute (sbsign stamps the clock). */
const SIGNER_TOOL = "osslsigncode";

/** The signing certificate's public facts (the key is not read here). */
export async function signingCertificate(s: { key: string; cert: string }) {
  if (!existsSync(s.key)) throw new Error(`signing key ${s.key} does not exist`);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(await readFile(s.cert));
  } catch (e) {
    throw new Error(`signing certificate ${s.cert}: not an X.509 certificate (${(e as Error).message})`, { cause: e });
  }
  return { certSha256: sha256Hex(Buffer.from(cert.raw)), certPem: cert.toString(), subject: cert.subject };
}

/**
 * Appends an Authenticode signature (SHA-256, RSA PKCS#1 v1.5: deterministic, signingTime = the epoch) by the
 * customer's db key; the same key and UKI give the same bytes (an ECDSA key signs with a random nonce: not
 * byte-reproducible, though the PCR 4 digest still is). The signed image must hash (PCR 4) as the unsigned one.
 * A signer pads the image to 8 bytes before appending its certificate table and the firmware hashes that padding
 * (it lies before the table): the UKI is zero-padded first, so `unsigned` is what the signature covers.
 */
export async function signUki(
  stage: string,
  uki: Buffer,
  s: { key: string; cert: string },
  epoch: number,
): Promise<{ signed: Buffer; unsigned: Buffer }> {
  const work = await mkdtemp(path.join(stage, "sign-"));
  const input = path.join(work, "uki-unsigned.efi");
  const output = path.join(work, "uki-signed.efi");
  if (uki.length % 8) uki = Buffer.concat([uki, Buffer.alloc(8 - (uki.length % 8))]);
  await writeFile(input, uki);
  await run([
    SIGNER_TOOL,
    "sign",
    "-h",
    "sha256",
    "-certs",
    s.cert,
    "-key",
    s.key,
    "-time",
    String(epoch),
    "-in",
    input,
    "-out",
    output,
  ]);
  const signed = await readFile(output);
  await rm(work, { recursive: true, force: true });
  const fail = (why: string) => new Error(`signed UKI: ${why}`);
  if (!efiImageDigest(signed, "sha256", fail).equals(efiImageDigest(uki, "sha256", fail)))
    throw new Error("the signed UKI's Authenticode digest differs from the unsigned one's (PCR 4 would change)");
  return { signed, unsigned: uki };
}

/**
 * objcopy (binutils 2.40) stamps a PE it writes with the current time and ignores SOURCE_DATE_EPOCH: set the COFF
 * TimeDateStamp to the epoch and recompute the optional header's CheckSum (the PE image checksum: 16-bit
 * one's-complement-style sum of the file with the CheckSum field as zero, plus the file length).
 */
export function pinPeTimestamp(img: Buffer, epoch: number): Buffer {
  const pe = img.readUInt32LE(0x3c);
  if (img.toString("latin1", pe, pe + 4) !== "PE\0\0") throw new Error("objcopy's output is not a PE image");
  img.writeUInt32LE(epoch >>> 0, pe + 8);
  const checksum = pe + 24 + 64;
  img.writeUInt32LE(0, checksum);
  let sum = 0;
  for (let i = 0; i + 1 < img.length; i += 2) {
    sum += img.readUInt16LE(i);
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (img.length % 2) {
    sum += img[img.length - 1];
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  img.writeUInt32LE((sum + img.length) >>> 0, checksum);
  return img;
}

/** Kernel modules and os-release from the image's squashfs (unsquashfs reads the file; nothing is mounted). */
async function fromSquashfs(rootfs: string, stage: string, files: string[]): Promise<string> {
  const out = path.join(stage, `sq-${files.length}`);
  const list = path.join(stage, `sq-${files.length}.list`);
  await writeFile(list, files.join("\n") + "\n");
  await run(["unsquashfs", "-n", "-no-xattrs", "-d", out, "-ef", list, rootfs]);
  return out;
}

async function diskInitrd(
  imageDir: string,
  m: ImageManifest,
  stage: string,
  azure: boolean,
): Promise<{ layer: Buffer; modules: string[]; nic: string[]; osrel: Buffer }> {
  const rootfs = path.join(imageDir, m.files.rootfs.path);
  const kver = m.kernelVersion;
  // Merged /usr (bookworm): /lib is a symlink in the squashfs, unsquashfs needs the real path.
  const modRel = `usr/lib/modules/${kver}`;
  const meta = await fromSquashfs(rootfs, stage, [
    `${modRel}/modules.dep`,
    `${modRel}/modules.builtin`,
    "usr/lib/os-release",
  ]);
  const dep = await readFile(path.join(meta, modRel, "modules.dep"), "utf8");
  const builtin = await readFile(path.join(meta, modRel, "modules.builtin"), "utf8");
  const order = moduleLoadOrder(dep, builtin, azure ? AZURE_DISK_MODULES : DISK_MODULES);
  const nic = (azure ? AZURE_NIC_MODULES : CLOUD_NIC_MODULES).filter((n) =>
    dep.split("\n").some((l) => path.basename(l.split(":")[0]).replace(/\.ko.*$/, "") === n),
  );
  const mods = await fromSquashfs(
    rootfs,
    stage,
    order.map((f) => `${modRel}/${f}`),
  );
  const tree = path.join(stage, "layer");
  await mkdir(path.join(tree, "lib/modules"), { recursive: true });
  for (const f of order) {
    if (/\.ko\.[a-z]+$/.test(f)) throw new Error(`${f}: compressed modules need a decompressing insmod`);
    await copyFile(path.join(mods, modRel, f), path.join(tree, "lib/modules", path.basename(f)));
    await chmod(path.join(tree, "lib/modules", path.basename(f)), 0o644);
  }
  await writeFile(path.join(tree, "lib/modules/load-order"), order.map((f) => path.basename(f) + "\n").join(""));
  await writeFile(path.join(tree, "init"), DISK_INIT_SCRIPT);
  await chmod(path.join(tree, "init"), 0o755);
  return {
    layer: await newcArchive(tree),
    modules: order.map((f) => path.basename(f)),
    nic,
    osrel: await readFile(path.join(meta, "usr/lib/os-release")),
  };
}

/** Whether the image's disk is Azure's (built --cloud azure: its agent reads Azure's user-data, or the runtime role's). */
export function isAzureImage(m: ImageManifest): boolean {
  return m.enclaivelet?.userDataSource === "azure" || m.runtime?.cloud === "azure";
}

/**
 * Builds (or finds) the disk of a built image: <imageDir>/disk-<key>/{disk.raw, BOOTX64.EFI, disk.json}, and for an
 * image built --cloud azure also disk.vhd (the fixed VHD Azure takes). The key hashes the image's input hash, the disk
 * recipe, the pinned stub, the epoch and any test layers (and "azure" for Azure's disk).
 */
export async function buildDisk(o: DiskBuildOptions): Promise<DiskRecord> {
  const say = o.progress ?? (() => {});
  const m = o.manifest;
  const azure = isAzureImage(m);
  const pin = parseBootLock(await readFile(path.join(o.repoRoot, "images/guest/boot.lock"), "utf8"));
  const layers = (o.testLayers ?? []).map((l) => sha256Hex(l));
  const signer = o.signing ? await signingCertificate(o.signing) : undefined;
  const key = createHash("sha256")
    .update(
      JSON.stringify({
        image: m.inputHash,
        recipe: await diskRecipeDigest(o.repoRoot, azure),
        stub: pin,
        epoch: o.sourceDateEpoch,
        layers,
        ...(azure ? { cloud: "azure" } : {}),
        ...(signer ? { signer: signer.certSha256 } : {}),
      }),
    )
    .digest("hex")
    .slice(0, 24);
  const rel = `disk-${key}`;
  const dir = path.join(o.imageDir, rel);
  const recordPath = path.join(dir, "disk.json");
  if (!o.rebuild && existsSync(recordPath)) {
    const rec = JSON.parse(await readFile(recordPath, "utf8")) as DiskRecord;
    const disk = path.join(o.imageDir, rec.path);
    const vhd = rec.vhd && path.join(o.imageDir, rec.vhd.path);
    if (
      existsSync(disk) &&
      (await stat(disk)).size === rec.size &&
      (!vhd || (existsSync(vhd) && (await stat(vhd)).size === rec.vhd!.size))
    ) {
      say(`disk: cached ${disk}`);
      return rec;
    }
  }
  const started = Date.now();
  const stage = await mkdtemp(path.join(o.imageDir, ".disk-"));
  try {
    const { stub, deb } = await pinnedStub(o.cacheDir, pin);
    const stubFile = path.join(stage, "linuxx64.efi.stub");
    await writeFile(stubFile, stub);
    say(`disk: systemd-stub from ${path.basename(deb)}`);

    const init = await diskInitrd(o.imageDir, m, stage, azure);
    say(`disk: initramfs modules ${init.modules.join(" ")}; cloud NIC drivers in the root: ${init.nic.join(" ")}`);
    const base = await readFile(path.join(o.imageDir, m.files.initrd.path));
    const initrd = Buffer.concat([base, Buffer.alloc(-base.length & 3), init.layer, ...(o.testLayers ?? [])]);

    const prefix = m.verity.rootHash.slice(0, 16);
    const rootLabel = `bk-root-${prefix}`;
    const verityLabel = `bk-verity-${prefix}`;
    const cmdline = diskCmdline(m, rootLabel, verityLabel);
    const kernel = await readFile(path.join(o.imageDir, m.files.kernel.path));
    const built = await buildUki(
      stage,
      stubFile,
      [
        [".osrel", init.osrel],
        [".cmdline", Buffer.from(cmdline)],
        [".uname", Buffer.from(m.kernelVersion)],
        [".initrd", initrd],
        [".linux", kernel],
      ],
      o.sourceDateEpoch,
    );
    const signed = signer ? await signUki(stage, built, o.signing!, o.sourceDateEpoch) : undefined;
    const uki = signed?.signed ?? built;
    if (signer) say(`disk: UKI signed for Secure Boot by ${signer.subject} (certificate SHA-256 ${signer.certSha256})`);
    say(`disk: UKI ${(uki.length / MIB).toFixed(1)} MiB, SHA-256 ${sha256Hex(uki)}`);

    // The ESP: FAT32 with the UKI at the removable-media path, fixed serial and times.
    const espMiB = Math.max(64, Math.ceil((uki.length + 16 * MIB) / MIB));
    const espFirst = MIB / SECTOR;
    const esp = path.join(stage, "esp.img");
    const tree = path.join(stage, "esp", "EFI", "BOOT");
    await mkdir(tree, { recursive: true });
    await writeFile(path.join(tree, "BOOTX64.EFI"), uki);
    for (const p of [path.join(tree, "BOOTX64.EFI"), tree, path.dirname(tree)])
      await utimes(p, o.sourceDateEpoch, o.sourceDateEpoch);
    const env = { ...process.env, SOURCE_DATE_EPOCH: String(o.sourceDateEpoch), MTOOLS_SKIP_CHECK: "1" };
    await run(
      ["mkfs.fat", "-C", "-F", "32", "--invariant", "-n", "BKESP", "-h", String(espFirst), esp, String(espMiB * 1024)],
      { env },
    );
    await run(["mcopy", "-s", "-m", "-i", esp, path.join(stage, "esp", "EFI"), "::/"], { env });
    if (!readFatFile(await readFile(esp), UKI_ESP_PATH).equals(uki))
      throw new Error("the ESP's BOOTX64.EFI differs from the UKI written to it");

    // Partitions, 1 MiB aligned: ESP, root data, root hash tree; the backup GPT in the last MiB.
    const rootfsFile = path.join(o.imageDir, m.files.rootfs.path);
    const rootfsSize = (await stat(rootfsFile)).size;
    const dataBytes = m.verity.hashOffset;
    const hashBytes = rootfsSize - dataBytes;
    const mib = (n: number) => Math.ceil(n / MIB);
    const rootFirst = espFirst + espMiB * (MIB / SECTOR);
    const verityFirst = rootFirst + mib(dataBytes) * (MIB / SECTOR);
    const end = verityFirst + mib(hashBytes) * (MIB / SECTOR);
    const sectors = end + MIB / SECTOR;
    const rh = Buffer.from(m.verity.rootHash, "hex");
    const seed = (label: string) => createHash("sha256").update(`buckypaper disk ${label} ${m.inputHash}`).digest();
    const partitions: GptPartition[] = [
      {
        type: PARTITION_TYPE.esp,
        guid: guidFromDigest(seed("esp")),
        firstLba: espFirst,
        lastLba: rootFirst - 1,
        name: "EFI System Partition",
      },
      {
        type: PARTITION_TYPE.rootX86_64,
        guid: guidFromDigest(rh.subarray(0, 16)),
        firstLba: rootFirst,
        lastLba: verityFirst - 1,
        name: rootLabel,
        attributes: ATTR_READ_ONLY,
      },
      {
        type: PARTITION_TYPE.rootVerityX86_64,
        guid: guidFromDigest(rh.subarray(16, 32)),
        firstLba: verityFirst,
        lastLba: end - 1,
        name: verityLabel,
        attributes: ATTR_READ_ONLY,
      },
    ];
    const diskGuid = guidFromDigest(seed("disk"));
    const gpt = encodeGpt({ diskGuid, sectors, partitions });

    await mkdir(dir, { recursive: true });
    const tmpDisk = path.join(stage, "disk.raw");
    const fh = await open(tmpDisk, "w");
    try {
      await fh.truncate(sectors * SECTOR);
      await fh.write(gpt.head, 0, gpt.head.length, 0);
      const espData = await readFile(esp);
      await fh.write(espData, 0, espData.length, espFirst * SECTOR);
      const src = await open(rootfsFile, "r");
      try {
        const chunk = Buffer.alloc(8 * MIB);
        const copy = async (from: number, len: number, to: number) => {
          for (let done = 0; done < len;) {
            const { bytesRead } = await src.read(chunk, 0, Math.min(chunk.length, len - done), from + done);
            if (bytesRead === 0) throw new Error(`${rootfsFile}: short read`);
            await fh.write(chunk, 0, bytesRead, to + done);
            done += bytesRead;
          }
        };
        await copy(0, dataBytes, rootFirst * SECTOR);
        await copy(dataBytes, hashBytes, verityFirst * SECTOR);
      } finally {
        await src.close();
      }
      await fh.write(gpt.tail, 0, gpt.tail.length, (sectors - FIRST_USABLE_LBA + 1) * SECTOR);
    } finally {
      await fh.close();
    }
    const digest = await fileSha256(tmpDisk);
    const diskSize = (await stat(tmpDisk)).size;
    if (!ukiFromDiskFile(tmpDisk).equals(uki)) throw new Error("the disk's UKI differs from the one built");
    const tmpVhd = path.join(stage, "disk.vhd");
    const vhd = azure ? await writeFixedVhd(tmpDisk, digest, tmpVhd, o.sourceDateEpoch) : undefined;
    if (vhd) say(`disk: fixed VHD ${vhd.size} bytes (virtual ${vhd.virtualSize}), SHA-256 ${vhd.sha256}`);
    const fail = (why: string) => new Error(`UKI: ${why}`);
    const rec: DiskRecord = {
      path: `${rel}/disk.raw`,
      sha256: digest,
      size: diskSize,
      diskGuid,
      partitions: partitions.map((p, i) => ({
        number: i + 1,
        name: p.name,
        type: p.type,
        guid: p.guid,
        firstLba: p.firstLba,
        lastLba: p.lastLba,
      })),
      uki: {
        espPath: UKI_ESP_PATH,
        path: `${rel}/BOOTX64.EFI`,
        sha256: sha256Hex(uki),
        size: uki.length,
        authenticode: {
          sha256: efiImageDigest(uki, "sha256", fail).toString("hex"),
          sha384: efiImageDigest(uki, "sha384", fail).toString("hex"),
        },
        cmdline,
        initrdSha256: sha256Hex(initrd),
        stub: { ...pin, file: STUB_IN_DEB, stubSha256: sha256Hex(stub) },
      },
      rootLabel,
      verityLabel,
      initrdModules: init.modules,
      nicModules: init.nic,
      ...(layers.length ? { testLayers: layers } : {}),
      ...(vhd ? { vhd: { path: `${rel}/disk.vhd`, ...vhd } } : {}),
      ...(signer ? { signature: { ...signer, tool: SIGNER_TOOL, unsignedSha256: sha256Hex(signed!.unsigned) } } : {}),
    };
    const out = `${dir}.tmp-${process.pid}`;
    await rm(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true });
    await rename(tmpDisk, path.join(out, "disk.raw"));
    if (vhd) await rename(tmpVhd, path.join(out, "disk.vhd"));
    await writeFile(path.join(out, "BOOTX64.EFI"), uki);
    await writeFile(path.join(out, "disk.json"), JSON.stringify(rec, null, 2) + "\n");
    await rm(dir, { recursive: true, force: true });
    await rename(out, dir);
    say(
      `disk: ${(diskSize / MIB).toFixed(0)} MiB, SHA-256 ${rec.sha256} in ${Math.round((Date.now() - started) / 1000)} s`,
    );
    return rec;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

async function fileSha256(file: string): Promise<string> {
  const h = createHash("sha256");
  const fh = await open(file, "r");
  try {
    const chunk = Buffer.alloc(8 * MIB);
    for (let pos = 0; ;) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, pos);
      if (bytesRead === 0) break;
      h.update(chunk.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest("hex");
}

/**
 * The UKI the disk's firmware boots, read from the disk file itself (GPT → the EFI system partition → FAT32 →
 * \\EFI\\BOOT\\BOOTX64.EFI): what the boot-chain prediction measures, rather than a copy beside it. Reads only
 * the table and the ESP.
 */
export function ukiFromDiskFile(file: string): Buffer {
  const fd = openSync(file, "r");
  try {
    const head = Buffer.alloc(FIRST_USABLE_LBA * SECTOR);
    readSync(fd, head, 0, head.length, 0);
    const gpt = decodeGpt(head);
    const esp = gpt.partitions.find((p) => p.type === PARTITION_TYPE.esp);
    if (!esp) throw new Error(`${file}: the disk has no EFI system partition`);
    const data = Buffer.alloc((esp.lastLba - esp.firstLba + 1) * SECTOR);
    if (readSync(fd, data, 0, data.length, esp.firstLba * SECTOR) !== data.length)
      throw new Error(`${file}: the EFI system partition is beyond the file's end`);
    return readFatFile(data, UKI_ESP_PATH);
  } finally {
    closeSync(fd);
  }
}
