// A local confidential VM for the `local` stack: no cloud, no SEV hardware. The expected launch
// measurement is computed from the boot inputs by the engine and registered with the runtime like on
// any platform; the VM is a local process tree (provider LocalVm) whose simulated PSP measures the
// boot inputs it is actually started with, and whose enclaivelet attests with that measurement through
// the simulated platform and provisions into the VM's private root.
//
// `actualBoot` starts the VM with boot inputs other than the registered ones: the tamper
// demonstration (the runtime must refuse it and release nothing).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { expectedQemuLaunch, type BootInputsArgs } from "../common/boot-measure.js";
import { ConfigError } from "../common/errors.js";
import { registerGuest } from "../common/guest.js";
import { requireSecretMap } from "../common/secrets.js";
import { Platform, Tee, type VhsmConnectionArgs } from "../common/types.js";
import { LocalVm } from "../../provider/local-vm.js";
import type { WorkloadPkiArgs } from "../../provider/resources.js";
import { firmwareMeasuresKernel, LocalVmError } from "../../runtime/sim/localvm/index.js";
import type { UserDataInput } from "../../runtime/guest/cloud-init/index.js";
import { formatSecretRef } from "../../runtime/protocol/secret-ref.js";

export interface LocalBootOverride extends Partial<BootInputsArgs> {
  vcpus?: number;
  cpuModel?: string;
}

export interface LocalConfidentialVmArgs {
  vhsm: VhsmConnectionArgs;
  /** Directory of the simulated SEV-SNP platform (a `SimulatedPlatform`'s dir). */
  platformDir: pulumi.Input<string>;
  /** Boot inputs that are measured and registered (real files). */
  boot: BootInputsArgs;
  /** Default 2. */
  vcpus?: number;
  /** QEMU CPU model in every VMSA (default EPYC-v4). */
  cpuModel?: string;
  /** Boot inputs the VM is really started with, where they differ from `boot` (tamper demonstration). */
  actualBoot?: LocalBootOverride;
  /** Application secrets (Pulumi secrets), delivered as an environment file `/etc/<name>/app.env`. */
  secrets?: Record<string, pulumi.Input<string>>;
  /** TLS key + certificate issued by a PKI role at provisioning, written to /etc/<name>/tls/. */
  tls?: WorkloadPkiArgs;
  /** SSH host certificate for a guest-generated ed25519 host key, written to /etc/ssh/. */
  sshHost?: { role: pulumi.Input<string>; principals: pulumi.Input<pulumi.Input<string>[]> };
  /** Absolute directory of the VM process (default <cwd>/.bk/local/<stack>/vms/<name>). */
  stateDir?: string;
  /** Resources that must exist before the VM boots (runtime auth and engine configuration). */
  waitFor?: pulumi.Resource[];
}

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

function fileHash(who: string, field: string, file: string | undefined): string {
  if (file === undefined) return "";
  try {
    return sha256(readFileSync(file));
  } catch (e) {
    throw new ConfigError(
      who,
      field,
      `'${file}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

export class LocalConfidentialVm extends pulumi.ComponentResource {
  public readonly workloadId: pulumi.Output<string>;
  /** What the engine computed from `boot` and registered. */
  public readonly expectedMeasurement: pulumi.Output<string>;
  /** What the VM's simulated PSP measured from the inputs it was started with. */
  public readonly measurement: pulumi.Output<string>;
  /** accepted | refused | failed, as the VM's enclaivelet saw the runtime's answer. */
  public readonly verdict: pulumi.Output<string>;
  /** Why not accepted (the runtime's failed checks); empty when accepted. */
  public readonly reason: pulumi.Output<string>;
  /** Guest paths provisioned into the VM's private root. */
  public readonly delivered: pulumi.Output<string[]>;
  /** The VM's private root on this machine. */
  public readonly root: pulumi.Output<string>;
  public readonly pid: pulumi.Output<number>;
  /** Whether the kernel/initrd/cmdline are in the digest (only with firmware that has a kernel-hashes table). */
  public readonly kernelMeasured: pulumi.Output<boolean>;

  constructor(name: string, args: LocalConfidentialVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:LocalConfidentialVm", name, args, opts);
    const who = `LocalConfidentialVm ${name}`;
    if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(name))
      throw new ConfigError(who, "name", "must be lower-case letters, digits and '-'");
    const vcpus = args.vcpus ?? 2;
    const cpuModel = args.cpuModel ?? "EPYC-v4";
    const secrets = requireSecretMap(who, "secrets", args.secrets);
    for (const k of Object.keys(secrets))
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
        throw new ConfigError(who, `secrets.${k}`, "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");

    // Registered inputs. The SNP digest covers the kernel only when the firmware verifies it; say so
    // instead of registering a value no hardware would produce.
    let measuresKernel: boolean;
    try {
      measuresKernel =
        args.boot.kernel !== undefined && firmwareMeasuresKernel(readFileSync(args.boot.firmware), "boot.firmware");
    } catch (e) {
      if (e instanceof LocalVmError) throw new ConfigError(who, e.field, e.message);
      throw new ConfigError(
        who,
        "boot.firmware",
        `'${args.boot.firmware}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      );
    }
    const measuredBoot: BootInputsArgs = measuresKernel ? args.boot : { firmware: args.boot.firmware };
    const expected = expectedQemuLaunch(who, Tee.SevSnp, measuredBoot, vcpus, cpuModel, 2048);
    const expectedMeasurement = expected.measurements[0];
    pulumi.log.info(
      `measured ${name}: firmware ${path.basename(args.boot.firmware)}${measuresKernel ? ` + kernel/initrd/cmdline` : " (kernel not in the digest: the firmware has no kernel-hashes table)"}, ${vcpus} × ${cpuModel} → ${expectedMeasurement.slice(0, 16)}…`,
      this,
    );

    const workloadId = `${pulumi.getStack()}-${name}`;
    const envVars: Record<string, string> = {};
    for (const k of Object.keys(secrets))
      envVars[k] = formatSecretRef({ path: `workloads/${workloadId}/app`, field: k });
    const guest = registerGuest(this, name, {
      platform: Platform.Qemu,
      tee: Tee.SevSnp,
      workloadId,
      evidencePlatform: "snp",
      reference: expected.reference,
      policy: expected.policy,
      vhsm: args.vhsm,
      secrets,
      hostname: name,
      ...(args.tls ? { pki: args.tls } : {}),
      ...(args.sshHost ? { ssh: args.sshHost } : {}),
      provision: {
        ...(Object.keys(envVars).length
          ? { envFiles: [{ path: `/etc/${name}/app.env`, vars: envVars, mode: "0600" }] }
          : {}),
        ...(args.tls
          ? {
              tls: {
                certPath: `/etc/${name}/tls/cert.pem`,
                keyPath: `/etc/${name}/tls/key.pem`,
                chainPath: `/etc/${name}/tls/chain.pem`,
                renewBeforeSeconds: 3600,
              },
            }
          : {}),
        ...(args.sshHost ? { ssh: { keyTypes: ["ed25519"], dir: "/etc/ssh", renewBeforeSeconds: 3600 } } : {}),
      } as UserDataInput["provision"],
    });

    // Boot inputs the VM really starts with.
    const a = args.actualBoot ?? {};
    const actual = {
      firmware: a.firmware ?? args.boot.firmware,
      kernel: a.kernel ?? args.boot.kernel,
      initrd: a.initrd ?? args.boot.initrd,
      append: a.append ?? args.boot.append,
      vcpus: a.vcpus ?? vcpus,
      cpuModel: a.cpuModel ?? cpuModel,
    };
    for (const [k, v] of Object.entries({ firmware: actual.firmware, kernel: actual.kernel, initrd: actual.initrd })) {
      if (v !== undefined && !path.isAbsolute(v))
        throw new ConfigError(who, `boot.${k}`, `'${v}' must be an absolute path`);
    }
    const bootInputsSha256 = sha256(
      JSON.stringify([
        fileHash(who, "firmware", actual.firmware),
        fileHash(who, "kernel", actual.kernel),
        fileHash(who, "initrd", actual.initrd),
        actual.append ?? null,
        actual.vcpus,
        actual.cpuModel,
      ]),
    );
    const stateDir = args.stateDir ?? path.resolve(".bk", "local", pulumi.getStack(), "vms", name);
    if (!path.isAbsolute(stateDir)) throw new ConfigError(who, "stateDir", `'${stateDir}' must be an absolute path`);

    const vm = new LocalVm(
      `${name}-vm`,
      {
        name,
        platformDir: args.platformDir,
        stateDir,
        firmware: actual.firmware,
        ...(actual.kernel ? { kernel: actual.kernel } : {}),
        ...(actual.initrd ? { initrd: actual.initrd } : {}),
        ...(actual.append !== undefined ? { append: actual.append } : {}),
        vcpus: actual.vcpus,
        vcpuType: actual.cpuModel,
        bootInputsSha256,
        agentConfig: guest.agentConfig,
      },
      { parent: this, dependsOn: [guest.workload, ...(args.waitFor ?? [])] },
    );
    if (args.actualBoot) {
      const changed = Object.entries(args.actualBoot).map(
        ([k, v]) => `${k} ${typeof v === "string" && path.isAbsolute(v) ? path.basename(v) : String(v)}`,
      );
      pulumi.log.warn(`booting ${name} with inputs other than the registered ones: ${changed.join(", ")}`, this);
    }
    pulumi.all([vm.verdict, vm.measurement, vm.detail, vm.delivered]).apply(([verdict, m, reason, delivered]) => {
      if (!verdict) return;
      const same = m === expectedMeasurement ? "matches the registration" : "DIFFERS from the registration";
      if (verdict === "accepted")
        pulumi.log.info(
          `attested ${name}: measurement ${m.slice(0, 16)}… ${same}; accepted (simulated platform); delivered ${delivered.length} file(s)`,
          this,
        );
      else
        pulumi.log.warn(
          `attestation of ${name} ${verdict}: measurement ${m.slice(0, 16)}… ${same}; nothing delivered — ${reason}`,
          this,
        );
    });

    this.workloadId = guest.workloadId;
    this.expectedMeasurement = pulumi.output(expectedMeasurement);
    this.measurement = vm.measurement;
    this.verdict = vm.verdict;
    this.reason = pulumi.all([vm.verdict, vm.detail]).apply(([v, d]) => (v === "accepted" ? "" : d));
    this.delivered = vm.delivered;
    this.root = vm.root;
    this.pid = vm.pid;
    this.kernelMeasured = vm.kernelMeasured;
    this.registerOutputs({
      workloadId: this.workloadId,
      expectedMeasurement: this.expectedMeasurement,
      measurement: this.measurement,
      verdict: this.verdict,
      reason: this.reason,
      delivered: this.delivered,
      root: this.root,
      pid: this.pid,
      kernelMeasured: this.kernelMeasured,
    });
  }
}
