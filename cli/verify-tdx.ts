// `buckypaper verify tdx`: verify an Intel TDX DCAP quote (v4/v5) and appraise it against a policy.
import YAML from "yaml";
import { parseDateFlag, parseFlags, parseHexFlag, readFlagFile } from "./args.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import type { Verdict } from "../runtime/attestation/types.js";
import { parsePolicy } from "../runtime/attestation/policy.js";
import {
  checkTdxPolicy,
  emptyCollateral,
  loadCollateralDir,
  verifyTdx,
  type TdxCollateral,
  type TdxPolicy,
} from "../runtime/attestation/tdx/index.js";

/** Loads every --collateral DIR into one collateral set (undefined when none is given). */
export function collateralFromFlags(dirs: string[] | undefined): TdxCollateral | undefined {
  if (!dirs?.length) return undefined;
  const collateral = emptyCollateral();
  for (const dir of dirs) {
    try {
      loadCollateralDir(dir, collateral);
    } catch (e) {
      throw new UsageError(`--collateral ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  return collateral;
}

const HELP = `usage: buckypaper verify tdx --quote FILE [--collateral DIR ...] [--offline] [--policy FILE] [--mrtd HEX ...]
                              [--report-data HEX] [--at ISO-TIME] [--simulated-root SHA256 ...] [--json]

  --quote FILE          DCAP quote (v4 or v5, TD report 1.0/1.5) as raw bytes
  --collateral DIR      Intel PCS responses: TCB info / QE identity JSON, issuer chain PEM, PCK and root CRLs (DER)
  --offline             never contact the Intel PCS (without --collateral: signature chain only, no TCB status)
  --policy FILE         JSON/YAML TDX policy (a top-level "tdx" section is used when present)
  --mrtd HEX            allowed MRTD (repeatable; adds to the policy's list)
  --report-data HEX     expected REPORTDATA (64 bytes)
  --at ISO-TIME         verify as of this time (certificate validity, collateral freshness)
  --simulated-root FP   also trust this simulated root (SHA-256 hex); the verdict then says simulated
  --json                print the parsed fields and every check as JSON
Exit: 0 accepted, 1 rejected (reasons printed), 2 usage or unreadable input.`;

export function loadTdxPolicy(file: string): TdxPolicy {
  const text = readFlagFile("--policy", file).toString("utf8");
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new UsageError(`--policy ${file}: not JSON/YAML (${(e as Error).message})`);
  }
  try {
    // A whole policy document (snp/tdx/azure sections) or a bare TDX section.
    const o = doc && typeof doc === "object" && !Array.isArray(doc) ? (doc as Record<string, unknown>) : undefined;
    if (o && ["snp", "tdx", "azure", "requireReportDataBinding"].some((k) => k in o)) {
      const p = parsePolicy(o);
      return { ...(p.tdx ?? {}), ...(p.requireReportDataBinding ? { requireReportData: true } : {}) };
    }
    return checkTdxPolicy(doc ?? {}, `--policy ${file}`);
  } catch (e) {
    throw new UsageError(`--policy ${file}: ${(e as Error).message}`);
  }
}

export function printVerdict(io: CliIo, what: string, verdict: Verdict, json: boolean): number {
  if (json) {
    io.out(JSON.stringify(verdict, null, 2));
  } else {
    const head = verdict.accepted ? "ACCEPTED" : "REJECTED";
    io.out(`${what}: ${head}${verdict.simulated ? " (SIMULATED evidence)" : ""}`);
    if (verdict.claims) {
      io.out(`  measurement ${verdict.claims.measurement}`);
      io.out(`  report_data ${verdict.claims.reportData}`);
    }
    for (const c of verdict.checks) io.out(`  [${c.ok ? "ok" : "FAIL"}] ${c.id}: ${c.detail}`);
  }
  return verdict.accepted ? Exit.ok : Exit.rejected;
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, {
    quote: { type: "string" },
    collateral: { type: "string", multiple: true },
    offline: { type: "boolean" },
    policy: { type: "string" },
    mrtd: { type: "string", multiple: true },
    "report-data": { type: "string" },
    at: { type: "string" },
    "simulated-root": { type: "string", multiple: true },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    io.out(HELP);
    return Exit.ok;
  }
  if (!values.quote) throw new UsageError(`--quote is required\n${HELP}`);
  const quote = readFlagFile("--quote", values.quote);
  const policy: TdxPolicy = values.policy ? loadTdxPolicy(values.policy) : {};
  if (values.mrtd?.length)
    policy.mrTd = [...(policy.mrTd ?? []), ...values.mrtd.map((h) => parseHexFlag("--mrtd", h, 48).toString("hex"))];
  if (values["report-data"])
    policy.reportData = parseHexFlag("--report-data", values["report-data"], 64).toString("hex");
  const now = parseDateFlag("--at", values.at);
  const collateral = collateralFromFlags(values.collateral);
  const simulatedRoots = values["simulated-root"]?.map((h) => parseHexFlag("--simulated-root", h, 32).toString("hex"));
  const verdict = await verifyTdx(quote, {
    policy,
    now,
    collateral,
    simulatedRoots,
    fetchCollateral: !values.offline && !collateral,
    explain: true,
  });
  return printVerdict(io, "TDX quote", verdict, values.json === true);
}
