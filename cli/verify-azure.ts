// `buckypaper verify azure`: verify Azure confidential VM evidence (SEV-SNP or TDX behind the paravisor):
// hardware report or TD quote, runtime claims bound to REPORT_DATA, vTPM quote by the HCL attestation key.
import YAML from "yaml";
import { parseDateFlag, parseFlags, parseHexFlag, readFlagFile } from "./args.js";
import { UsageError, type CliIo } from "./io.js";
import { collateralFromFlags, printVerdict } from "./verify-tdx.js";
import { parsePolicy, type Policy } from "../runtime/attestation/policy.js";
import { EvidenceFormatError } from "../runtime/attestation/types.js";
import {
  parseAzureEvidence,
  parseTpmQuoteFile,
  verifyAzure,
  type AzureEvidence,
} from "../runtime/attestation/azure/index.js";

const HELP = `usage: buckypaper verify azure (--evidence FILE | --hcl-report FILE --tpm-quote FILE [--td-quote FILE] [--vcek FILE])
                                [--event-log FILE] [--nonce HEX | --nonce-text TEXT] [--report-data HEX] [--amd-certs DIR] [--collateral DIR ...]
                                [--offline] [--policy FILE] [--at ISO-TIME] [--json]

  --evidence FILE     JSON evidence as produced by trustee's az-snp-vtpm / az-tdx-vtpm attesters:
                        SNP v0 {report:[HCL bytes], quote:{signature,message,pcrs}, vcek:PEM}
                        SNP v1/v2 {version, hcl_report:base64url, tpm_quote:{hex…}, vcek:base64 DER}
                        TDX v0 {hcl_report:[bytes], td_quote:[bytes], tpm_quote:{…}}
                        TDX v1 {version, hcl_report:base64url, td_quote:base64url, tpm_quote:{hex…}}
  --hcl-report FILE   raw HCL report (vTPM NV index 0x01400001)
  --tpm-quote FILE    TPM quote: JSON {signature, message, pcrs} (hex) or bincode {sig, msg, pcrs}
  --td-quote FILE     TDX: the TD quote paired with the HCL report
  --vcek FILE         SNP: VCEK PEM (optionally followed by ASK and ARK)
  --event-log FILE    the guest's TCG event log (binary_bios_measurements), read with a policy's azure.measuredBoot
  --nonce HEX         expected TPM quote extraData (the verifier's nonce); --nonce-text for a UTF-8 nonce
  --report-data HEX   expected runtime-claims user-data (the workload's REPORT_DATA binding)
  --amd-certs DIR     operator directory with AMD ARK/ASK certificates (air-gapped SNP verification)
  --collateral DIR    Intel PCS collateral for the TD quote
  --offline           no AMD KDS, no Intel PCS
  --policy FILE       JSON/YAML policy with snp / tdx / azure sections (azure.measuredBoot needs --event-log)
Exit: 0 accepted, 1 rejected (reasons printed), 2 usage or unreadable input.`;

function evidenceFromFlags(v: Record<string, string | undefined>): AzureEvidence {
  const e = evidenceFiles(v);
  return v["event-log"] ? { ...e, eventLog: readFlagFile("--event-log", v["event-log"]) } : e;
}

function evidenceFiles(v: Record<string, string | undefined>): AzureEvidence {
  try {
    if (v.evidence) {
      if (v["hcl-report"] || v["tpm-quote"] || v["td-quote"])
        throw new UsageError("--evidence excludes --hcl-report/--tpm-quote/--td-quote");
      return parseAzureEvidence(readFlagFile("--evidence", v.evidence));
    }
    if (!v["hcl-report"] || !v["tpm-quote"])
      throw new UsageError(`--evidence, or --hcl-report with --tpm-quote, is required\n${HELP}`);
    const hclReport = readFlagFile("--hcl-report", v["hcl-report"]);
    const tpmQuote = parseTpmQuoteFile(readFlagFile("--tpm-quote", v["tpm-quote"]));
    if (v["td-quote"])
      return { kind: "azure-tdx", hclReport, tpmQuote, tdQuote: readFlagFile("--td-quote", v["td-quote"]) };
    return {
      kind: "azure-snp",
      hclReport,
      tpmQuote,
      vcekChainPem: v.vcek ? readFlagFile("--vcek", v.vcek).toString("utf8") : undefined,
    };
  } catch (e) {
    // Unreadable evidence files are input errors (exit 2), not rejections.
    if (e instanceof EvidenceFormatError) throw new UsageError(e.message);
    throw e;
  }
}

function loadPolicy(file: string): Policy {
  const text = readFlagFile("--policy", file).toString("utf8");
  try {
    return parsePolicy(YAML.parse(text) ?? {});
  } catch (e) {
    throw new UsageError(`--policy ${file}: ${(e as Error).message}`);
  }
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, {
    evidence: { type: "string" },
    "hcl-report": { type: "string" },
    "tpm-quote": { type: "string" },
    "td-quote": { type: "string" },
    vcek: { type: "string" },
    "event-log": { type: "string" },
    nonce: { type: "string" },
    "nonce-text": { type: "string" },
    "report-data": { type: "string" },
    "amd-certs": { type: "string" },
    collateral: { type: "string", multiple: true },
    offline: { type: "boolean" },
    policy: { type: "string" },
    at: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  const evidence = evidenceFromFlags(values as Record<string, string | undefined>);
  const policy = values.policy ? loadPolicy(values.policy) : {};
  if (values.nonce && values["nonce-text"]) throw new UsageError("--nonce and --nonce-text are exclusive");
  const tpmNonce = values.nonce
    ? parseHexFlag("--nonce", values.nonce)
    : values["nonce-text"] !== undefined
      ? Buffer.from(values["nonce-text"], "utf8")
      : undefined;
  const expectedReportData = values["report-data"]
    ? parseHexFlag("--report-data", values["report-data"], 64)
    : undefined;
  const now = parseDateFlag("--at", values.at);
  const collateral = collateralFromFlags(values.collateral);
  const verdict = await verifyAzure(evidence, policy, {
    now,
    tpmNonce,
    expectedReportData,
    explain: true,
    trust: {
      snp: { certDir: values["amd-certs"], kds: values.offline ? undefined : {} },
      tdx: { collateral, fetchCollateral: !values.offline && !collateral },
    },
  });
  return printVerdict(
    io,
    `Azure ${evidence.kind === "azure-snp" ? "SEV-SNP" : "TDX"} CVM evidence`,
    verdict,
    values.json === true,
  );
}
