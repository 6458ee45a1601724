// The vHSM runtime's image for a confidential VM on SEV-SNP hardware (QEMU/KVM hosts, Proxmox VE), from the
// manifest `buckypaper image build --role runtime --runtime-psp sev-guest` wrote: the kernel, initrd and
// command line (with the dm-verity root hash, so the runtime, its config and unit) that go into the launch
// digest, the root filesystem the guest boots, and the AmdSev firmware the manifest names. Checked at preview:
// a workload image, a runtime built for the local stack's simulated PSP, or a swapped file is refused naming
// the field, before anything is launched.
import { createHash } from "node:crypto";
import path from "node:path";
import type * as pulumi from "@pulumi/pulumi";
import type * as command from "@pulumi/command";
import { ManifestError, loadManifest, readManifestFile, type ImageManifest } from "../../images/guest/index.js";
import { ConfigError } from "./errors.js";

/** Where the runtime image's initramfs finds its root: the first virtio disk. */
export const RUNTIME_ROOT_DEVICE = "/dev/vda";

export interface HardwareRuntimeImage {
  manifestPath: string;
  manifest: ImageManifest;
  kernel: string;
  initrd: string;
  /** The dm-verity root filesystem (raw): the guest's first virtio disk (the manifest's rootDevice). */
  rootfs: string;
  /** The kernel command line (-append), with the verity root hash: measured. */
  append: string;
  /** The AmdSev firmware beside the image (with the SNP kernel-hashes table), when the manifest names one. */
  firmware?: string;
}

/** The runtime-role image at `manifestPath` for SEV-SNP hardware; ConfigError names `field` and what is wrong. */
export function hardwareRuntimeImage(who: string, field: string, manifestPath: string): HardwareRuntimeImage {
  if (!path.isAbsolute(manifestPath))
    throw new ConfigError(who, field, `is '${manifestPath}'; must be the absolute path of a manifest.json`);
  let m: ImageManifest;
  try {
    m = loadManifest(manifestPath);
  } catch (e) {
    if (e instanceof ManifestError) throw new ConfigError(who, `${field} (${e.field})`, e.message);
    throw e;
  }
  if (m.role !== "runtime" || !m.runtime)
    throw new ConfigError(
      who,
      field,
      `'${manifestPath}' is a workload image (role ${m.role ?? "workload"}); the vHSM boots the runtime role: buckypaper image build --role runtime --runtime-psp sev-guest`,
      ["runtime"],
    );
  // A cloud disk's runtime unseals only by shares and proves its OS through the vTPM (the UEFI firmware does not
  // measure its UKI into the launch digest): booted here it would not be the derived-key, launch-bound runtime
  // this path promises. Checked before rootDevice so the error says what the image is.
  if (m.runtime.cloud !== undefined)
    throw new ConfigError(
      who,
      `${field} (runtime.cloud)`,
      `is '${m.runtime.cloud}': that is the runtime's cloud disk (platform ${m.runtime.cloud === "ec2" ? "aws" : "gcp"}); a QEMU/KVM or Proxmox VE host boots the direct-boot runtime image: buckypaper image build --role runtime --runtime-psp sev-guest`,
    );
  const psp = m.runtime.psp ?? "virtio-psp";
  if (psp !== "sev-guest")
    throw new ConfigError(
      who,
      `${field} (runtime.psp)`,
      `is '${psp}': that runtime gets its evidence and sealing key from the local stack's simulated PSP, which a guest on SEV-SNP hardware does not have; build it with --runtime-psp sev-guest`,
      ["sev-guest"],
    );
  // The runtime image's data script and the disk layout below (boot vda, seed vdb, data vdc) assume virtio disks.
  if (m.rootDevice !== RUNTIME_ROOT_DEVICE)
    throw new ConfigError(
      who,
      `${field} (rootDevice)`,
      `is '${m.rootDevice}'; the runtime guest attaches its root filesystem as the first virtio disk`,
      [RUNTIME_ROOT_DEVICE],
    );
  const dir = path.dirname(manifestPath);
  // The launch digest is computed from these bytes: a file that is not the manifest's is an error, not a new digest.
  // (The root filesystem is not read here: its root hash on the measured command line binds it.)
  try {
    readManifestFile(manifestPath, m, "kernel");
    readManifestFile(manifestPath, m, "initrd");
    if (m.files.firmware) readManifestFile(manifestPath, m, "firmware");
  } catch (e) {
    if (e instanceof ManifestError) throw new ConfigError(who, `${field} (${e.field})`, e.message);
    throw e;
  }
  return {
    manifestPath,
    manifest: m,
    kernel: path.join(dir, m.files.kernel.path),
    initrd: path.join(dir, m.files.initrd.path),
    rootfs: path.join(dir, m.files.rootfs.path),
    append: m.cmdline,
    ...(m.files.firmware && m.firmware?.measuredDirectBoot ? { firmware: path.join(dir, m.files.firmware.path) } : {}),
  };
}

/**
 * What names one launch of the runtime image on a host (AttestedRuntime's `launch`): how the VM is started (the
 * QEMU argv or the PVE parameters), the expected measurement and the image (verity root, files, runtime). A
 * change to any of them is another runtime.
 */
export function runtimeLaunchId(vm: unknown, expectedMeasurement: string, image: HardwareRuntimeImage): string {
  const m = image.manifest;
  return createHash("sha256")
    .update(JSON.stringify([vm, expectedMeasurement, m.verity.rootHash, m.files, m.runtime]))
    .digest("hex");
}

/** Printed once the runtime's VM was started: a fresh id per creation (the VM resource's stdout). */
export const LAUNCH_ID = 'echo "bk-launch $(cat /proc/sys/kernel/random/uuid)"';

/**
 * The launch as AttestedRuntime sees it: runtimeLaunchId and the id this VM's creation printed — so a new VM, even
 * from the same inputs (`pulumi up --replace`, which makes blank disks), is a new runtime to verify and bootstrap.
 */
export function launchOf(id: string, vm: command.remote.Command): pulumi.Output<string> {
  return vm.stdout.apply((out) => `${id}:${(out ?? "").trim()}`);
}
