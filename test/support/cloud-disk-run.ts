// What every boot test of a workload cloud disk sets up before its first guest (cloud-disk-boot.test.ts for EC2,
// gce-disk-boot.test.ts for GCE): the disk as `image build --cloud <cloud>` makes it (the manifest's own disk), the
// boot policy predicted from it, a real runtime over HTTPS trusting the simulated SNP platform and reachable at
// `runtimeAddr` on the guest's link, the firmware-only launch digest the simulated PSP reports for Debian's OVMF and
// one vCPU (the same for every VM of that size, as on EC2 and GCE), and a PSP per launch.
import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { expect } from "vitest";
import { buildImage, type ImageManifest } from "../../images/guest/index.js";
import type { DiskRecord } from "../../images/guest/manifest.js";
import { predictFromDisk } from "../../images/index.js";
import type { MeasuredBootPolicy } from "../../runtime/attestation/tpm/index.js";
import type { Policy } from "../../runtime/protocol/policy.js";
import { kinds } from "../../provider/kinds.js";
import { renderUserData } from "../../runtime/guest/cloud-init/index.js";
import { measureLaunch } from "../../runtime/sim/localvm/psp.js";
import { startSimulatedPsp, type SimulatedPsp } from "../../runtime/sim/qemu/index.js";
import { createSnpSimulator } from "../../runtime/sim/snp.js";
import { startEnclaiveletStack, type EnclaiveletStack } from "../runtime/guest/stack.js";
import { DEBIAN_OVMF } from "./cloud-disk-guest.js";
import { KIT_GUEST_CPU } from "./kit-guest.js";
import { repoRoot } from "./shared.js";

export interface CloudDiskRun {
  /** The image's directory, its manifest (and path) and its cloud disk (`path.join(dir, disk.path)`). */
  dir: string;
  manifest: ImageManifest;
  manifestPath: string;
  disk: DiskRecord;
  /** The measured-boot policy predictFromDisk registers for it (sha256). */
  policy: MeasuredBootPolicy;
  stack: EnclaiveletStack;
  runtimePort: number;
  /** The firmware-only SNP launch digest (hex). */
  measurement: string;
  /** A simulated PSP for one launch (the same firmware and vCPUs: the same MEASUREMENT). */
  newPsp(): Promise<SimulatedPsp>;
  /**
   * The user-data the cloud's component renders for an image with the agent in it (vTPM on; on GCP with Google's AK
   * certificate), reaching this runtime, with the simulated PSP's port as the evidence provider instead of
   * /dev/sev-guest and one secret written to a file — plus the workload's own code (`extraFiles`, `runcmd`), part of
   * the registered hash.
   */
  userData(o: {
    platform: "aws" | "gcp";
    workloadId: string;
    runcmd: string[];
    extraFiles?: { path: string; content: string; permissions: string }[];
  }): { text: string; sha256: string };
  /** Registers the workload as the cloud's component does: this launch digest, the user-data hash, `policy`, and
   *  the one secret the user-data provisions. */
  register(workloadId: string, userDataSha256: string, policy: Policy): Promise<unknown>;
}

export async function startCloudDiskRun(o: {
  cloud: "ec2" | "gce";
  runtimeAddr: string;
  scratch: string;
}): Promise<CloudDiskRun> {
  // The tools the vTPM evidence needs are in every variant's root (images/guest/lock.ts).
  const img = await buildImage({
    repoRoot,
    lockPath: path.join(repoRoot, "images/guest/packages.lock"),
    cacheDir: path.join(homedir(), ".cache/buckypaper"),
    cloud: o.cloud,
  });
  expect(img.manifest.disk, `image build --cloud ${o.cloud} makes the cloud disk`).toBeDefined();
  expect(img.manifest.enclaivelet?.userDataSource).toBe(o.cloud);
  const sim = await createSnpSimulator({ product: "Genoa", rsaBits: 2048 });
  const stack = await startEnclaiveletStack({ sim, tlsHosts: [o.runtimeAddr] });
  // What the PSP reports for this launch: firmware + vCPUs only (no kernel-hashes table in Debian's OVMF).
  const launch = measureLaunch({ firmware: DEBIAN_OVMF, vcpus: 1, vcpuType: KIT_GUEST_CPU });
  expect(launch.kernelMeasured).toBe(false);
  const runtimePort = Number(new URL(stack.rt.url).port);
  return {
    dir: img.dir,
    manifest: img.manifest,
    manifestPath: img.manifestPath,
    disk: img.manifest.disk!,
    policy: predictFromDisk(img.manifestPath, img.manifest, "sha256").policy,
    stack,
    runtimePort,
    measurement: launch.measurement,
    newPsp: () =>
      startSimulatedPsp({
        sim,
        measurement: launch.measurement,
        socketPath: path.join(mkdtempSync(path.join(o.scratch, "psp-")), "psp.sock"),
        kernelMeasured: false,
      }),
    register: (workloadId, userDataSha256, policy) =>
      stack.admin(
        "PUT",
        `nitride/workloads/${workloadId}`,
        kinds.workload.body({
          workloadId,
          platforms: ["snp"],
          snpMeasurements: [launch.measurement],
          userDataSha256,
          policy,
          kvSecrets: ["secret/data/web/db"],
        }),
      ),
    userData(u) {
      const rendered = renderUserData({
        platform: u.platform,
        tee: "snp",
        runtimeUrl: `https://${o.runtimeAddr}:${runtimePort}`,
        runtimeCaSha256: stack.caSha256,
        workloadId: u.workloadId,
        agent: { kind: "image" },
        evidenceProvider: "virtio-psp",
        vtpm: true,
        ...(u.platform === "gcp" ? { vtpmGoogleAk: true } : {}),
        hostname: u.workloadId,
        provision: { files: [{ path: "/run/bk-app/db-password", secret: "web/db", field: "password", mode: "0600" }] },
        ...(u.extraFiles ? { extraFiles: u.extraFiles } : {}),
      }).text;
      // The image's agent needs no runcmd: the workload's are the only ones.
      expect(rendered).not.toMatch(/^runcmd:/m);
      const text = `${rendered}runcmd:\n${u.runcmd.map((c) => `  - ${c}\n`).join("")}`;
      return { text, sha256: createHash("sha256").update(text).digest("hex") };
    },
  };
}
