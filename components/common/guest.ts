// What every confidential-VM component does besides creating the cloud VM: register the workload
// (expected launch state + policy + what it may receive) and its secrets with the runtime, and render
// the user-data that makes the enclaivelet attest at boot. User-data carries no secret: only the
// runtime URL, the runtime CA fingerprint and the workload id.
import * as pulumi from "@pulumi/pulumi";
import { Secret, Workload } from "../../provider/resources.js";
import { renderUserData, type CloudPlatform, type UserDataInput } from "../../runtime/enclaivelet/cloud-init/index.js";
import type { DataVolumeArgs, VhsmConnectionArgs } from "./types.js";
import { Platform, Tee } from "./types.js";

export type EvidencePlatform = "snp" | "tdx" | "azure-snp" | "azure-tdx";

export interface GuestReference {
  snpMeasurements?: string[];
  tdx?: { mrtd: string; rtmrs?: string[] }[];
  /** Azure CVM facts: claim → expected value. */
  azure?: Record<string, string>;
}

export interface GuestSpec {
  platform: Platform;
  tee: Tee;
  workloadId: string;
  evidencePlatform: EvidencePlatform;
  /** What the workload must measure as. */
  reference: GuestReference;
  policy?: Record<string, unknown>;
  vhsm: VhsmConnectionArgs;
  /** Application secrets, already checked to be Pulumi secrets. */
  secrets: Record<string, pulumi.Output<string>>;
  dataVolume?: DataVolumeArgs;
  /** Guest device path of the data volume on this platform (e.g. /dev/nvme1n1 on EC2). */
  dataVolumeDevice?: string;
  hostname: string;
  /** Agent delivery (default: downloaded from the runtime and pinned by SHA-256). */
  agent?: UserDataInput["agent"];
}

export interface GuestRegistration {
  workload: Workload;
  workloadId: pulumi.Output<string>;
  userData: pulumi.Output<string>;
  /** KV path of the application secrets, when there are any. */
  secretsPath?: string;
}

/** Registers the guest with the runtime (as children of `parent`) and renders its user-data. */
export function registerGuest(parent: pulumi.Resource, name: string, spec: GuestSpec): GuestRegistration {
  const connection = { url: spec.vhsm.url, token: pulumi.secret(spec.vhsm.token) };
  const kvPath = `workloads/${spec.workloadId}/app`;
  const haveSecrets = Object.keys(spec.secrets).length > 0;
  const dependsOn: pulumi.Resource[] = [];
  if (haveSecrets) {
    dependsOn.push(new Secret(`${name}-secrets`, { connection, path: kvPath, data: spec.secrets }, { parent }));
  }
  const workload = new Workload(
    `${name}-workload`,
    {
      connection,
      workloadId: spec.workloadId,
      platforms: [spec.evidencePlatform],
      ...spec.reference,
      policy: spec.policy ?? {},
      kvSecrets: haveSecrets ? [`secret/data/${kvPath}`] : [],
      diskKey: spec.dataVolume !== undefined,
      description: `${spec.platform} ${spec.tee} VM ${name}`,
    },
    { parent, dependsOn },
  );
  const dataVolume = spec.dataVolume;
  const userData = pulumi
    .all([spec.vhsm.url, spec.vhsm.caFingerprint, workload.workloadId, dataVolume?.mountPoint ?? "/data"])
    .apply(([url, fp, id, mountPoint]) =>
      renderUserData({
        platform: spec.platform as CloudPlatform,
        tee: spec.tee === Tee.Tdx ? "tdx" : "snp",
        runtimeUrl: url,
        runtimeCaSha256: fp,
        workloadId: id,
        hostname: spec.hostname,
        ...(spec.agent ? { agent: spec.agent } : {}),
        ...(dataVolume ? { provision: { volume: { device: spec.dataVolumeDevice ?? "/dev/vdb", name: "bk-data", mountpoint: mountPoint } } } : {}),
      } as UserDataInput).text,
    );
  return { workload, workloadId: workload.workloadId, userData, ...(haveSecrets ? { secretsPath: kvPath } : {}) };
}
