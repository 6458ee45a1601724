// `buckypaper simulate snp|tdx`: simulated confidential-computing hardware for tests and the local stack.
// `snp` writes a signed report, its certificate table and the simulated CA certificates into a directory;
// the simulated root is generated per run and trusted by `verify snp --simulated-ca DIR/ark.pem` only.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseFlags, parseHexFlag } from "./args.js";
import { Exit, UsageError, type CliIo, type CommandRunner } from "./io.js";
import { productFromName } from "../runtime/attestation/snp/abi.js";
import { createSnpSimulator, type SimulatedReportOptions } from "../runtime/attestation/snp/simulator.js";

const HELP = `usage: buckypaper simulate snp --out DIR [--measurement HEX] [--report-data HEX] [--product milan|genoa|turin]
                                [--version 2|3|5] [--signer vcek|vlek] [--debug] [--migrate-ma] [--single-socket]
                                [--policy 0xHEX] [--vmpl N] [--guest-svn N] [--host-data HEX] [--json]
       buckypaper simulate tdx ...   (see 'buckypaper simulate tdx --help', when built)

  Writes DIR/report.bin (0x4A0 bytes), DIR/certs.bin (certificate table, as configfs-tsm auxblob),
  DIR/vek.der, DIR/ark.pem, DIR/ask.pem, DIR/asvk.pem. The AMD hierarchy is SIMULATED and generated
  afresh on every run; verify with:
    buckypaper verify snp --report DIR/report.bin --certs-from-table DIR/certs.bin --simulated-ca DIR/ark.pem`;

const pem = (der: Uint8Array) => `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "")}\n-----END CERTIFICATE-----\n`;

function int(flag: string, v: string | undefined, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new UsageError(`${flag}: expected an integer 0..${max}, got '${v}'`);
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
  if (version !== undefined && version !== 2 && version !== 3 && version !== 5) throw new UsageError("--version: expected 2, 3 or 5");
  if (values.signer && values.signer !== "vcek" && values.signer !== "vlek") throw new UsageError("--signer: expected vcek or vlek");
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
  const summary = { product, out: values.out, simulated: true, arkSha256: sim.trustAnchor.arkSha256, chipId: Buffer.from(sim.chipId).toString("hex") };
  io.out(values.json ? JSON.stringify(summary, null, 2) : `wrote a SIMULATED ${product} report to ${values.out} (simulated ARK SHA-256 ${summary.arkSha256})`);
  return Exit.ok;
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind === undefined || kind === "--help" || kind === "-h" || kind === "help") {
    io.out(HELP);
    return kind === undefined ? Exit.usage : Exit.ok;
  }
  if (kind === "snp") return snp(rest, io);
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
  throw new UsageError(`unknown simulator '${kind}' (expected snp or tdx)\n${HELP}`);
}
