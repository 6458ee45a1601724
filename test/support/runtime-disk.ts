// A runtime-role image with a cloud disk, as `buckypaper image build --role runtime --runtime-psp sev-guest --format
// disk --cloud ec2|gce` writes it, for the Vhsm's cloud platforms: a real UKI (Debian's systemd-stub with .linux,
// .initrd, .cmdline sections added by objcopy; the command line carries the verity root hash and the credential words)
// on a real FAT32 EFI system partition (mkfs.fat + mcopy) inside a GPT disk (images/guest encodeGpt), so the
// component's prediction reads it out of the disk file as it does a built image's. Kernel and initrd are stand-ins:
// the prediction hashes them (inside the UKI), nothing boots them. Needs systemd-boot-efi, binutils, dosfstools, mtools.
import { createHash, X509Certificate } from "node:crypto";
import { spawnSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { encodeGpt, PARTITION_TYPE } from "../../images/guest/index.js";
import { kitCmdlineMustContain, type ImageManifest } from "../../images/guest/manifest.js";
import { bootApplicationDigest } from "../../images/index.js";
import { writeTestManifest } from "./kit-manifest.js";
import { buildUki, haveUkiTools } from "./uki.js";
import { haveCommand } from "./prereq.js";

export function haveDiskTools(): boolean {
  return haveUkiTools(
    haveCommand("mkfs.fat", ["--help"]) &&
      haveCommand("mcopy", ["--version"]) &&
      haveCommand("osslsigncode", ["--version"]) &&
      haveCommand("openssl", ["version"]),
  );
}

export { dbKeyPair } from "./db-key.js";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const ROOT_HASH = "7a".repeat(32);
const ESP_SECTORS = 131072; // 64 MiB: FAT32's minimum cluster count with mkfs.fat's defaults

export interface RuntimeDisk {
  manifest: string;
  dir: string;
  uki: Buffer;
  cmdline: string;
}

/** The UKI the disk boots: the kit's command line (root hash, credential words) plus `extraCmdline`. */
export function runtimeUki(dir: string, extraCmdline = ""): { uki: Buffer; cmdline: string } {
  const cmdline = [
    "console=ttyS0 bk.root=PARTLABEL=bk-root",
    ...kitCmdlineMustContain({ verity: { rootHash: ROOT_HASH } } as Pick<ImageManifest, "verity">),
    extraCmdline,
  ]
    .filter(Boolean)
    .join(" ");
  mkdirSync(dir, { recursive: true });
  const uki = buildUki(dir, {
    ".osrel": Buffer.from("ID=debian\nVERSION_ID=12\n"),
    ".cmdline": Buffer.from(cmdline),
    ".initrd": Buffer.alloc(20000, 5),
    ".linux": Buffer.alloc(40000, 6),
  });
  return { uki, cmdline };
}

export function writeRuntimeDisk(
  o: {
    psp?: "virtio-psp" | "sev-guest" | "azure-hcl";
    role?: "runtime" | "workload";
    disk?: boolean;
    /** The fields `image build --role runtime --cloud` records (absent: a manifest from before them). */
    cloud?: "ec2" | "gce" | "azure";
    unseal?: "derived-key" | "shares";
    ak?: "runtime-ak" | "google-ak" | "hcl-ak";
    /** Sign the UKI (osslsigncode, as `image build --sign-key/--sign-cert` does) and record disk.signature. */
    sign?: { key: string; cert: string };
    /** Workload role: the enclaivelet's user-data source (`image build --cloud`); default ec2. */
    userDataSource?: "ec2" | "gce" | "azure" | "nocloud";
  } = {},
): RuntimeDisk {
  const dir = mkdtempSync(path.join(tmpdir(), "bp-runtime-disk-"));
  writeFileSync(path.join(dir, "vmlinuz"), Buffer.alloc(40000, 6));
  writeFileSync(path.join(dir, "initrd.img"), Buffer.alloc(20000, 5));
  writeFileSync(path.join(dir, "rootfs.img"), Buffer.alloc(8192, 3));
  const built = runtimeUki(path.join(dir, "uki"));
  const cmdline = built.cmdline;
  let uki = built.uki;
  const unsigned = uki;
  if (o.sign) {
    const input = path.join(dir, "uki", "unsigned.efi");
    const output = path.join(dir, "uki", "signed.efi");
    writeFileSync(input, uki.length % 8 ? Buffer.concat([uki, Buffer.alloc(8 - (uki.length % 8))]) : uki);
    const r = spawnSync("osslsigncode", [
      "sign",
      "-h",
      "sha256",
      "-certs",
      o.sign.cert,
      "-key",
      o.sign.key,
      "-in",
      input,
      "-out",
      output,
    ]);
    if (r.status !== 0) throw new Error(`osslsigncode: ${r.stderr}`);
    uki = readFileSync(output);
  }
  writeFileSync(path.join(dir, "BOOTX64.EFI"), uki);
  // The ESP: FAT32 with \EFI\BOOT\BOOTX64.EFI.
  const espDir = path.join(dir, "esp", "EFI", "BOOT");
  mkdirSync(espDir, { recursive: true });
  writeFileSync(path.join(espDir, "BOOTX64.EFI"), uki);
  const esp = path.join(dir, "esp.img");
  const fat = spawnSync("mkfs.fat", ["-C", "-F", "32", "--invariant", esp, String(ESP_SECTORS / 2)]);
  if (fat.status !== 0) throw new Error(`mkfs.fat: ${fat.stderr}`);
  const cp = spawnSync("mcopy", ["-s", "-m", "-i", esp, path.join(dir, "esp", "EFI"), "::/"], {
    env: { ...process.env, MTOOLS_SKIP_CHECK: "1" },
  });
  if (cp.status !== 0) throw new Error(`mcopy: ${cp.stderr}`);
  // The GPT disk: the ESP at LBA 2048.
  const sectors = 2048 + ESP_SECTORS + 2048;
  const partitions = [
    {
      type: PARTITION_TYPE.esp,
      guid: "11111111-2222-4333-8444-555555555555",
      firstLba: 2048,
      lastLba: 2048 + ESP_SECTORS - 1,
      name: "EFI System Partition",
    },
  ];
  const g = encodeGpt({ diskGuid: "0c5f7a3e-1b2d-4e6f-8a9b-0c1d2e3f4a5b", sectors, partitions });
  const diskFile = path.join(dir, "disk.raw");
  const fd = openSync(diskFile, "w");
  try {
    writeSync(fd, Buffer.alloc(sectors * 512));
    writeSync(fd, g.head, 0, g.head.length, 0);
    writeSync(fd, readFileSync(esp), 0, ESP_SECTORS * 512, 2048 * 512);
    writeSync(fd, g.tail, 0, g.tail.length, (sectors - 33) * 512);
  } finally {
    closeSync(fd);
  }
  const disk = readFileSync(diskFile);
  const runtime = (o.role ?? "runtime") === "runtime";
  const manifest = writeTestManifest(dir, {
    rootHash: ROOT_HASH,
    rootDevice: "/dev/nvme0n1",
    role: runtime
      ? {
          role: "runtime" as const,
          runtime: {
            sha256: "ef".repeat(32),
            path: "/opt/buckypaper/bk-runtime/bin/bk-runtime",
            node: "node@22",
            unit: "bk-runtime.service",
            config: "/etc/buckypaper/runtime.hcl",
            masked: ["cloud-init.service"],
            psp: o.psp ?? "sev-guest",
            ...(o.cloud ? { cloud: o.cloud } : {}),
            ...(o.unseal ? { unseal: o.unseal } : {}),
            ...(o.ak ? { vtpm: { device: "/dev/tpmrm0", ak: o.ak } } : {}),
          },
        }
      : {
          enclaivelet: {
            sha256: "ef".repeat(32),
            path: "/opt/buckypaper/enclaivelet/bin/enclaivelet",
            node: "node@22",
            unit: "enclaivelet-measured.service",
            userDataSource: o.userDataSource ?? "ec2",
          },
        },
    firmware: null,
  });
  if (o.disk !== false) {
    const m = JSON.parse(readFileSync(manifest, "utf8")) as ImageManifest;
    m.disk = {
      path: "disk.raw",
      sha256: sha256(disk),
      size: disk.length,
      diskGuid: "0c5f7a3e-1b2d-4e6f-8a9b-0c1d2e3f4a5b",
      partitions: partitions.map((p, i) => ({ number: i + 1, ...p })),
      uki: {
        espPath: "/EFI/BOOT/BOOTX64.EFI",
        path: "BOOTX64.EFI",
        sha256: sha256(uki),
        size: uki.length,
        authenticode: { sha256: bootApplicationDigest(uki, "sha256"), sha384: bootApplicationDigest(uki, "sha384") },
        cmdline,
        initrdSha256: sha256(Buffer.alloc(20000, 5)),
        stub: {
          package: "systemd-boot-efi",
          version: "test",
          sha256: "00".repeat(32),
          file: "linuxx64.efi.stub",
          stubSha256: "00".repeat(32),
        },
      },
      ...(o.sign
        ? {
            signature: {
              certSha256: sha256(new X509Certificate(readFileSync(o.sign.cert)).raw),
              certPem: readFileSync(o.sign.cert, "utf8"),
              subject: new X509Certificate(readFileSync(o.sign.cert)).subject,
              tool: "osslsigncode",
              unsignedSha256: sha256(unsigned),
            },
          }
        : {}),
      rootLabel: "bk-root",
      verityLabel: "bk-verity",
      initrdModules: [],
      nicModules: [],
    };
    writeFileSync(manifest, JSON.stringify(m, null, 2) + "\n");
  }
  return { manifest, dir, uki, cmdline };
}
