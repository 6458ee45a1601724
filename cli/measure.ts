// `buckypaper measure snp|snp-ovmf-hash|sev|seves|tdx`: expected launch measurements.
// Flags mirror virtee's `sev-snp-measure` so existing scripts carry over (also accepted in its
// `--mode snp|seves|sev|snp:ovmf-hash|snp:svsm` form). Only the small SNP engine is imported here;
// TDX loads lazily.
import { statSync } from "node:fs";
import { parseFlags, readFlagFile, type Options } from "./args.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import {
  MAX_VCPUS,
  MeasurementInputError,
  VCPU_TYPES,
  VMM_TYPES,
  firmwareDescriptionJson,
  describeOvmf,
  parseFirmwareDescription,
  parseOvmf,
  sevDigest,
  sevEsDigestTable,
  snpLaunchDigestTable,
  snpOvmfHash,
  type VcpuSpec,
  type VmmType,
} from "../images/snp/index.js";
import { ManifestError, snpDigestsFromManifest } from "../images/guest/index.js";

const USAGE = `usage:
  buckypaper measure snp (--ovmf FILE | --ovmf-metadata FILE.json) [--snp-ovmf-hash HEX] --vcpus N|LIST
      [--vcpu-type NAME | --vcpu-sig 0xHEX | --vcpu-family F --vcpu-model M --vcpu-stepping S]
      [--vmm-type qemu|ec2|ec2-legacy|gce] [--kernel F [--initrd F] [--append STR]] [--guest-features 0xHEX]
      [--svsm F (--vars-size N | --vars-file F)] [--output-format hex|base64|json] [-v]
  buckypaper measure snp --manifest manifest.json --vcpus N|LIST [vCPU flags] [--vmm-type T] [--output-format F]
      (the image's firmware, kernel, initrd and command line from 'buckypaper image build', checked by SHA-256)
  buckypaper measure snp-ovmf-hash --ovmf FILE [--output-format hex|base64|json]
      (json: the firmware description of sev-snp-measure-go, usable with --ovmf-metadata)
  buckypaper measure seves --ovmf FILE --vcpus N|LIST [vCPU flags] [--vmm-type T] [--kernel F ...] [--output-format F]
  buckypaper measure sev --ovmf FILE [--kernel F [--initrd F] [--append STR]] [--output-format hex|base64|json]
  buckypaper measure tdx --firmware FILE ...   (see 'buckypaper measure tdx --help')

  --vcpus takes a count, a list or ranges (e.g. 4, 1-256, 2,4,8-16); more than one count needs
  --output-format json, which prints {"mode", "vmm", "measurements": {"<vcpus>": "<hex>"}}.
  The reference tool's '--mode snp|seves|sev|snp:ovmf-hash|snp:svsm' form is accepted too.
  vCPU types: ${Object.keys(VCPU_TYPES).join(", ")}`;

const COMMON: Options = {
  "output-format": { type: "string" },
  verbose: { type: "boolean", short: "v" },
  help: { type: "boolean", short: "h" },
};
const KERNEL: Options = { kernel: { type: "string" }, initrd: { type: "string" }, append: { type: "string" } };
const VCPU: Options = {
  vcpus: { type: "string" },
  "vcpu-type": { type: "string" },
  "vcpu-sig": { type: "string" },
  "vcpu-family": { type: "string" },
  "vcpu-model": { type: "string" },
  "vcpu-stepping": { type: "string" },
  "vmm-type": { type: "string" },
};
const FLAGS = {
  snp: {
    ...COMMON,
    ...KERNEL,
    ...VCPU,
    ovmf: { type: "string" },
    manifest: { type: "string" },
    "ovmf-metadata": { type: "string" },
    "snp-ovmf-hash": { type: "string" },
    "guest-features": { type: "string" },
    svsm: { type: "string" },
    "vars-size": { type: "string" },
    "vars-file": { type: "string" },
  },
  "snp-ovmf-hash": { ...COMMON, ovmf: { type: "string" } },
  seves: { ...COMMON, ...KERNEL, ...VCPU, ovmf: { type: "string" } },
  sev: { ...COMMON, ...KERNEL, ovmf: { type: "string" } },
} satisfies Record<string, Options>;
type Mode = keyof typeof FLAGS;

// The reference tool's --mode names.
const REFERENCE_MODES: Record<string, Mode> = {
  snp: "snp",
  "snp:svsm": "snp",
  "snp:ovmf-hash": "snp-ovmf-hash",
  seves: "seves",
  sev: "sev",
};

export async function run(argv: string[], io: CliIo): Promise<number> {
  let [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
    io.out(USAGE);
    return sub === undefined ? Exit.usage : Exit.ok;
  }
  if (sub === "tdx") {
    const tdx = (await import("./measure-tdx.js")) as { run: (argv: string[], io: CliIo) => Promise<number> };
    return tdx.run(rest, io);
  }
  if (sub.startsWith("-")) [sub, rest] = fromReferenceForm(argv);
  if (!(sub in FLAGS))
    throw new UsageError(`unknown measurement '${sub}' (expected snp, snp-ovmf-hash, sev, seves or tdx)`);
  const mode = sub as Mode;
  const { values } = parseFlags(rest, FLAGS[mode]);
  const v = values as Record<string, string | boolean | undefined>;
  if (v.help) {
    io.out(USAGE);
    return Exit.ok;
  }
  try {
    io.out(measure(mode, v));
  } catch (e) {
    if (e instanceof MeasurementInputError) throw new UsageError(`${flagFor(e.field)}: ${e.reason}`);
    throw e;
  }
  return Exit.ok;
}

/** `--mode X` anywhere in argv → subcommand X; `--mode=snp:svsm` is plain snp with --svsm. */
function fromReferenceForm(argv: string[]): [string, string[]] {
  const rest = [...argv];
  const i = rest.findIndex((a) => a === "--mode" || a.startsWith("--mode="));
  if (i < 0) throw new UsageError("expected a measurement (snp, snp-ovmf-hash, sev, seves, tdx) or --mode");
  const value = rest[i].includes("=") ? rest[i].slice("--mode=".length) : rest[i + 1];
  rest.splice(i, rest[i].includes("=") ? 1 : 2);
  const mode = value === undefined ? undefined : REFERENCE_MODES[value.toLowerCase()];
  if (!mode) throw new UsageError(`--mode: '${value ?? ""}' is not one of ${Object.keys(REFERENCE_MODES).join(", ")}`);
  if (value!.toLowerCase() === "snp:svsm" && !rest.some((a) => a === "--svsm" || a.startsWith("--svsm=")))
    throw new UsageError("--mode snp:svsm requires --svsm");
  return [mode, rest];
}

type Flags = Record<string, string | boolean | undefined>;

// Library input fields → the flags that carry them, so errors name what the user typed.
const FIELD_FLAGS: Record<string, string> = {
  ovmf: "--ovmf",
  firmware: "--ovmf-metadata",
  ovmfHash: "--snp-ovmf-hash",
  vcpus: "--vcpus",
  vcpu: "--vcpu-type/--vcpu-sig/--vcpu-family",
  "vcpu.family": "--vcpu-family",
  "vcpu.model": "--vcpu-model",
  "vcpu.stepping": "--vcpu-stepping",
  vmm: "--vmm-type",
  guestFeatures: "--guest-features",
  kernel: "--kernel",
  initrd: "--initrd",
  append: "--append",
  svsm: "--svsm",
  varsSize: "--vars-size",
};
function flagFor(field: string): string {
  if (FIELD_FLAGS[field]) return FIELD_FLAGS[field];
  const head = /^[A-Za-z]+/.exec(field)?.[0] ?? field;
  return FIELD_FLAGS[head] ? FIELD_FLAGS[head] + field.slice(head.length) : field;
}

function measure(mode: Mode, v: Flags): string {
  const format = outputFormat(v["output-format"]);
  if (mode === "snp-ovmf-hash") {
    const img = parseOvmf(readFlagFile("--ovmf", required(v, "ovmf")));
    const hash = snpOvmfHash(img);
    if (format === "json") return JSON.stringify(firmwareDescriptionJson(describeOvmf(img, hash)), null, 2);
    return render(hash, format);
  }
  const kernel = v.manifest !== undefined ? {} : kernelFlags(v);
  if (mode === "sev") {
    const digest = sevDigest({ ovmf: readFlagFile("--ovmf", required(v, "ovmf")), ...kernel });
    return format === "json"
      ? JSON.stringify({ mode: "sev", measurement: digest.toString("hex") })
      : labelled(v, "SEV", render(digest, format));
  }

  const counts = parseVcpuList(required(v, "vcpus"));
  if (counts.length > 1 && format !== "json")
    throw new UsageError("--vcpus: several vCPU counts need --output-format json");
  const vmm = vmmType(v["vmm-type"]);
  const vcpu = vcpuSpec(v);
  let table: Map<number, Buffer>;
  let label: string;
  if (mode === "seves") {
    table = sevEsDigestTable({ ovmf: readFlagFile("--ovmf", required(v, "ovmf")), vcpu, vmm, ...kernel }, counts);
    label = "SEV_ES";
  } else if (v.manifest !== undefined) {
    const other = ["ovmf", "ovmf-metadata", "kernel", "initrd", "append", "snp-ovmf-hash", "svsm"].filter(
      (k) => v[k] !== undefined,
    );
    if (other.length)
      throw new UsageError(
        `--manifest names the firmware, kernel, initrd and command line; drop --${other.join(", --")}`,
      );
    try {
      table = snpDigestsFromManifest(v.manifest as string, {
        vcpus: counts,
        vcpu,
        vmm,
        guestFeatures:
          v["guest-features"] !== undefined
            ? BigInt(parseInteger("--guest-features", v["guest-features"] as string))
            : undefined,
      });
    } catch (e) {
      if (e instanceof ManifestError) throw new UsageError(`--manifest ${v.manifest as string}: ${e.message}`);
      throw e;
    }
    label = "SEV_SNP";
  } else {
    if (v.ovmf !== undefined && v["ovmf-metadata"] !== undefined)
      throw new UsageError("--ovmf and --ovmf-metadata are alternatives; give one");
    if (v["vars-size"] !== undefined && v["vars-file"] !== undefined)
      throw new UsageError("--vars-size and --vars-file are alternatives; give one");
    if (v.svsm === undefined && (v["vars-size"] !== undefined || v["vars-file"] !== undefined))
      throw new UsageError("--vars-size/--vars-file only apply with --svsm");
    const firmware =
      v["ovmf-metadata"] !== undefined
        ? parseFirmwareDescription(
            readFlagFile("--ovmf-metadata", v["ovmf-metadata"] as string).toString("utf8"),
            "--ovmf-metadata",
          )
        : undefined;
    const ovmf = firmware ? undefined : readFlagFile("--ovmf", required(v, "ovmf", "--ovmf or --ovmf-metadata"));
    table = snpLaunchDigestTable(
      {
        ovmf,
        firmware,
        vcpu,
        vmm,
        ...kernel,
        ovmfHash: v["snp-ovmf-hash"] !== undefined ? parseHash(v["snp-ovmf-hash"] as string) : undefined,
        guestFeatures:
          v["guest-features"] !== undefined
            ? BigInt(parseInteger("--guest-features", v["guest-features"] as string))
            : undefined,
        svsm: v.svsm !== undefined ? readFlagFile("--svsm", v.svsm as string) : undefined,
        varsSize: varsSize(v),
      },
      counts,
    );
    label = v.svsm !== undefined ? "SEV_SNP_SVSM" : "SEV_SNP";
  }
  if (format === "json") {
    const measurements = Object.fromEntries(counts.map((n) => [String(n), table.get(n)!.toString("hex")]));
    return JSON.stringify({ mode: label === "SEV_ES" ? "seves" : "snp", vmm, measurements });
  }
  return labelled(v, label, render(table.get(counts[0])!, format));
}

type Format = "hex" | "base64" | "json";
function outputFormat(f: unknown): Format {
  if (f === undefined) return "hex";
  if (f === "hex" || f === "base64" || f === "json") return f;
  throw new UsageError(`--output-format: '${String(f)}' is not one of hex, base64, json`);
}

function render(b: Buffer, f: Exclude<Format, "json">): string {
  return b.toString(f);
}

function labelled(v: Flags, mode: string, m: string): string {
  return v.verbose ? `Calculated ${mode} guest measurement: ${m}` : m;
}

function required(v: Flags, name: string, what = `--${name}`): string {
  const x = v[name];
  if (typeof x !== "string") throw new UsageError(`${what} is required`);
  return x;
}

function kernelFlags(v: Flags): { kernel?: Buffer; initrd?: Buffer; append?: string } {
  if (v.kernel === undefined) {
    if (v.initrd !== undefined) throw new UsageError("--initrd requires --kernel");
    if (v.append !== undefined) throw new UsageError("--append requires --kernel");
    return {};
  }
  return {
    kernel: readFlagFile("--kernel", v.kernel as string),
    initrd: v.initrd !== undefined ? readFlagFile("--initrd", v.initrd as string) : undefined,
    append: v.append as string | undefined,
  };
}

/** "4", "1-256", "1,2,4,8-16" → sorted distinct counts. */
export function parseVcpuList(s: string): number[] {
  const out = new Set<number>();
  for (const part of s.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new UsageError(`--vcpus: '${s}' is not a count, list or range (e.g. 4, 1-256, 2,4,8-16)`);
    const lo = Number(m[1]),
      hi = m[2] !== undefined ? Number(m[2]) : lo;
    if (lo < 1) throw new UsageError(`--vcpus: ${lo} is below 1`);
    if (hi > MAX_VCPUS) throw new UsageError(`--vcpus: ${hi} exceeds the platform maximum of ${MAX_VCPUS}`);
    if (hi < lo) throw new UsageError(`--vcpus: range ${lo}-${hi} is empty`);
    for (let n = lo; n <= hi; n++) out.add(n);
  }
  return [...out].sort((a, b) => a - b);
}

function vmmType(s: unknown): VmmType {
  if (s === undefined) return "qemu";
  const t = String(s).toLowerCase();
  if ((VMM_TYPES as readonly string[]).includes(t)) return t as VmmType;
  throw new UsageError(`--vmm-type: '${String(s)}' is not one of ${VMM_TYPES.join(", ")}`);
}

function vcpuSpec(v: Flags): VcpuSpec | undefined {
  const fms = ["vcpu-family", "vcpu-model", "vcpu-stepping"].filter((k) => v[k] !== undefined);
  const given = [v["vcpu-type"] !== undefined, v["vcpu-sig"] !== undefined, fms.length > 0].filter(Boolean).length;
  if (given > 1)
    throw new UsageError(
      "--vcpu-type, --vcpu-sig and --vcpu-family/--vcpu-model/--vcpu-stepping are alternatives; give one",
    );
  if (v["vcpu-type"] !== undefined) {
    const t = v["vcpu-type"] as string;
    if (!(t in VCPU_TYPES))
      throw new UsageError(`--vcpu-type: unknown vCPU type '${t}'; valid types: ${Object.keys(VCPU_TYPES).join(", ")}`);
    return t;
  }
  if (v["vcpu-sig"] !== undefined) {
    const sig = parseInteger("--vcpu-sig", v["vcpu-sig"] as string);
    if (typeof sig !== "number" || sig > 0xffff_ffff)
      throw new UsageError(`--vcpu-sig: ${v["vcpu-sig"]} is not a 32-bit CPUID signature`);
    return sig;
  }
  if (fms.length > 0) {
    if (fms.length < 3) throw new UsageError("--vcpu-family, --vcpu-model and --vcpu-stepping must be given together");
    const n = (k: string) => Number(parseInteger(`--${k}`, v[k] as string));
    return { family: n("vcpu-family"), model: n("vcpu-model"), stepping: n("vcpu-stepping") };
  }
  return undefined;
}

/** Python int(x, 0)-style integers: decimal, 0x…, 0o…, 0b…. */
function parseInteger(flag: string, s: string): number | bigint {
  const t = s.trim();
  if (!/^(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0|[1-9][0-9]*)$/.test(t))
    throw new UsageError(`${flag}: '${s}' is not an integer (decimal or 0x hex)`);
  const b = BigInt(t);
  return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

function parseHash(s: string): Buffer {
  const hex = s.startsWith("0x") || s.startsWith("0X") ? s.slice(2) : s;
  if (!/^[0-9a-fA-F]{96}$/.test(hex)) throw new UsageError(`--snp-ovmf-hash: expected 48 bytes as 96 hex digits`);
  return Buffer.from(hex, "hex");
}

function varsSize(v: Flags): number | undefined {
  if (v["vars-file"] !== undefined) {
    try {
      return statSync(v["vars-file"] as string).size;
    } catch (e) {
      throw new UsageError(
        `--vars-file ${String(v["vars-file"])}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
  if (v["vars-size"] !== undefined) return Number(parseInteger("--vars-size", v["vars-size"] as string));
  return undefined;
}
