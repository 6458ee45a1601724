// Dynamic resources of the `local` stack (handlers in provider/local-vm-handlers.ts):
//   SimulatedPlatform  a persistent simulated SEV-SNP platform directory (keys private; anchor public)
//   LocalVm            a local confidential VM process: simulated PSP + enclaivelet + private root
//   QemuGuest          a real QEMU guest (provider/qemu-guest-handlers.ts): simulated PSP over virtio-serial
//   RuntimeWrite       one configuration write to the runtime API (engine config the other resources
//                      do not model: PKI root, SSH CA, JWT auth config, Nitride config, audit device)
//   GeneratedSecret    random bytes made once and kept (secret) in state, for demo application secrets
// Same closure rules as resources.ts: each provider captures only its kind and the handlers' path.
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { handlerProvider } from "./dynamic.js";
import type { RuntimeAttestationArgs, RuntimeConnectionArgs } from "./resources.js";

const HANDLERS_PATH = fileURLToPath(new URL("./local-vm-handlers.js", import.meta.url));
const QEMU_HANDLERS_PATH = fileURLToPath(new URL("./qemu-guest-handlers.js", import.meta.url));

function makeProvider(kind: string): pulumi.dynamic.ResourceProvider {
  return handlerProvider(HANDLERS_PATH, kind);
}

const providers = {
  platform: makeProvider("platform"),
  vm: makeProvider("vm"),
  write: makeProvider("write"),
  secret: makeProvider("secret"),
  qemu: handlerProvider(QEMU_HANDLERS_PATH, "qemu"),
};

export interface SimulatedPlatformArgs {
  /** Absolute directory: platform.json (private keys, 0600) and anchor.json. Kept across `up`s, removed by destroy. */
  dir: pulumi.Input<string>;
  /** Milan, Genoa (default) or Turin. */
  product?: pulumi.Input<string>;
}

/** The anchor in the shape of the runtime's nitride/config `simulated_snp_anchors[]`. */
export interface SimulatedAnchor {
  product: string;
  ark_sha256: string;
  ca_certs: string[];
}

/** A simulated SEV-SNP platform ("the chip") shared by the local runtime and the local VMs. */
export class SimulatedPlatform extends pulumi.dynamic.Resource {
  declare readonly dir: pulumi.Output<string>;
  declare readonly anchor: pulumi.Output<SimulatedAnchor>;
  declare readonly arkSha256: pulumi.Output<string>;
  constructor(name: string, args: SimulatedPlatformArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      providers.platform,
      name,
      { ...args, anchor: undefined, arkSha256: undefined },
      opts,
      "buckypaper",
      "SimulatedPlatform",
    );
  }
}

export interface LocalVmArgs {
  /** VM name (lower-case letters, digits, '-'). */
  name: pulumi.Input<string>;
  platformDir: pulumi.Input<string>;
  /** Absolute directory of this VM: status.json, vm.pid, vm.log, agent.json and root/ (its private root). */
  stateDir: pulumi.Input<string>;
  /** Boot inputs the VM is started with (absolute paths); the simulated PSP measures these. */
  firmware: pulumi.Input<string>;
  kernel?: pulumi.Input<string>;
  initrd?: pulumi.Input<string>;
  append?: pulumi.Input<string>;
  vcpus: pulumi.Input<number>;
  vcpuType: pulumi.Input<string>;
  /** SHA-256 over the boot files' contents: a changed file replaces the VM even under the same path. */
  bootInputsSha256: pulumi.Input<string>;
  /** The enclaivelet config (JSON) from the VM's rendered user-data. */
  agentConfig: pulumi.Input<string>;
}

/**
 * A running local confidential VM. Its outputs are what the VM reported: the measurement its simulated
 * PSP computed from the boot inputs, the attestation verdict (and reason when refused) and the guest
 * paths provisioned into its private root. A refused attestation is not a deployment error — the VM
 * runs, without secrets, and the outputs say why.
 */
export class LocalVm extends pulumi.dynamic.Resource {
  declare readonly pid: pulumi.Output<number>;
  declare readonly running: pulumi.Output<boolean>;
  declare readonly measurement: pulumi.Output<string>;
  declare readonly kernelMeasured: pulumi.Output<boolean>;
  declare readonly verdict: pulumi.Output<"accepted" | "refused" | "failed">;
  declare readonly reason: pulumi.Output<string>;
  declare readonly detail: pulumi.Output<string>;
  declare readonly delivered: pulumi.Output<string[]>;
  declare readonly root: pulumi.Output<string>;
  constructor(name: string, args: LocalVmArgs, opts?: pulumi.CustomResourceOptions) {
    const outs = {
      pid: undefined,
      running: undefined,
      measurement: undefined,
      kernelMeasured: undefined,
      verdict: undefined,
      reason: undefined,
      detail: undefined,
      delivered: undefined,
      root: undefined,
      startedAt: undefined,
    };
    super(providers.vm, name, { ...args, ...outs }, opts, "buckypaper", "LocalVm");
  }
}

/** What every supervised QEMU guest is made of: the workload guests (QemuGuest) and the vHSM's own (VhsmGuest). */
export interface SupervisedGuestArgs {
  /** Guest name (lower-case letters, digits, '-'). */
  name: pulumi.Input<string>;
  /** The simulated platform ("chip") whose PSP measures the guest and signs its reports. */
  platformDir: pulumi.Input<string>;
  /** Absolute directory of this guest: its disks, guest.json, status.json, progress.log, console.log. */
  stateDir: pulumi.Input<string>;
  /** The exact QEMU command line (qemuGuestArgv without the SEV object; disks under stateDir). */
  argv: pulumi.Input<pulumi.Input<string>[]>;
  /** Root filesystem image the guest's copy-on-write overlay is made on. */
  baseImage: pulumi.Input<string>;
  /** NoCloud meta-data (no secret). */
  metaData: pulumi.Input<string>;
  /** GiB of the data disk (the third virtio disk, /dev/vdc). */
  dataDiskGb?: pulumi.Input<number>;
  /** SHA-256 over the boot files' contents: a changed file replaces the guest even under the same path. */
  bootInputsSha256: pulumi.Input<string>;
  /** Seconds to wait for the guest (default 1500). */
  timeoutSeconds?: pulumi.Input<number>;
}

export interface QemuGuestArgs extends SupervisedGuestArgs {
  /** NoCloud user-data (no secret). */
  userData: pulumi.Input<string>;
  /** Host loopback port forwarded to the guest's sshd (must match the argv's hostfwd). */
  sshPort?: pulumi.Input<number>;
  /** Runtime URL and CA (PEM, public), for the known_hosts line from its SSH CA. */
  runtimeUrl?: pulumi.Input<string>;
  runtimeCaPem?: pulumi.Input<string>;
  /** Or, for a runtime in a confidential VM, what it must prove (the read goes over attested TLS). */
  runtimeAttestation?: pulumi.Input<RuntimeAttestationArgs>;
  /** Host name the SSH host certificate is issued for (the known_hosts line names it). */
  sshPrincipal?: pulumi.Input<string>;
  /** Seconds to wait for the enclaivelet's verdict (default 1500). */
  timeoutSeconds?: pulumi.Input<number>;
}

/**
 * A real QEMU guest of the local stack. Its outputs are what the guest and its simulated PSP reported:
 * state provisioned | refused (the runtime refused the attestation, `reason` has the failed checks; or
 * dm-verity stopped the boot before anything asked the PSP),
 * the measurement the PSP computed from the files QEMU was started with, timings, and for provisioned
 * guests with SSH a known_hosts `@cert-authority` line. A refused guest is not a deployment error.
 */
export class QemuGuest extends pulumi.dynamic.Resource {
  declare readonly pid: pulumi.Output<number>;
  declare readonly qemuPid: pulumi.Output<number>;
  declare readonly running: pulumi.Output<boolean>;
  declare readonly state: pulumi.Output<"provisioned" | "refused">;
  declare readonly accel: pulumi.Output<string>;
  declare readonly measurement: pulumi.Output<string>;
  declare readonly kernelMeasured: pulumi.Output<boolean>;
  declare readonly reason: pulumi.Output<string>;
  declare readonly bootSeconds: pulumi.Output<number>;
  declare readonly sshSeconds: pulumi.Output<number>;
  /** Report requests the guest sent its simulated PSP (0: never asked, e.g. stopped by dm-verity). */
  declare readonly pspRequests: pulumi.Output<number>;
  /** A refused guest's QEMU was stopped after the verdict (nothing left to run). */
  declare readonly halted: pulumi.Output<boolean>;
  declare readonly knownHosts: pulumi.Output<string>;
  declare readonly consoleLog: pulumi.Output<string>;
  constructor(name: string, args: QemuGuestArgs, opts?: pulumi.CustomResourceOptions) {
    const outs = {
      pid: undefined,
      qemuPid: undefined,
      running: undefined,
      state: undefined,
      accel: undefined,
      measurement: undefined,
      kernelMeasured: undefined,
      reason: undefined,
      bootSeconds: undefined,
      sshSeconds: undefined,
      pspRequests: undefined,
      halted: undefined,
      knownHosts: undefined,
      consoleLog: undefined,
      startedAt: undefined,
    };
    super(providers.qemu, name, { ...args, ...outs }, opts, "buckypaper", "QemuGuest");
  }
}

export interface RuntimeWriteArgs {
  connection: pulumi.Input<RuntimeConnectionArgs>;
  /** API path under /v1/, e.g. "pki/root/generate/internal". */
  path: pulumi.Input<string>;
  /** POST (default) or PUT. */
  method?: pulumi.Input<string>;
  body?: pulumi.Input<Record<string, unknown>>;
  /** Path DELETEd when the resource is destroyed (none: the write is left in place). */
  deletePath?: pulumi.Input<string>;
}

/** One configuration write to the runtime, repeated only when its body changes. */
export class RuntimeWrite extends pulumi.dynamic.Resource {
  declare readonly path: pulumi.Output<string>;
  constructor(name: string, args: RuntimeWriteArgs, opts?: pulumi.CustomResourceOptions) {
    const connection = pulumi.secret(
      pulumi.output(args.connection).apply((v) => ({
        url: v.url,
        ...(v.token ? { token: v.token } : {}),
        ...(v.deployer
          ? {
              deployer: {
                mount: v.deployer.mount,
                role: v.deployer.role,
                keyFile: v.deployer.keyFile,
                ...(v.deployer.audience ? { audience: v.deployer.audience } : {}),
              },
            }
          : {}),
        ...(v.caPem ? { caPem: v.caPem } : {}),
        ...(v.caFingerprint ? { caFingerprint: v.caFingerprint } : {}),
        // A runtime in a confidential VM: verified (attested TLS) before the write is sent.
        ...(v.attestation ? { attestation: v.attestation } : {}),
      })),
    );
    super(
      providers.write,
      name,
      { ...args, connection },
      { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "connection"] },
      "buckypaper",
      "RuntimeWrite",
    );
  }
}

export interface GeneratedSecretArgs {
  /** Random bytes (16..256, default 24), base64url-encoded in `value`. */
  bytes?: pulumi.Input<number>;
}

/** A random value made once at create and kept only encrypted in state. */
export class GeneratedSecret extends pulumi.dynamic.Resource {
  declare readonly value: pulumi.Output<string>;
  constructor(name: string, args: GeneratedSecretArgs = {}, opts?: pulumi.CustomResourceOptions) {
    super(
      providers.secret,
      name,
      { ...args, value: undefined },
      { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "value"] },
      "buckypaper",
      "GeneratedSecret",
    );
  }
}
