// `buckypaper simulate snp|tdx`: simulated confidential-computing hardware for tests and the local stack.
// `snp` writes a signed report, its certificate table and the simulated CA certificates into a directory;
// the simulated root is generated per run and trusted by `verify snp --simulated-ca DIR/ark.pem` only.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseFlags, parseHexFlag } from "./args.js";
import { pemEncode } from "../runtime/attestation/pem.js";
import { Exit, UsageError, type CliIo, type CommandRunner } from "./io.js";
import { productFromName } from "../runtime/attestation/snp/abi.js";
import { createSnpSimulator, type SimulatedReportOptions } from "../runtime/sim/snp.js";
import { initPlatform } from "../runtime/sim/localvm/platform.js";
import { runLocalVm } from "../runtime/sim/localvm/vm.js";
import { LocalVmError } from "../runtime/sim/localvm/errors.js";

const HELP = `usage: buckypaper simulate snp --out DIR [--measurement HEX] [--report-data HEX] [--product milan|genoa|turin]
                                [--version 2|3|5] [--signer vcek|vlek] [--debug] [--migrate-ma] [--single-socket]
                                [--policy 0xHEX] [--vmpl N] [--guest-svn N] [--host-data HEX] [--json]
       buckypaper simulate tdx ...   (see 'buckypaper simulate tdx --help', when built)
       buckypaper simulate platform init --dir DIR [--product milan|genoa|turin]
       buckypaper simulate vm --platform DIR --firmware F [--kernel K --initrd I --append S] --vcpus N
                              --vcpu-type T --agent-config C --root R --state-dir S [--name N]
       buckypaper simulate qemu-guest --config S/guest.json --state-dir S
       buckypaper simulate guest-image [--json]
       buckypaper simulate runtime-image [--json]

  Writes DIR/report.bin (0x4A0 bytes), DIR/certs.bin (certificate table, as configfs-tsm auxblob),
  DIR/vek.der, DIR/ark.pem, DIR/ask.pem, DIR/asvk.pem. The AMD hierarchy is SIMULATED and generated
  afresh on every run; verify with:
    buckypaper verify snp --report DIR/report.bin --certs-from-table DIR/certs.bin --simulated-ca DIR/ark.pem

  'platform init' creates a persistent simulated platform (the local stack's "chip"): DIR/platform.json
  (its private keys, mode 0600) and DIR/anchor.json (the public anchor a runtime's nitride/config trusts);
  an existing platform is kept. 'vm' runs a local confidential VM in the foreground until SIGTERM: the
  simulated PSP measures the given boot inputs, the enclaivelet attests with that measurement and
  provisions into --root; S/status.json reports measurement, verdict and delivered files.
  'qemu-guest' runs a real QEMU guest of the local stack in the foreground until SIGTERM (the config is
  written by the local stack's provider): a simulated PSP measures the files QEMU is started with and
  answers the guest over virtio-serial; S/status.json reports measurement, verdict, reason and timings.
  'guest-image' finds or builds (once, as root; then cached) what those guests boot: the kit image
  (buckypaper image build: kernel, initramfs, dm-verity root with this build's enclaivelet) and OVMF's
  AmdSev firmware (scripts/build-firmware.sh), whose kernel-hashes table puts kernel, initrd and command
  line (with the verity root hash) into the launch digest.
  'runtime-image' finds or builds (cached likewise) the image the vHSM runtime's own guest boots (Vhsm mode
  confidential-vm, platform local): the kit image in its runtime role and the AmdSev firmware.`;

const pem = (der: Uint8Array) => pemEncode("CERTIFICATE", der);

function int(flag: string, v: string | undefined, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > max)
    throw new UsageError(`${flag}: expected an integer 0..${max}, got '${v}'`);
  return n;
}

async function snp(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, {
    out: { type: "string" },
    measurement: { type: "string" },
    "report-data": { type: "string" },
    product: { type: "string" },
    version: { type: "string" },
    signer: { type: "string" },
    debug: { type: "boolean" },
    "migrate-ma": { type: "boolean" },
    "single-socket": { type: "boolean" },
    policy: { type: "string" },
    vmpl: { type: "string" },
    "guest-svn": { type: "string" },
    "host-data": { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    io.out(HELP);
    return Exit.ok;
  }
  if (!values.out) throw new UsageError(`--out is required\n${HELP}`);
  const product = productFromName(values.product ?? "milan");
  if (!product) throw new UsageError(`--product: '${values.product}' is not milan, genoa or turin`);
  const version = int("--version", values.version, 5);
  if (version !== undefined && version !== 2 && version !== 3 && version !== 5)
    throw new UsageError("--version: expected 2, 3 or 5");
  if (values.signer && values.signer !== "vcek" && values.signer !== "vlek")
    throw new UsageError("--signer: expected vcek or vlek");
  let policy: SimulatedReportOptions["policy"];
  if (values.policy) {
    const raw = parseHexFlag("--policy", values.policy.replace(/^0x/i, "").padStart(16, "0"), 8);
    policy = raw.readBigUInt64BE(0);
  } else {
    policy = { debug: values.debug, migrateMa: values["migrate-ma"], singleSocket: values["single-socket"] };
  }
  const reportData = values["report-data"] ? parseHexFlag("--report-data", values["report-data"]) : undefined;
  if (reportData && reportData.length > 64) throw new UsageError("--report-data: at most 64 bytes");
  const hostData = values["host-data"] ? parseHexFlag("--host-data", values["host-data"], 32) : undefined;
  const sim = await createSnpSimulator({ product });
  const r = await sim.report({
    measurement: values.measurement ? parseHexFlag("--measurement", values.measurement, 48) : undefined,
    reportData,
    policy,
    version: version as 2 | 3 | 5 | undefined,
    signer: values.signer as "vcek" | "vlek" | undefined,
    vmpl: int("--vmpl", values.vmpl, 3),
    guestSvn: int("--guest-svn", values["guest-svn"], 0xffffffff),
    hostData,
  });
  try {
    mkdirSync(values.out, { recursive: true });
    const files: Record<string, Uint8Array | string> = {
      "report.bin": r.report,
      "certs.bin": r.certTable,
      "vek.der": r.vek,
      "ark.pem": pem(sim.caCerts.ark),
      "ask.pem": pem(sim.caCerts.ask),
      "asvk.pem": pem(sim.caCerts.asvk),
    };
    for (const [name, data] of Object.entries(files)) writeFileSync(path.join(values.out, name), data);
  } catch (e) {
    throw new UsageError(`--out ${values.out}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const summary = {
    product,
    out: values.out,
    simulated: true,
    arkSha256: sim.trustAnchor.arkSha256,
    chipId: Buffer.from(sim.chipId).toString("hex"),
  };
  io.out(
    values.json
      ? JSON.stringify(summary, null, 2)
      : `wrote a SIMULATED ${product} report to ${values.out} (simulated ARK SHA-256 ${summary.arkSha256})`,
  );
  return Exit.ok;
}

async function platform(argv: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = argv;
  if (action !== "init") throw new UsageError(`simulate platform: expected 'init'\n${HELP}`);
  const { values } = parseFlags(rest, {
    dir: { type: "string" },
    product: { type: "string" },
    json: { type: "boolean" },
  });
  if (!values.dir) throw new UsageError("--dir is required");
  const product = productFromName(values.product ?? "genoa");
  if (!product) throw new UsageError(`--product: '${values.product}' is not milan, genoa or turin`);
  try {
    const { anchor, created } = await initPlatform(path.resolve(values.dir), { product });
    io.out(
      values.json
        ? JSON.stringify({
            dir: path.resolve(values.dir),
            created,
            simulated: true,
            product: anchor.product,
            arkSha256: anchor.ark_sha256,
          })
        : `${created ? "created" : "kept"} a SIMULATED ${anchor.product} platform in ${values.dir} (ARK SHA-256 ${anchor.ark_sha256})`,
    );
    return Exit.ok;
  } catch (e) {
    if (e instanceof LocalVmError) throw new UsageError(e.message);
    throw e;
  }
}

async function vm(argv: string[], _io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, {
    name: { type: "string" },
    platform: { type: "string" },
    firmware: { type: "string" },
    kernel: { type: "string" },
    initrd: { type: "string" },
    append: { type: "string" },
    vcpus: { type: "string" },
    "vcpu-type": { type: "string" },
    "agent-config": { type: "string" },
    root: { type: "string" },
    "state-dir": { type: "string" },
  });
  for (const f of ["platform", "firmware", "vcpus", "vcpu-type", "agent-config", "root", "state-dir"] as const) {
    if (!values[f]) throw new UsageError(`--${f} is required\n${HELP}`);
  }
  const vcpus = int("--vcpus", values.vcpus, 512);
  if (!vcpus) throw new UsageError("--vcpus: expected an integer 1..512");
  const abs = (p: string) => path.resolve(p);
  return runLocalVm({
    name: values.name ?? path.basename(abs(values["state-dir"]!)),
    platformDir: abs(values.platform!),
    boot: {
      firmware: abs(values.firmware!),
      ...(values.kernel ? { kernel: abs(values.kernel) } : {}),
      ...(values.initrd ? { initrd: abs(values.initrd) } : {}),
      ...(values.append !== undefined ? { append: values.append } : {}),
      vcpus,
      vcpuType: values["vcpu-type"]!,
    },
    agentConfigFile: abs(values["agent-config"]!),
    root: abs(values.root!),
    stateDir: abs(values["state-dir"]!),
  });
}

async function qemuGuest(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { config: { type: "string" }, "state-dir": { type: "string" } });
  if (!values.config) throw new UsageError(`--config is required\n${HELP}`);
  const { superviseQemuGuest } = await import("../runtime/sim/qemu/supervise.js");
  return superviseQemuGuest(path.resolve(values.config));
}

/**
 * The package root (holding dist/) when this machine can run real guests; else says why not and returns
 * undefined (the image commands then exit with a usage error).
 */
async function realGuestPackageRoot(io: CliIo): Promise<string | undefined> {
  const { realGuestSupport } = await import("../runtime/sim/qemu/local-image.js");
  const support = realGuestSupport();
  if (!support.ok) {
    io.err(`real guests cannot run here: ${support.reason}`);
    return undefined;
  }
  // cli/ in the sources, dist/cli/ when compiled: the package root (holding dist/) is one or two levels up.
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, path.basename(path.dirname(here)) === "dist" ? "../.." : "..");
}

async function guestImage(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, { json: { type: "boolean" } });
  const { ensureLocalGuestImage } = await import("../runtime/sim/qemu/local-image.js");
  const packageRoot = await realGuestPackageRoot(io);
  if (packageRoot === undefined) return Exit.usage;
  const t0 = Date.now();
  // --json: the image's paths on stdout (for the local stack's components), progress on stderr.
  const say = values.json ? (l: string) => io.err(l) : (l: string) => io.out(l);
  const img = await ensureLocalGuestImage({ packageRoot, progress: (l) => say(`  ${l}`) });
  if (values.json) {
    io.out(JSON.stringify(img));
    return Exit.ok;
  }
  io.out(
    `  guest image ready in ${Math.round((Date.now() - t0) / 1000)} s: ${img.manifestPath} (dm-verity root ${img.verity.rootHash.slice(0, 16)}…, enclaivelet ${img.agentSha256.slice(0, 16)}…), firmware ${img.firmware}`,
  );
  return Exit.ok;
}

async function runtimeImage(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, { json: { type: "boolean" } });
  const { ensureRuntimeGuestImage } = await import("../runtime/sim/qemu/runtime-image.js");
  const packageRoot = await realGuestPackageRoot(io);
  if (packageRoot === undefined) return Exit.usage;
  const say = values.json ? (l: string) => io.err(l) : (l: string) => io.out(l);
  const img = await ensureRuntimeGuestImage({ packageRoot, progress: (l) => say(`  ${l}`) });
  // The paths the component needs (the manifest itself stays in the image directory).
  const out = {
    firmware: img.firmware,
    kernel: img.kernel,
    initrd: img.initrd,
    append: img.append,
    rootImage: img.rootImage,
    manifestPath: img.manifestPath,
    runtimeSha256: img.runtimeSha256,
  };
  if (values.json) io.out(JSON.stringify(out));
  else
    io.out(
      `  runtime guest image: firmware ${img.firmware}, root ${img.rootImage} (runtime ${img.runtimeSha256.slice(0, 16)}…)`,
    );
  return Exit.ok;
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind === undefined || kind === "--help" || kind === "-h" || kind === "help") {
    io.out(HELP);
    return kind === undefined ? Exit.usage : Exit.ok;
  }
  if (kind === "snp") return snp(rest, io);
  if (kind === "platform") return platform(rest, io);
  if (kind === "vm") return vm(rest, io);
  if (kind === "qemu-guest") return qemuGuest(rest);
  if (kind === "guest-image") return guestImage(rest, io);
  if (kind === "runtime-image") return runtimeImage(rest, io);
  if (kind === "tdx") {
    let mod: { run: CommandRunner };
    try {
      mod = (await import("./simulate-" + "tdx.js")) as { run: CommandRunner };
    } catch {
      io.err("buckypaper simulate tdx: not available in this build");
      return Exit.usage;
    }
    return mod.run(rest, io);
  }
  throw new UsageError(
    `unknown simulator '${kind}' (expected snp, tdx, platform, vm, qemu-guest, guest-image or runtime-image)\n${HELP}`,
  );
}
