// `buckypaper image build`: builds (or finds in the cache) the kit's guest image and prints the path of
// its manifest.json; progress goes to stderr. See docs/images.md for the output layout.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseFlags } from "./args.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import {
  RuntimeImageError,
  buildImage,
  runtimeVariant,
  type RuntimePsp,
  type RuntimeUnseal,
} from "../images/guest/index.js";

const USAGE = `usage: buckypaper image build [--firmware FILE | --no-firmware] [--update-lock] [--rebuild] [--out DIR]
      [--lock FILE] [--cache DIR] [--role workload|runtime]
      [--runtime-psp virtio-psp|sev-guest|azure-hcl] [--runtime-unseal derived-key|shares]
      [--cloud nocloud|ec2|gce|azure] [--format direct|disk] [--sign-key KEY.pem --sign-cert CERT.pem] [--json]

  Builds the guest image (kernel, initrd, dm-verity root filesystem) from the Debian packages in
  images/guest/packages.lock, cached under ~/.cache/buckypaper/images/<input hash>/, and prints the path
  of its manifest.json (with --json: the manifest). The firmware defaults to the AmdSev OVMF that
  scripts/build-firmware.sh built, when it has been built.
  --update-lock  lock the archive's current versions (rewrites the lock file), then build
  --rebuild      build even when the cache has the image (to check reproducibility)
  --out DIR      build into DIR instead of the cache
  --role R       workload (default: the enclaivelet before cloud-init) or runtime (the vHSM runtime's own
                 VM: the runtime, its config and unit in the verity root; cloud-init and sshd masked)
  --runtime-psp P  with --role runtime: where the runtime gets its evidence and sealing key — virtio-psp
                 (default: the local stack's simulated PSP over virtio-serial) or sev-guest (/dev/sev-guest on
                 SEV-SNP hardware: the image a Vhsm on platform qemu or proxmox boots; recorded as runtime.psp).
                 With --cloud ec2|gce the default is sev-guest (virtio-psp: tests with the simulated PSP);
                 with --cloud azure it is azure-hcl, the only one there (the paravisor's HCL report via the vTPM)
  --runtime-unseal U  with --role runtime: derived-key (default for the QEMU/Proxmox image: auto-unseal with the
                 PSP's derived key, operator shares as recovery) or shares (operators' Shamir shares and attested
                 peers only; default and the only choice with --cloud ec2|gce|azure or --format disk, where the SNP
                 launch digest covers only the firmware: derived-key is refused there). Recorded as runtime.unseal
  --cloud C      where the workload image reads its user-data (default nocloud: QEMU/Proxmox's seed; ec2:
                 EC2 IMDSv2; gce: the GCE metadata server; azure: the OVF CustomData as cloud-init-local
                 copies it): the enclaivelet's measured unit for that source,
                 and cloud-init limited to that one datasource (recorded as enclaivelet.userDataSource).
                 With --role runtime: ec2, gce or azure builds the runtime's cloud disk (the vTPM half of attested
                 TLS — gce: Google's certified AK; azure: the paravisor's HCL report and its AK's quote, the disk
                 also as the fixed VHD — and the data volume found by label; recorded as runtime.cloud)
  --format F     direct (kernel + initrd + rootfs.img for QEMU direct kernel boot) or disk: also a raw GPT
                 disk a UEFI firmware boots (ESP with a UKI at \\EFI\\BOOT\\BOOTX64.EFI, the root and its
                 dm-verity hash tree as partitions; manifest 'disk'); with --cloud azure also that disk as the
                 fixed VHD Azure takes (initramfs with Hyper-V's storvsc; manifest 'disk.vhd'). Default: disk
                 with --cloud ec2|gce|azure
  --sign-key K, --sign-cert C
                 with the disk format: sign its UKI for Secure Boot (Authenticode, SHA-256) with your db key
                 (PEM; RSA gives the same bytes for the same inputs). The key is read in place, never copied; the
                 manifest records the certificate (disk.signature). Enroll the certificate in the VM's db`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
    io.out(USAGE);
    return sub === undefined ? Exit.usage : Exit.ok;
  }
  if (sub !== "build") throw new UsageError(`unknown subcommand '${sub}' (expected build)\n${USAGE}`);
  const { values: v } = parseFlags(rest, {
    firmware: { type: "string" },
    "no-firmware": { type: "boolean" },
    "update-lock": { type: "boolean" },
    rebuild: { type: "boolean" },
    out: { type: "string" },
    lock: { type: "string" },
    cache: { type: "string" },
    role: { type: "string" },
    cloud: { type: "string" },
    "runtime-psp": { type: "string" },
    "runtime-unseal": { type: "string" },
    format: { type: "string" },
    "sign-key": { type: "string" },
    "sign-cert": { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (v.help) {
    io.out(USAGE);
    return Exit.ok;
  }
  const role = (v.role as string | undefined) ?? "workload";
  if (role !== "workload" && role !== "runtime") throw new UsageError(`--role: '${role}' (workload or runtime)`);
  const cloud = (v.cloud as string | undefined) ?? "nocloud";
  if (cloud !== "nocloud" && cloud !== "ec2" && cloud !== "gce" && cloud !== "azure")
    throw new UsageError(`--cloud: '${cloud}' (nocloud, ec2, gce or azure)`);
  const runtimePsp = v["runtime-psp"] as string | undefined;
  const runtimeUnseal = v["runtime-unseal"] as string | undefined;
  if (runtimePsp !== undefined && role !== "runtime") throw new UsageError("--runtime-psp needs --role runtime");
  if (runtimeUnseal !== undefined && role !== "runtime") throw new UsageError("--runtime-unseal needs --role runtime");
  const format = v.format as string | undefined;
  if (format !== undefined && format !== "direct" && format !== "disk")
    throw new UsageError(`--format: '${format}' (direct or disk)`);
  // The runtime's choices together (cloud, psp, format, unseal), refused before anything is built.
  if (role === "runtime")
    try {
      runtimeVariant({
        cloud,
        ...(runtimePsp !== undefined ? { psp: runtimePsp } : {}),
        ...(runtimeUnseal !== undefined ? { unseal: runtimeUnseal } : {}),
        ...(format !== undefined ? { format } : {}),
      });
    } catch (e) {
      if (e instanceof RuntimeImageError) throw new UsageError(e.message);
      throw e;
    }
  const signKey = v["sign-key"] as string | undefined;
  const signCert = v["sign-cert"] as string | undefined;
  if ((signKey === undefined) !== (signCert === undefined))
    throw new UsageError(`${signKey === undefined ? "--sign-cert needs --sign-key" : "--sign-key needs --sign-cert"}`);
  if (signKey !== undefined) {
    const disk = format === "disk" || (format === undefined && cloud !== "nocloud");
    if (!disk) throw new UsageError("--sign-key: signs the cloud disk's UKI (--format disk)");
    for (const [flag, f] of [
      ["--sign-key", signKey],
      ["--sign-cert", signCert!],
    ] as const)
      if (!existsSync(f)) throw new UsageError(`${flag}: ${f} does not exist`);
  }
  if (v.firmware !== undefined && v["no-firmware"])
    throw new UsageError("--firmware and --no-firmware are alternatives");
  // dist/cli/image.js → the repository root
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  let firmware = v.firmware as string | undefined;
  if (firmware !== undefined && !existsSync(firmware)) throw new UsageError(`--firmware: ${firmware} does not exist`);
  if (firmware === undefined && !v["no-firmware"]) {
    const r = spawnSync(path.join(repoRoot, "scripts/build-firmware.sh"), ["--print-path"], { encoding: "utf8" });
    if (r.status === 0) firmware = r.stdout.trim();
    else io.err("image: no AmdSev firmware built yet (scripts/build-firmware.sh); the manifest will name none");
  }
  const result = await buildImage({
    repoRoot,
    lockPath: path.resolve((v.lock as string | undefined) ?? path.join(repoRoot, "images/guest/packages.lock")),
    cacheDir: path.resolve((v.cache as string | undefined) ?? path.join(homedir(), ".cache/buckypaper")),
    updateLock: Boolean(v["update-lock"]),
    rebuild: Boolean(v.rebuild),
    outDir: v.out !== undefined ? path.resolve(v.out as string) : undefined,
    firmware,
    role,
    cloud,
    ...(runtimePsp !== undefined ? { runtimePsp: runtimePsp as RuntimePsp } : {}),
    ...(runtimeUnseal !== undefined ? { runtimeUnseal: runtimeUnseal as RuntimeUnseal } : {}),
    ...(format ? { format } : {}),
    ...(signKey ? { diskSigning: { key: path.resolve(signKey), cert: path.resolve(signCert!) } } : {}),
    progress: (line) => io.err(line),
  });
  io.err(
    `image: ${result.cached ? "cached" : "built"} in ${result.seconds} s — root hash ${result.manifest.verity.rootHash}`,
  );
  if (result.manifest.disk)
    io.err(
      `image: cloud disk ${path.join(result.dir, result.manifest.disk.path)} (UKI ${result.manifest.disk.uki.sha256})`,
    );
  if (result.manifest.disk?.signature)
    io.err(
      `image: UKI signed for Secure Boot by ${result.manifest.disk.signature.subject} (certificate SHA-256 ${result.manifest.disk.signature.certSha256})`,
    );
  if (result.manifest.disk?.vhd)
    io.err(
      `image: Azure fixed VHD ${path.join(result.dir, result.manifest.disk.vhd.path)} (SHA-256 ${result.manifest.disk.vhd.sha256})`,
    );
  io.out(v.json ? JSON.stringify(result.manifest, null, 2) : result.manifestPath);
  return Exit.ok;
}
