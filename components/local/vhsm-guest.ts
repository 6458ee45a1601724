// The Vhsm component's `confidential-vm` mode on the local platform: the runtime in its own real QEMU guest
// with the simulated PSP, like the local stack's workload guests. At `pulumi up` (preview included) the image
// is built or found (`buckypaper simulate runtime-image`: the kit's verity image in its runtime role with the
// AmdSev firmware, runtime/sim/qemu/runtime-image.ts), the exact QEMU command line is made, and the expected
// launch measurement is computed from the boot inputs that argv names — firmware, vCPUs, kernel, initrd and
// the command line with the dm-verity root hash, so every byte of the runtime, its config and its unit — by
// the same engine that computes every workload's (images/snp). The VhsmGuest resource then boots it with
// HOST_DATA = SHA-256 of its instance identity (made once per resource, provider/vhsm-instance.ts), verifies
// its attested TLS against that measurement, that HOST_DATA and the platform's anchor, and bootstraps it over
// connections pinned to the attested key. The guests and the providers reach it with the same expectation (`attestation`), never a
// copied fingerprint.
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { expectedQemuLaunch } from "../common/boot-measure.js";
import { ConfigError } from "../common/errors.js";
import { inputFileSha256, readInputFile } from "../common/input-file.js";
import { Tee } from "../common/types.js";
import { qemuGuestArgv } from "../qemu/settings.js";
import { imageFromCli } from "./real-guest.js";
import { VhsmGuest } from "../../provider/vhsm-guest.js";
import type { RuntimeBootstrapArgs } from "../../provider/resources.js";
import type { SimulatedAnchor } from "../../provider/local-vm.js";
import { noCloudMetaData } from "../../runtime/guest/cloud-init/index.js";
import { bootInputsOf } from "../../runtime/sim/qemu/launch.js";
import { runtimeGuestNetOptions } from "../../runtime/sim/qemu/guest.js";
import { RUNTIME_GUEST_PORT } from "../../images/guest/runtime-role.js";
import type { RuntimeGuestImage } from "../../runtime/sim/qemu/runtime-image.js";
import { amdSevFirmware, realGuestSupport } from "../../runtime/sim/qemu/local-image.js";
import { firmwareMeasuresKernel, LocalVmError } from "../../runtime/sim/localvm/index.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";

export interface LocalVhsmGuestArgs {
  who: string;
  name: string;
  /** `<project>/<stack>/<resource name>`: part of the instance identity whose hash is the guest's HOST_DATA. */
  instanceName: string;
  packageRoot: string;
  platformDir: pulumi.Input<string>;
  anchor: pulumi.Input<SimulatedAnchor>;
  stateDir: string;
  port: number;
  /** The firmware, when not the image's own (AmdSev). */
  firmware?: string;
  /** Booted with this firmware instead of the registered one (tamper demonstration / test). */
  actualFirmware?: string;
  vcpus: number;
  memoryMb: number;
  dataDiskGb: number;
  /** The bootstrap inputs the process mode uses too (keys, recovery, root writes). */
  bootstrap: RuntimeBootstrapArgs;
}

const CPU_MODEL = "EPYC-Milan";
const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** What `buckypaper simulate runtime-image --json` prints. */
type VhsmGuestImage = Pick<
  RuntimeGuestImage,
  "firmware" | "kernel" | "initrd" | "append" | "rootImage" | "manifestPath" | "runtimeSha256"
>;

let image: VhsmGuestImage | undefined;

/**
 * Can this machine run the runtime's own guest? What the workload guests need (realGuestSupport), plus the
 * AmdSev firmware (scripts/build-firmware.sh, cached) and the tools that build the verity image. `auto` in
 * the local stack falls back to a runtime process with this reason.
 */
export function localVhsmGuestSupport(packageRoot: string): { ok: boolean; reason: string } {
  const missing: string[] = [];
  const guests = realGuestSupport();
  if (!guests.ok) missing.push(guests.reason);
  if (!amdSevFirmware(packageRoot)) missing.push("the AmdSev firmware (scripts/build-firmware.sh builds it once)");
  for (const [cmd, arg, what] of [
    ["mksquashfs", "-version", "squashfs-tools"],
    ["veritysetup", "--version", "cryptsetup-bin"],
  ] as const) {
    const r = spawnSync(cmd, [arg], { stdio: "ignore" });
    if (r.error !== undefined || r.status === 127) missing.push(`${cmd} (${what}, builds the runtime's verity image)`);
  }
  return { ok: missing.length === 0, reason: missing.join("; ") };
}

/** The runtime guest's image: built by a child process (a component constructor cannot await), cached. */
function runtimeImage(who: string, packageRoot: string): { image: VhsmGuestImage; log: string } {
  if (image) return { image, log: "" };
  const built = imageFromCli<VhsmGuestImage>(who, "platform", packageRoot, "runtime-image", "runtime guest image");
  image = built.image;
  return built;
}

export interface LocalVhsmGuest {
  guest: VhsmGuest;
  url: string;
  expectedMeasurement: string;
  kernelMeasured: boolean;
  /** The expectation every client of this runtime holds (providers, enclaivelets): the measurement, the
   *  platform's anchor and this instance's HOST_DATA (chosen by the VhsmGuest resource at create). */
  attestation: pulumi.Output<RuntimeAttestation>;
}

export function localVhsmGuest(parent: pulumi.Resource, a: LocalVhsmGuestArgs): LocalVhsmGuest {
  const { image: img, log } = runtimeImage(a.who, a.packageRoot);
  if (log) pulumi.log.info(`runtime guest image: ${log.split("\n").pop()}`, parent);
  const registeredFirmware = a.firmware ?? img.firmware;
  const argvFor = (firmware: string) =>
    qemuGuestArgv({
      name: a.name,
      tee: Tee.SevSnp,
      sevObject: false,
      vcpus: a.vcpus,
      memoryMb: a.memoryMb,
      cpuModel: CPU_MODEL,
      firmwarePath: firmware,
      kernelPath: img.kernel,
      initrdPath: img.initrd,
      append: img.append,
      diskPath: path.join(a.stateDir, "root.qcow2"),
      seedIsoPath: path.join(a.stateDir, "seed.iso"),
      dataDiskPath: path.join(a.stateDir, "data.qcow2"),
      userNetOptions: runtimeGuestNetOptions({ hostPort: a.port, guestPort: RUNTIME_GUEST_PORT }),
    });
  // The expected measurement, from the boot inputs the registered argv names (the kernel only where the
  // firmware verifies it: no value real hardware would not produce).
  const b = bootInputsOf(argvFor(registeredFirmware));
  let kernelMeasured: boolean;
  try {
    kernelMeasured = firmwareMeasuresKernel(readInputFile(a.who, "firmware", b.firmware), "firmware");
  } catch (e) {
    if (e instanceof LocalVmError) throw new ConfigError(a.who, "firmware", e.message);
    throw e;
  }
  const expected = expectedQemuLaunch(
    a.who,
    Tee.SevSnp,
    kernelMeasured
      ? { firmware: b.firmware, kernel: b.kernel!, initrd: b.initrd!, append: b.append! }
      : { firmware: b.firmware },
    b.vcpus,
    b.vcpuType,
    a.memoryMb,
  ).measurements[0];
  pulumi.log.info(
    `measured the vHSM runtime guest: firmware ${path.basename(b.firmware)}${kernelMeasured ? " + kernel/initrd/cmdline (dm-verity root hash)" : " (kernel not in the digest: the firmware has no kernel-hashes table)"}, ${b.vcpus} × ${b.vcpuType}, from its QEMU argv → ${expected.slice(0, 16)}…`,
    parent,
  );
  const firmware = a.actualFirmware ?? registeredFirmware;
  if (a.actualFirmware)
    pulumi.log.warn(`booting the vHSM runtime guest with firmware ${a.actualFirmware}, not the registered one`, parent);
  const attestation = pulumi.output(a.anchor).apply((anchor): RuntimeAttestation => ({
    snpMeasurements: [expected],
    simulatedAnchors: [{ product: anchor.product, ark_sha256: anchor.ark_sha256, ca_certs: anchor.ca_certs }],
    kds: "off",
  }));
  const url = `https://127.0.0.1:${a.port}`;
  const guest = new VhsmGuest(
    `${a.name}-guest`,
    {
      name: a.name,
      instanceName: a.instanceName,
      platformDir: a.platformDir,
      stateDir: a.stateDir,
      argv: argvFor(firmware),
      baseImage: img.rootImage,
      metaData: noCloudMetaData(`${pulumi.getStack()}-${a.name}`, a.name),
      dataDiskGb: a.dataDiskGb,
      bootInputsSha256: sha256(
        JSON.stringify([
          inputFileSha256(a.who, "firmware", firmware),
          inputFileSha256(a.who, "kernel", img.kernel),
          inputFileSha256(a.who, "initrd", img.initrd),
          img.runtimeSha256,
        ]),
      ),
      url,
      attestation,
      ...a.bootstrap,
    },
    { parent },
  );
  // Usable once the runtime was verified and bootstrapped (its HOST_DATA and the instance id its evidence bound
  // after init are outputs of the guest resource): every verifier then refuses a twin of this runtime.
  const instanceAttestation = pulumi
    .all([attestation, guest.snpHostData, guest.runtimeInstanceId, guest.measurement])
    .apply(([x, snpHostData, runtimeInstanceId]): RuntimeAttestation => ({
      ...x,
      snpHostData,
      ...(runtimeInstanceId ? { runtimeInstanceId } : {}),
    }));
  return { guest, url, expectedMeasurement: expected, kernelMeasured, attestation: instanceAttestation };
}
