// What every confidential-VM component does besides creating the cloud VM: register the workload
// (expected launch state + policy + what it may receive) and its secrets with the runtime, and render
// the user-data that makes the enclaivelet attest at boot. User-data carries no secret: only the
// runtime URL, the runtime CA fingerprint and the workload id.
import { ConfigError } from "./errors.js";
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { Secret, Workload, type WorkloadPkiArgs, type WorkloadSshArgs } from "../../provider/resources.js";
import { renderUserData, type CloudPlatform, type UserDataInput } from "../../runtime/guest/cloud-init/index.js";
import type { DataVolumeArgs, VhsmConnectionArgs } from "./types.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";

/** The runtime's expectation as the guest holds it: the replicas' URLs are the deployer's view, not the guest's. */
function guestExpectation(a: RuntimeAttestation): RuntimeAttestation {
  const { replicaUrls: _r, ...rest } = a;
  void _r;
  return rest;
}
import { Platform, Tee } from "./types.js";
import { formatSecretRef, kvDataPath } from "../../runtime/protocol/secret-ref.js";
import type { Policy } from "../../runtime/protocol/policy.js";

/** The KV v2 mount of the application secrets (the Secret resource's default mount). */
const KV_MOUNT = "secret";

/** Where a guest finds its application secrets (KEY=value lines, mode 0600). */
export const APP_ENV_FILE = "/etc/buckypaper/app.env";

/** dbPassword → DB_PASSWORD, api.key → API_KEY. */
export function envName(secretName: string): string {
  return secretName
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/[^A-Za-z0-9]+/g, "_")
    .toUpperCase();
}

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
  policy?: Policy;
  vhsm: VhsmConnectionArgs;
  /** Application secrets, already checked to be Pulumi secrets. */
  secrets: Record<string, pulumi.Output<string>>;
  dataVolume?: DataVolumeArgs;
  /** Guest device path of the data volume on this platform (e.g. /dev/nvme1n1 on EC2). */
  dataVolumeDevice?: string;
  hostname: string;
  /** TLS certificate issued at provisioning (PKI role "<mount>/<role>"). */
  pki?: WorkloadPkiArgs;
  /** SSH host certificate issued at provisioning. */
  ssh?: WorkloadSshArgs;
  /** What the agent writes where (files, env files, TLS/SSH paths), merged into the user-data's agent config. */
  provision?: UserDataInput["provision"];
  /** AWS/GCE: the agent sends a vTPM quote + event log, its AK bound into REPORT_DATA. */
  vtpm?: boolean;
  /** GCE: the agent quotes with Google's certified AK (NV template) and sends its certificate. */
  vtpmGoogleAk?: boolean;
  /** The image runs the enclaivelet before cloud-init and measures the user-data (kit image, local dev
   *  guests): the user-data carries only the config and its SHA-256 is registered with the workload. */
  agentInImage?: boolean;
  /** Overrides the platform's evidence provider (the local real guests' `virtio-psp`). */
  evidenceProvider?: UserDataInput["evidenceProvider"];
  /** The runtime URL as the guest reaches it, where it differs from `vhsm.url` (the local real guests
   *  reach the host's loopback through QEMU's user-mode network at another address). */
  guestRuntimeUrl?: pulumi.Input<string>;
  /** OpenSSH public keys for the image's default user (cloud-init `ssh_authorized_keys`). */
  sshAuthorizedKeys?: string[];
  /** Nitride require_pq_hybrid: classical-only attestations are refused (the agent binds ML-KEM by default). */
  requirePqHybrid?: boolean;
}

export interface GuestRegistration {
  workload: Workload;
  workloadId: pulumi.Output<string>;
  userData: pulumi.Output<string>;
  /** KV path of the application secrets, when there are any. */
  secretsPath?: string;
  /** The enclaivelet config embedded in the user-data (JSON), as the agent parsed it. */
  agentConfig: pulumi.Output<string>;
}

/** A guest whose workload is registered once its VM exists (`register`), so the policy can pin that VM. */
export interface LateGuestRegistration {
  workloadId: pulumi.Output<string>;
  userData: pulumi.Output<string>;
  agentConfig: pulumi.Output<string>;
  secretsPath?: string;
  /** Registers the workload with this policy (replacing spec.policy), after `dependsOn` (the VM). */
  register(o: { policy: pulumi.Input<Policy>; dependsOn: pulumi.Resource[] }): Workload;
}

/** Registers the guest with the runtime (as children of `parent`) and renders its user-data. */
export function registerGuest(parent: pulumi.Resource, name: string, spec: GuestSpec): GuestRegistration;
/** Renders the user-data now; the workload is registered by `register()` once the VM exists. */
export function registerGuest(
  parent: pulumi.Resource,
  name: string,
  spec: GuestSpec,
  late: "after-vm",
): LateGuestRegistration;
export function registerGuest(
  parent: pulumi.Resource,
  name: string,
  spec: GuestSpec,
  late?: "after-vm",
): GuestRegistration | LateGuestRegistration {
  // Checked at preview, before anything is registered.
  if (spec.requirePqHybrid !== undefined && typeof spec.requirePqHybrid !== "boolean")
    throw new ConfigError(`${spec.platform} VM ${name}`, "requirePqHybrid", `is '${String(spec.requirePqHybrid)}'`, [
      "true",
      "false",
    ]);
  const connection = {
    url: spec.vhsm.url,
    ...(spec.vhsm.token !== undefined ? { token: pulumi.secret(spec.vhsm.token) } : {}),
    ...(spec.vhsm.deployer !== undefined ? { deployer: spec.vhsm.deployer } : {}),
    ...(spec.vhsm.caPem !== undefined ? { caPem: spec.vhsm.caPem } : {}),
    // A runtime in a confidential VM (Vhsm mode confidential-vm): verified before anything is sent to it.
    ...(spec.vhsm.attestation !== undefined ? { attestation: spec.vhsm.attestation } : {}),
  };
  // The application secrets live at one KV v2 path of the "secret" mount; the workload is granted its data
  // path and the agent's env file names each key by a secret reference (runtime/protocol/secret-ref.ts).
  const kvPath = `workloads/${spec.workloadId}/app`;
  const haveSecrets = Object.keys(spec.secrets).length > 0;
  const dependsOn: pulumi.Resource[] = [];
  if (haveSecrets) {
    dependsOn.push(new Secret(`${name}-secrets`, { connection, path: kvPath, data: spec.secrets }, { parent }));
  }
  const newWorkload = (
    userDataSha256?: pulumi.Input<string>,
    late?: { policy: pulumi.Input<Policy>; dependsOn: pulumi.Resource[] },
  ) =>
    new Workload(
      `${name}-workload`,
      {
        connection,
        workloadId: spec.workloadId,
        platforms: [spec.evidencePlatform],
        ...spec.reference,
        policy: late?.policy ?? spec.policy ?? {},
        kvSecrets: haveSecrets ? [kvDataPath(KV_MOUNT, kvPath)] : [],
        diskKey: spec.dataVolume !== undefined,
        ...(spec.pki ? { pki: spec.pki } : {}),
        ...(spec.ssh ? { ssh: spec.ssh } : {}),
        description: `${spec.platform} ${spec.tee} VM ${name}`,
        ...(userDataSha256 !== undefined ? { userDataSha256 } : {}),
        ...(spec.requirePqHybrid ? { requirePqHybrid: true } : {}),
      },
      { parent, dependsOn: [...dependsOn, ...(late?.dependsOn ?? [])] },
    );
  const dataVolume = spec.dataVolume;
  // Application secrets reach the guest as one env file (0600) read from the workload's KV path,
  // unless the caller's provisioning plan says where they go.
  const envVars = Object.fromEntries(
    Object.keys(spec.secrets).map((k) => [envName(k), formatSecretRef({ path: kvPath, field: k })]),
  );
  const render = (workloadId: pulumi.Input<string>) =>
    pulumi
      .all([
        spec.guestRuntimeUrl ?? spec.vhsm.url,
        spec.vhsm.caFingerprint,
        workloadId,
        dataVolume?.mountPoint ?? "/data",
        spec.vhsm.agentUrl,
        spec.vhsm.agentSha256,
        spec.vhsm.attestation,
      ])
      .apply(([url, fp, id, mountPoint, agentUrl, agentSha256, attestation]) => {
        const provision: NonNullable<UserDataInput["provision"]> = { ...spec.provision };
        if (dataVolume)
          provision.volume = {
            device: spec.dataVolumeDevice ?? "/dev/vdb",
            name: "bk-data",
            filesystem: "ext4",
            mountpoint: mountPoint,
          };
        if (haveSecrets && !provision.envFiles && !provision.files)
          provision.envFiles = [{ path: APP_ENV_FILE, vars: envVars, mode: "0600" }];
        return renderUserData({
          platform: spec.platform as CloudPlatform,
          tee: spec.tee === Tee.Tdx ? "tdx" : "snp",
          runtimeUrl: url,
          // With the runtime's attestation the agent verifies its evidence (no copied fingerprint); a CA
          // fingerprint given as well is checked in addition.
          ...(fp ? { runtimeCaSha256: fp } : {}),
          ...(attestation ? { runtimeAttestation: guestExpectation(attestation as RuntimeAttestation) } : {}),
          workloadId: id,
          hostname: spec.hostname,
          ...(spec.vtpm ? { vtpm: true } : {}),
          ...(spec.vtpm && spec.vtpmGoogleAk ? { vtpmGoogleAk: true } : {}),
          // Downloaded and checked against the pinned SHA-256 when the Vhsm serves the artifact; else baked in.
          agent: spec.agentInImage
            ? { kind: "image" }
            : agentUrl && agentSha256
              ? { kind: "download", url: agentUrl, sha256: agentSha256 }
              : { kind: "preinstalled" },
          ...(spec.evidenceProvider ? { evidenceProvider: spec.evidenceProvider } : {}),
          ...(spec.sshAuthorizedKeys?.length ? { sshAuthorizedKeys: spec.sshAuthorizedKeys } : {}),
          ...(Object.keys(provision).length ? { provision } : {}),
        } as UserDataInput);
      });
  const userDataSha256 = (r: ReturnType<typeof render>) =>
    r.apply((x) => createHash("sha256").update(x.text).digest("hex"));
  // Registered after the VM exists, so the policy can name that VM: the user-data is rendered from the workload
  // id we will register (the agent retries while the workload is not registered yet).
  if (late) {
    const rendered = render(spec.workloadId);
    return {
      workloadId: pulumi.output(spec.workloadId),
      userData: rendered.apply((r) => r.text),
      agentConfig: rendered.apply((r) => JSON.stringify(r.agentConfig)),
      ...(haveSecrets ? { secretsPath: kvPath } : {}),
      register: (o) => newWorkload(spec.agentInImage ? userDataSha256(rendered) : undefined, o),
    };
  }
  // Measured user-data: rendered from the workload id we register (not the resource's output), so its
  // hash can be part of the registration. Otherwise the user-data follows the registered workload.
  let workload: Workload;
  let rendered: ReturnType<typeof render>;
  if (spec.agentInImage) {
    rendered = render(spec.workloadId);
    workload = newWorkload(userDataSha256(rendered));
  } else {
    workload = newWorkload();
    rendered = render(workload.workloadId);
  }
  const userData = rendered.apply((r) => r.text);
  const agentConfig = rendered.apply((r) => JSON.stringify(r.agentConfig));
  return {
    workload,
    workloadId: workload.workloadId,
    userData,
    agentConfig,
    ...(haveSecrets ? { secretsPath: kvPath } : {}),
  };
}
