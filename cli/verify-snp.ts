// `buckypaper verify snp`: verify an AMD SEV-SNP attestation report and appraise it against a policy.
import { existsSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import YAML from "yaml";
import { parseDateFlag, parseFlags, parseHexFlag, readFlagFile } from "./args.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import { appraise } from "../runtime/attestation/appraise.js";
import {
  PolicyError,
  parsePolicy,
  type Policy,
  type SimulatedSnpAnchor,
  type SnpTrustConfig,
} from "../runtime/attestation/policy.js";
import {
  decodeTcb,
  parseReport,
  productFromName,
  type SnpProduct,
  type SnpReport,
} from "../runtime/attestation/snp/abi.js";
import { asCaCert, parseCert, splitCertificates } from "../runtime/attestation/snp/certs.js";
import type { Verdict } from "../runtime/attestation/types.js";

const HELP = `usage: buckypaper verify snp --report FILE [--vek FILE] [--ca FILE ...] [--certs-from-table FILE]
                              [--product milan|genoa|turin] [--offline] [--policy FILE] [--measurement HEX ...]
                              [--report-data HEX] [--cert-dir DIR] [--kds-cache DIR] [--crl FILE ...]
                              [--at ISO-TIME] [--simulated-ca FILE ...] [--json]

  --report FILE           ATTESTATION_REPORT (0x4A0 bytes, raw)
  --vek FILE              VCEK or VLEK certificate (DER or PEM)
  --ca FILE               PEM/DER with ASK/ASVK/ARK (repeatable, any order)
  --certs-from-table FILE extended-report certificate table (SNP_GET_EXT_REPORT certs, configfs-tsm auxblob)
  --product NAME          product of a v2 report whose VEK does not name it
  --offline               never contact the AMD KDS (use only the evidence, --ca, --cert-dir and the cache)
  --policy FILE           JSON/YAML policy (top-level "snp" section, or the SNP fields directly)
  --measurement HEX       allowed MEASUREMENT (48 bytes; repeatable, adds to the policy's list)
  --report-data HEX       expected REPORT_DATA (up to 64 bytes, zero-padded)
  --cert-dir DIR          operator directory with ARK/ASK/ASVK certificates and *.crl files
  --kds-cache DIR         KDS cache (default $XDG_CACHE_HOME/buckypaper/kds or ~/.cache/buckypaper/kds)
  --crl FILE              CRL (DER/PEM) to apply (repeatable)
  --at ISO-TIME           verify as of this time (certificate validity); default now
  --simulated-ca FILE     trust the simulated ARK in FILE (from 'buckypaper simulate snp'); verdicts say simulated
  --json                  print the parsed fields and every check as JSON
Roots: only the AMD ARKs pinned by SHA-256 fingerprint (Milan, Genoa, Turin) are trusted.
Exit: 0 accepted, 1 rejected (reasons printed), 2 usage or unreadable input.`;

function loadPolicy(file: string): Policy {
  const text = readFlagFile("--policy", file).toString("utf8");
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new UsageError(`--policy ${file}: not JSON/YAML (${(e as Error).message})`);
  }
  const root =
    doc && typeof doc === "object" && ("snp" in doc || "tdx" in doc || "requireReportDataBinding" in doc)
      ? doc
      : { snp: doc ?? {} };
  try {
    return parsePolicy(root);
  } catch (e) {
    if (e instanceof PolicyError) throw new UsageError(`--policy ${file}: ${e.message}`);
    throw e;
  }
}

function simulatedAnchors(files: string[]): SimulatedSnpAnchor[] {
  return files.map((file) => {
    let ders: Uint8Array[];
    try {
      ders = splitCertificates(readFlagFile("--simulated-ca", file));
    } catch (e) {
      throw new UsageError(`--simulated-ca ${file}: ${(e as Error).message}`);
    }
    const cas = ders.map((d) => asCaCert(parseCert(d)));
    const ark = cas.find((c) => c?.role === "ark");
    if (!ark) throw new UsageError(`--simulated-ca ${file}: no ARK-<product> certificate in the file`);
    return { simulated: true, product: ark.product, arkSha256: ark.sha256, caCerts: ders };
  });
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** JSON-friendly fields of a parsed report (TCBs decoded when the product is known). */
function reportFields(r: SnpReport, product: SnpProduct | undefined): Record<string, unknown> {
  const tcb = (b: Uint8Array) => (product ? { raw: hex(b), ...decodeTcb(b, product) } : { raw: hex(b) });
  return {
    version: r.version,
    guestSvn: r.guestSvn,
    policy: "0x" + r.policy.toString(16),
    policyBits: r.policyBits,
    familyId: hex(r.familyId),
    imageId: hex(r.imageId),
    vmpl: r.vmpl,
    signatureAlgo: r.signatureAlgo,
    currentTcb: tcb(r.currentTcb),
    platformInfo: "0x" + r.platformInfo.toString(16),
    authorKeyEn: r.authorKeyEn,
    maskChipKey: r.maskChipKey,
    signingKey: r.signingKey,
    reportData: hex(r.reportData),
    measurement: hex(r.measurement),
    hostData: hex(r.hostData),
    idKeyDigest: hex(r.idKeyDigest),
    authorKeyDigest: hex(r.authorKeyDigest),
    reportId: hex(r.reportId),
    reportIdMa: hex(r.reportIdMa),
    reportedTcb: tcb(r.reportedTcb),
    ...(r.cpuid ? { cpuid: r.cpuid } : {}),
    chipId: hex(r.chipId),
    committedTcb: tcb(r.committedTcb),
    currentVersion: r.currentVersion,
    committedVersion: r.committedVersion,
    launchTcb: tcb(r.launchTcb),
    ...(r.launchMitVector !== undefined
      ? {
          launchMitVector: "0x" + r.launchMitVector.toString(16),
          currentMitVector: "0x" + r.currentMitVector!.toString(16),
        }
      : {}),
    signature: { r: hex(r.signatureR), s: hex(r.signatureS) },
  };
}

function print(
  io: CliIo,
  verdict: Verdict,
  report: Uint8Array,
  product: SnpProduct | undefined,
  json: boolean,
): number {
  if (json) {
    let fields: Record<string, unknown> | null;
    try {
      fields = reportFields(parseReport(report), (verdict.claims?.product as SnpProduct | undefined) ?? product);
    } catch {
      fields = null; // the report does not parse: the checks say why
    }
    io.out(
      JSON.stringify(
        {
          kind: "snp",
          accepted: verdict.accepted,
          simulated: verdict.simulated,
          evidenceDigest: verdict.evidenceDigest,
          fields,
          checks: verdict.checks,
          claims: verdict.claims,
        },
        null,
        2,
      ),
    );
  } else {
    io.out(
      `SEV-SNP report: ${verdict.accepted ? "ACCEPTED" : "REJECTED"}${verdict.simulated ? " (SIMULATED evidence)" : ""}`,
    );
    if (verdict.claims) {
      io.out(`  product     ${verdict.claims.product}`);
      io.out(`  measurement ${verdict.claims.measurement}`);
      io.out(`  report_data ${verdict.claims.reportData}`);
      io.out(
        `  tcb         ${Object.entries(verdict.claims.tcb)
          .map(([k, v]) => `${k}=${v}`)
          .join(" ")}`,
      );
    }
    for (const c of verdict.checks) io.out(`  [${c.ok ? "ok" : "FAIL"}] ${c.id}: ${c.detail}`);
  }
  return verdict.accepted ? Exit.ok : Exit.rejected;
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, {
    report: { type: "string" },
    vek: { type: "string" },
    ca: { type: "string", multiple: true },
    "certs-from-table": { type: "string" },
    product: { type: "string" },
    offline: { type: "boolean" },
    policy: { type: "string" },
    measurement: { type: "string", multiple: true },
    "report-data": { type: "string" },
    "cert-dir": { type: "string" },
    "kds-cache": { type: "string" },
    crl: { type: "string", multiple: true },
    at: { type: "string" },
    "simulated-ca": { type: "string", multiple: true },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    io.out(HELP);
    return Exit.ok;
  }
  if (!values.report) throw new UsageError(`--report is required\n${HELP}`);
  const report = readFlagFile("--report", values.report);
  const vek = values.vek ? readFlagFile("--vek", values.vek) : undefined;
  const caChain = (values.ca ?? []).map((f) => readFlagFile("--ca", f));
  const certTable = values["certs-from-table"]
    ? readFlagFile("--certs-from-table", values["certs-from-table"])
    : undefined;
  let product: SnpProduct | undefined;
  if (values.product) {
    product = productFromName(values.product);
    if (!product) throw new UsageError(`--product: '${values.product}' is not milan, genoa or turin`);
  }
  const policy: Policy = values.policy ? loadPolicy(values.policy) : { snp: {} };
  policy.snp ??= {};
  if (values.measurement?.length) {
    policy.snp.measurements = [
      ...(policy.snp.measurements ?? []),
      ...values.measurement.map((h) => parseHexFlag("--measurement", h, 48).toString("hex")),
    ];
  }
  let expectedReportData: Uint8Array | undefined;
  if (values["report-data"]) {
    expectedReportData = parseHexFlag("--report-data", values["report-data"]);
    if (expectedReportData.length === 0 || expectedReportData.length > 64)
      throw new UsageError("--report-data: expected 1..64 bytes of hex");
  }
  const now = parseDateFlag("--at", values.at);
  const cacheDir =
    values["kds-cache"] ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "buckypaper", "kds");
  const trust: SnpTrustConfig = {
    kds: { cacheDir, offline: values.offline === true },
    crls: (values.crl ?? []).map((f) => readFlagFile("--crl", f)),
    simulated: simulatedAnchors(values["simulated-ca"] ?? []),
  };
  if (values["cert-dir"]) {
    if (!existsSync(values["cert-dir"]) || !statSync(values["cert-dir"]).isDirectory())
      throw new UsageError(`--cert-dir ${values["cert-dir"]}: not a directory`);
    trust.certDir = values["cert-dir"];
  }
  const verdict = await appraise({ kind: "snp", report, vek, caChain, certTable }, policy, {
    trust: { snp: trust },
    now,
    expectedReportData,
    snpProduct: product,
  });
  return print(io, verdict, report, product, values.json === true);
}
