// A local confidential VM for the `local` stack: no cloud, no SEV hardware. The expected launch
// measurement is computed from the boot inputs by the engine and registered with the runtime like on
// any platform. Two modes (`mode`, default auto = real when this machine can run guests):
//   real     a real QEMU guest (provider QemuGuest) booted from the kit image (images/guest: AmdSev
//            firmware, kernel, initrd, command line with the dm-verity root hash) with the exact
//            argv the QEMU/Proxmox components produce for an SNP host minus the SEV object; a simulated
//            PSP outside the guest measures the files QEMU was started with and answers the guest's
//            report requests over virtio-serial; the real enclaivelet in the guest attests (with the
//            SHA-256 of its user-data bound in), unlocks its LUKS2 data disk and installs the SSH host
//            certificate into the real sshd. The registered measurement is computed from that argv.
//   process  a local process tree (provider LocalVm): the simulated PSP measures the boot inputs and
//            the enclaivelet provisions into the VM's private root. Seconds instead of a minute per VM,
//            no guest kernel, cloud-init or sshd: for fast tests and machines without QEMU.
//
// `tamper` (or, lower level, `actualBoot`) starts the VM with boot inputs other than the registered ones,
// `injectUserData` appends to its user-data after registration: the tamper demonstrations (refused,
// nothing released; a modified root filesystem is stopped by dm-verity before anything asks the PSP).
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { expectedQemuLaunch, type BootInputsArgs } from "../common/boot-measure.js";
import { ConfigError } from "../common/errors.js";
import { inputFileSha256, readInputFile } from "../common/input-file.js";
import { registerGuest, type GuestSpec } from "../common/guest.js";
import { requireSecretMap } from "../common/secrets.js";
import { Platform, Tee, type VhsmConnectionArgs } from "../common/types.js";
import { LocalVm, QemuGuest } from "../../provider/local-vm.js";
import { noCloudMetaData } from "../../runtime/guest/cloud-init/index.js";
import { bootInputsOf } from "../../runtime/sim/qemu/launch.js";
import { guestRuntimeUrl, localGuestImage, realGuestArgv, resolveMode, type LocalVmMode } from "./real-guest.js";
import {
  firmwareWithOneByteChanged,
  LOCAL_TAMPER_CASES,
  TAMPER_DESCRIPTION,
  tamperedBoot,
  type LocalTamperCase,
  type TamperedBoot,
} from "./tamper.js";
import type { WorkloadPkiArgs } from "../../provider/resources.js";
import { firmwareMeasuresKernel, LocalVmError } from "../../runtime/sim/localvm/index.js";
import type { UserDataInput } from "../../runtime/guest/cloud-init/index.js";
import { formatSecretRef } from "../../runtime/protocol/secret-ref.js";

export interface LocalBootOverride extends Partial<BootInputsArgs> {
  vcpus?: number;
  cpuModel?: string;
}

export interface LocalConfidentialVmArgs {
  /** Refuse classical-only attestations: the workload's secrets are released only sealed with hybrid
   *  ML-KEM-768 + P-384 (Nitride require_pq_hybrid, docs/post-quantum.md). Default false. */
  requirePqHybrid?: boolean;
  vhsm: VhsmConnectionArgs;
  /** auto (default): a real QEMU guest when this machine can run one (QEMU, OVMF, root, image tooling),
   *  else a process tree with the reason logged. real: fail when it cannot. process: always the process tree. */
  mode?: LocalVmMode;
  /** Directory of the simulated SEV-SNP platform (a `SimulatedPlatform`'s dir). */
  platformDir: pulumi.Input<string>;
  /** Boot inputs that are measured and registered (real files) for process-tree VMs. Real guests boot
   *  the kit image instead: its AmdSev firmware, kernel, initrd and command line (verity root hash). */
  boot: BootInputsArgs;
  /** Default 2. */
  vcpus?: number;
  /** QEMU CPU model in every VMSA (default EPYC-v4; real guests: EPYC-Milan, which Debian's QEMU has). */
  cpuModel?: string;
  /** Real guests: memory in MiB (default 1024; not measured, so a guest expected to be refused can use less). */
  memoryMb?: number;
  /** Real guests: host loopback port forwarded to the guest's sshd (none: no way in). */
  sshPort?: number;
  /** Real guests: OpenSSH public keys of the image's default user (`debian`). */
  sshAuthorizedKeys?: string[];
  /** Real guests: size of the LUKS2 data disk in GiB, mounted at /data (default 1; 0: none). */
  dataVolumeGb?: number;
  /** Real guests: text appended to the user-data after its hash was registered (tamper demonstration). */
  injectUserData?: string;
  /** Boot inputs the VM is really started with, where they differ from `boot` (tamper demonstration;
   *  real guests: firmware only — use `tamper`). */
  actualBoot?: LocalBootOverride;
  /** Tamper demonstration: start the VM with one input changed from the registered one — `case` (firmware,
   *  cmdline, initrd, kernel, rootfs; process trees: firmware only), the changed copy written into `dir`
   *  (absolute; kept when the VM is destroyed, like the boot inputs). */
  tamper?: { case: LocalTamperCase; dir: string };
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
  /** real (a QEMU guest) or process (a process tree). */
  public readonly mode: pulumi.Output<string>;
  /** Why not a real guest (empty when real). */
  public readonly modeReason: pulumi.Output<string>;
  /** Real guests: provisioned | refused (process trees: accepted → provisioned, else refused). */
  public readonly status: pulumi.Output<string>;
  /** Real guests: host loopback port of the guest's sshd (0: none). */
  public readonly sshPort: pulumi.Output<number>;
  /** Real guests: a known_hosts line trusting the runtime's SSH CA for this VM's host name (no TOFU). */
  public readonly knownHosts: pulumi.Output<string>;
  /** Real guests: seconds from QEMU's start to the enclaivelet's verdict. */
  public readonly bootSeconds: pulumi.Output<number>;
  /** Real guests: the accelerator QEMU runs with (kvm or tcg) and the serial console's log file. */
  public readonly accel: pulumi.Output<string>;
  public readonly consoleLog: pulumi.Output<string>;
  /** What was tampered with (TAMPER_DESCRIPTION, or the injected user-data), empty when nothing. */
  public readonly tampered: pulumi.Output<string>;
  /** Real guests: report requests the guest sent its simulated PSP (0: never asked); -1 for process trees. */
  public readonly pspRequests: pulumi.Output<number>;
  /** The boot inputs the registration was computed from (real guests: the kit image's). */
  public readonly bootInputs: pulumi.Output<{ firmware: string; kernel: string; initrd: string; append: string }>;

  constructor(name: string, args: LocalConfidentialVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:LocalConfidentialVm", name, args, opts);
    const who = `LocalConfidentialVm ${name}`;
    if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(name))
      throw new ConfigError(who, "name", "must be lower-case letters, digits and '-'");
    const secrets = requireSecretMap(who, "secrets", args.secrets);
    for (const k of Object.keys(secrets))
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
        throw new ConfigError(who, `secrets.${k}`, "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
    if (args.tamper) {
      if (!LOCAL_TAMPER_CASES.includes(args.tamper.case))
        throw new ConfigError(who, "tamper.case", `is '${String(args.tamper.case)}'`, [...LOCAL_TAMPER_CASES]);
      if (!path.isAbsolute(args.tamper.dir))
        throw new ConfigError(who, "tamper.dir", `'${args.tamper.dir}' must be an absolute path`);
      if (args.actualBoot) throw new ConfigError(who, "tamper", "and actualBoot are alternatives");
    }
    const { mode, why } = resolveMode(who, args.mode ?? "auto");
    if (mode === "process" && args.mode !== "process")
      pulumi.log.warn(`${name}: a process-tree VM, not a real guest — ${why}`, this);
    const o = mode === "real" ? this.realGuest(name, who, args, secrets) : this.processTree(name, who, args, secrets);

    this.workloadId = o.workloadId;
    this.expectedMeasurement = o.expectedMeasurement;
    this.measurement = o.measurement;
    this.verdict = o.verdict;
    this.reason = o.reason;
    this.delivered = o.delivered;
    this.root = o.root;
    this.pid = o.pid;
    this.kernelMeasured = o.kernelMeasured;
    this.mode = pulumi.output(mode);
    this.modeReason = pulumi.output(why);
    this.status = o.status;
    this.sshPort = o.sshPort;
    this.knownHosts = o.knownHosts;
    this.bootSeconds = o.bootSeconds;
    this.accel = o.accel;
    this.consoleLog = o.consoleLog;
    this.tampered = pulumi.output(
      [
        ...(args.tamper ? [TAMPER_DESCRIPTION[args.tamper.case]] : []),
        ...(args.actualBoot
          ? [`boot inputs other than the registered ones (${Object.keys(args.actualBoot).join(", ")})`]
          : []),
        ...(args.injectUserData ? ["user-data with a command appended after registration"] : []),
      ].join("; "),
    );
    this.pspRequests = o.pspRequests;
    this.bootInputs = o.bootInputs;
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
      mode: this.mode,
      modeReason: this.modeReason,
      status: this.status,
      sshPort: this.sshPort,
      knownHosts: this.knownHosts,
      bootSeconds: this.bootSeconds,
      accel: this.accel,
      consoleLog: this.consoleLog,
      tampered: this.tampered,
      pspRequests: this.pspRequests,
      bootInputs: this.bootInputs,
    });
  }

  /** What the agent provisions where (the same plan in both modes). */
  private static provisionPlan(
    name: string,
    args: LocalConfidentialVmArgs,
    workloadId: string,
    secretNames: string[],
  ): UserDataInput["provision"] {
    const envVars: Record<string, string> = {};
    for (const k of secretNames) envVars[k] = formatSecretRef({ path: `workloads/${workloadId}/app`, field: k });
    return {
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
    } as UserDataInput["provision"];
  }

  /** What both ways of running a local VM register: an SEV-SNP workload on QEMU, named after the stack,
   *  that must measure as `expected`. */
  private static snpRegistration(
    name: string,
    expected: ReturnType<typeof LocalConfidentialVm.expected>["launch"],
    vhsm: VhsmConnectionArgs,
  ): Pick<GuestSpec, "platform" | "tee" | "workloadId" | "evidencePlatform" | "reference" | "policy" | "vhsm"> {
    return {
      platform: Platform.Qemu,
      tee: Tee.SevSnp,
      workloadId: `${pulumi.getStack()}-${name}`,
      evidencePlatform: "snp",
      reference: expected.reference,
      policy: expected.policy,
      vhsm,
    };
  }

  /** Registered measurement of `boot` (the kernel only where the firmware verifies it: no value no hardware would produce). */
  private static expected(who: string, boot: BootInputsArgs, vcpus: number, cpuModel: string) {
    let measuresKernel: boolean;
    try {
      measuresKernel =
        boot.kernel !== undefined &&
        firmwareMeasuresKernel(readInputFile(who, "boot.firmware", boot.firmware), "boot.firmware");
    } catch (e) {
      if (e instanceof LocalVmError) throw new ConfigError(who, e.field, e.message);
      throw e;
    }
    const measuredBoot: BootInputsArgs = measuresKernel ? boot : { firmware: boot.firmware };
    return { measuresKernel, launch: expectedQemuLaunch(who, Tee.SevSnp, measuredBoot, vcpus, cpuModel, 2048) };
  }

  private realGuest(
    name: string,
    who: string,
    args: LocalConfidentialVmArgs,
    secrets: Record<string, pulumi.Output<string>>,
  ): VmOutputs {
    const vcpus = args.vcpus ?? 2;
    const cpuModel = args.cpuModel ?? "EPYC-Milan";
    const memoryMb = args.memoryMb ?? 1024;
    const dataVolumeGb = args.dataVolumeGb ?? 1;
    if (!Number.isInteger(dataVolumeGb) || dataVolumeGb < 0 || dataVolumeGb > 64)
      throw new ConfigError(who, "dataVolumeGb", `is ${dataVolumeGb}; must be an integer 0..64`);
    if (args.sshPort !== undefined && !(Number.isInteger(args.sshPort) && args.sshPort >= 1 && args.sshPort <= 65535))
      throw new ConfigError(who, "sshPort", `is ${args.sshPort}; must be 1..65535`);
    const { image, log } = localGuestImage(who);
    if (log) pulumi.log.info(`guest image: ${log.split("\n").pop()}`, this);
    const stateDir = args.stateDir ?? path.resolve(".bk", "local", pulumi.getStack(), "vms", name);
    if (!path.isAbsolute(stateDir)) throw new ConfigError(who, "stateDir", `'${stateDir}' must be an absolute path`);
    for (const k of ["kernel", "initrd", "append", "vcpus", "cpuModel"] as const)
      if (args.actualBoot?.[k] !== undefined)
        throw new ConfigError(who, `actualBoot.${k}`, "is not supported for real guests (only firmware; see tamper)");

    // The exact command line, for the registered boot (the kit image's files) and the actual one. The
    // flags the PSP measures (-bios -kernel -initrd -append -smp -cpu) do not depend on the runtime port.
    type Files = { firmware: string; kernel: string; initrd: string; append: string };
    const registeredFiles: Files = {
      firmware: image.firmware,
      kernel: image.kernel,
      initrd: image.initrd,
      append: image.append,
    };
    const argvFor = (f: Files, runtimePort: number) =>
      realGuestArgv({
        name,
        vcpus,
        memoryMb,
        cpuModel,
        ...f,
        stateDir,
        runtimePort,
        ...(args.sshPort ? { sshPort: args.sshPort } : {}),
        dataDisk: dataVolumeGb > 0,
      });
    const registeredBoot = bootInputsOf(argvFor(registeredFiles, 1));
    const { measuresKernel, launch: expected } = LocalConfidentialVm.expected(
      who,
      {
        firmware: registeredBoot.firmware,
        kernel: registeredBoot.kernel!,
        initrd: registeredBoot.initrd!,
        append: registeredBoot.append!,
      },
      registeredBoot.vcpus,
      registeredBoot.vcpuType,
    );
    const expectedMeasurement = expected.measurements[0];
    pulumi.log.info(
      `measured ${name}: firmware ${path.basename(image.firmware)}${measuresKernel ? " + kernel/initrd/cmdline (dm-verity root hash on it)" : " (kernel not in the digest: the firmware has no kernel-hashes table)"}, ${vcpus} × ${cpuModel}, from the guest's QEMU argv → ${expectedMeasurement.slice(0, 16)}…`,
      this,
    );

    const registration = LocalConfidentialVm.snpRegistration(name, expected, args.vhsm);
    const workloadId = registration.workloadId;
    const guest = registerGuest(this, name, {
      ...registration,
      guestRuntimeUrl: pulumi.output(args.vhsm.url).apply(guestRuntimeUrl),
      secrets,
      hostname: name,
      ...(dataVolumeGb > 0 ? { dataVolume: { sizeGb: dataVolumeGb }, dataVolumeDevice: "/dev/vdc" } : {}),
      ...(args.tls ? { pki: args.tls } : {}),
      ...(args.sshHost ? { ssh: args.sshHost } : {}),
      // The image runs the enclaivelet before cloud-init; the user-data's SHA-256 is registered.
      agentInImage: true,
      evidenceProvider: "virtio-psp",
      ...(args.sshAuthorizedKeys?.length ? { sshAuthorizedKeys: args.sshAuthorizedKeys } : {}),
      provision: LocalConfidentialVm.provisionPlan(name, args, workloadId, Object.keys(secrets)),
    });
    // What the guest really boots: the registered files, or (tamper demonstrations) one of them changed.
    const tampered: pulumi.Output<TamperedBoot> = pulumi.output(
      args.tamper
        ? tamperedBoot(args.tamper.case, image, args.tamper.dir)
        : Promise.resolve(args.actualBoot?.firmware ? { firmware: args.actualBoot.firmware } : {}),
    );
    const actualFiles = tampered.apply((t): Files => ({
      firmware: t.firmware ?? image.firmware,
      kernel: t.kernel ?? image.kernel,
      initrd: t.initrd ?? image.initrd,
      append: t.append ?? image.append,
    }));
    const argv = pulumi.all([args.vhsm.url, actualFiles]).apply(([u, f]) => {
      const a = argvFor(f, Number(new URL(u).port || 443));
      // Only the intended input may differ from the registered command line.
      if (JSON.stringify(bootInputsOf(a)) !== JSON.stringify({ ...registeredBoot, ...f }))
        throw new ConfigError(who, "argv", "the guest's measured flags differ from the registered ones (a bug)");
      return a;
    });
    const userData = args.injectUserData ? guest.userData.apply((t) => `${t}${args.injectUserData}`) : guest.userData;
    const changed = [
      ...(args.tamper ? [TAMPER_DESCRIPTION[args.tamper.case]] : []),
      ...(args.actualBoot?.firmware ? [`firmware ${path.basename(args.actualBoot.firmware)}`] : []),
      ...(args.injectUserData ? ["user-data with text appended after registration"] : []),
    ];
    if (changed.length)
      pulumi.log.warn(`booting ${name} with inputs other than the registered ones: ${changed.join(", ")}`, this);
    const sshPrincipal = args.sshHost ? pulumi.output(args.sshHost.principals).apply((p) => p[0]) : undefined;
    const vm = new QemuGuest(
      `${name}-guest`,
      {
        name,
        platformDir: args.platformDir,
        stateDir,
        argv,
        baseImage: tampered.apply((t) => t.rootImage ?? image.rootImage),
        userData,
        metaData: noCloudMetaData(workloadId, name),
        ...(dataVolumeGb > 0 ? { dataDiskGb: dataVolumeGb } : {}),
        ...(args.sshPort ? { sshPort: args.sshPort } : {}),
        bootInputsSha256: pulumi.all([actualFiles, tampered]).apply(([f, t]) =>
          sha256(
            JSON.stringify([
              inputFileSha256(who, "firmware", f.firmware),
              inputFileSha256(who, "kernel", f.kernel),
              inputFileSha256(who, "initrd", f.initrd),
              f.append,
              image.agentSha256,
              // The root: the image's (named by its verity root hash) or the tampered copy (by its path).
              t.rootImage ?? image.verity.rootHash,
            ]),
          ),
        ),
        runtimeUrl: args.vhsm.url,
        ...(args.vhsm.caPem !== undefined ? { runtimeCaPem: args.vhsm.caPem } : {}),
        ...(args.vhsm.attestation !== undefined ? { runtimeAttestation: args.vhsm.attestation } : {}),
        ...(sshPrincipal ? { sshPrincipal } : {}),
      },
      { parent: this, dependsOn: [guest.workload, ...(args.waitFor ?? [])] },
    );
    pulumi
      .all([vm.state, vm.measurement, vm.reason, vm.bootSeconds, vm.accel])
      .apply(([state, m, reason, secs, accel]) => {
        if (!state) return;
        const same = versusRegistration(m, expectedMeasurement);
        if (state === "provisioned")
          pulumi.log.info(
            `attested ${name}: real guest (${accel}), measurement ${m.slice(0, 16)}… ${same}; accepted (simulated platform); provisioned ${secs} s after QEMU started`,
            this,
          );
        else
          pulumi.log.warn(
            `attestation of ${name} refused: measurement ${m.slice(0, 16)}… ${same}; nothing delivered — ${reason}`,
            this,
          );
      });
    const verdict = vm.state.apply((s) => (s === "provisioned" ? "accepted" : "refused") as string);
    return {
      pspRequests: vm.pspRequests,
      bootInputs: pulumi.output(registeredFiles),
      workloadId: guest.workloadId,
      expectedMeasurement: pulumi.output(expectedMeasurement),
      measurement: vm.measurement,
      verdict,
      reason: vm.reason,
      delivered: pulumi.output([] as string[]),
      root: pulumi.output(""),
      pid: vm.pid,
      kernelMeasured: vm.kernelMeasured,
      status: vm.state,
      sshPort: pulumi.output(args.sshPort ?? 0),
      knownHosts: vm.knownHosts,
      bootSeconds: vm.bootSeconds,
      accel: vm.accel,
      consoleLog: vm.consoleLog,
    };
  }

  private processTree(
    name: string,
    who: string,
    args: LocalConfidentialVmArgs,
    secrets: Record<string, pulumi.Output<string>>,
  ): VmOutputs {
    const vcpus = args.vcpus ?? 2;
    const cpuModel = args.cpuModel ?? "EPYC-v4";
    const { measuresKernel, launch: expected } = LocalConfidentialVm.expected(who, args.boot, vcpus, cpuModel);
    const expectedMeasurement = expected.measurements[0];
    pulumi.log.info(
      `measured ${name}: firmware ${path.basename(args.boot.firmware)}${measuresKernel ? ` + kernel/initrd/cmdline` : " (kernel not in the digest: the firmware has no kernel-hashes table)"}, ${vcpus} × ${cpuModel} → ${expectedMeasurement.slice(0, 16)}…`,
      this,
    );

    const registration = LocalConfidentialVm.snpRegistration(name, expected, args.vhsm);
    const workloadId = registration.workloadId;
    const guest = registerGuest(this, name, {
      ...registration,
      requirePqHybrid: args.requirePqHybrid,
      secrets,
      hostname: name,
      ...(args.tls ? { pki: args.tls } : {}),
      ...(args.sshHost ? { ssh: args.sshHost } : {}),
      provision: LocalConfidentialVm.provisionPlan(name, args, workloadId, Object.keys(secrets)),
    });
    // Boot inputs the VM really starts with.
    if (args.tamper && args.tamper.case !== "firmware")
      throw new ConfigError(
        who,
        "tamper.case",
        `'${args.tamper.case}' needs a real guest (process trees measure no kernel, initrd, command line or root)`,
      );
    if (args.tamper) mkdirSync(args.tamper.dir, { recursive: true });
    const a: LocalBootOverride = args.tamper
      ? { firmware: firmwareWithOneByteChanged(args.boot.firmware, path.join(args.tamper.dir, "OVMF-modified.fd")) }
      : (args.actualBoot ?? {});
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
        inputFileSha256(who, "firmware", actual.firmware),
        inputFileSha256(who, "kernel", actual.kernel),
        inputFileSha256(who, "initrd", actual.initrd),
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
    if (args.tamper || args.actualBoot) {
      const changed = Object.entries(a).map(
        ([k, v]) => `${k} ${typeof v === "string" && path.isAbsolute(v) ? path.basename(v) : String(v)}`,
      );
      pulumi.log.warn(`booting ${name} with inputs other than the registered ones: ${changed.join(", ")}`, this);
    }
    pulumi.all([vm.verdict, vm.measurement, vm.detail, vm.delivered]).apply(([verdict, m, reason, delivered]) => {
      if (!verdict) return;
      const same = versusRegistration(m, expectedMeasurement);
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

    const verdict = vm.verdict as pulumi.Output<string>;
    return {
      pspRequests: pulumi.output(-1),
      bootInputs: pulumi.output({
        firmware: args.boot.firmware,
        kernel: args.boot.kernel ?? "",
        initrd: args.boot.initrd ?? "",
        append: args.boot.append ?? "",
      }),
      workloadId: guest.workloadId,
      expectedMeasurement: pulumi.output(expectedMeasurement),
      measurement: vm.measurement,
      verdict,
      reason: pulumi.all([vm.verdict, vm.detail]).apply(([v, d]) => (v === "accepted" ? "" : d)),
      delivered: vm.delivered,
      root: vm.root,
      pid: vm.pid,
      kernelMeasured: vm.kernelMeasured,
      status: verdict.apply((v) => (v === "accepted" ? "provisioned" : "refused")),
      sshPort: pulumi.output(0),
      knownHosts: pulumi.output(""),
      bootSeconds: pulumi.output(0),
      accel: pulumi.output(""),
      consoleLog: pulumi.output(""),
    };
  }
}

/** How a guest's reported measurement compares with the registered one, for the deploy log. */
function versusRegistration(measured: string, registered: string): string {
  return measured === registered ? "matches the registration" : "DIFFERS from the registration";
}

interface VmOutputs {
  pspRequests: pulumi.Output<number>;
  bootInputs: pulumi.Output<{ firmware: string; kernel: string; initrd: string; append: string }>;
  workloadId: pulumi.Output<string>;
  expectedMeasurement: pulumi.Output<string>;
  measurement: pulumi.Output<string>;
  verdict: pulumi.Output<string>;
  reason: pulumi.Output<string>;
  delivered: pulumi.Output<string[]>;
  root: pulumi.Output<string>;
  pid: pulumi.Output<number>;
  kernelMeasured: pulumi.Output<boolean>;
  status: pulumi.Output<string>;
  sshPort: pulumi.Output<number>;
  knownHosts: pulumi.Output<string>;
  bootSeconds: pulumi.Output<number>;
  accel: pulumi.Output<string>;
  consoleLog: pulumi.Output<string>;
}
