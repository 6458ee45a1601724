// Azure confidential VMs (DCasv5/ECasv5 SNP, DCesv5 TDX): the guest has no /dev/sev-guest and no
// control over the hardware REPORT_DATA. The paravisor keeps an "HCL report" in vTPM NV index
// 0x01400001 (hardware report + runtime-claims JSON holding the vTPM attestation key) and refreshes
// it when the guest writes 64 bytes of user data to NV index 0x01400002 (they appear as the claims'
// "user-data"). Freshness and our key binding then ride on a TPM2_Quote by that attestation key:
//   NV 0x01400002 ← REPORT_DATA;  quote qualifying data = SHA-256(REPORT_DATA) (binding.ts azureQuoteExtraData:
//   fits every TPM's TPM2B_DATA);  PCRs 0-23 of the SHA-256 bank. REPORT_DATA is binding.ts reportDataFor(nonce, key,
//   user-data hash), so the AK-signed quote binds Nitride's nonce, our key and the user-data we measured.
// The TCG event log (binary_bios_measurements) rides along, as on AWS/GCE (vtpm.ts): the verifier replays it to the
// quoted PCRs and reads the boot's events (azure.measuredBoot: the UKI in PCR 4, Secure Boot's db authority in PCR
// 7). A kernel without it (no securityfs log) sends none; a policy that needs it then refuses (tpm.event-log).
// For TDX the TDREPORT inside is only MAC'd, so a TD quote is fetched from Azure IMDS as well.
// Everything goes through tpm2-tools (installed by cloud-init `packages: [tpm2-tools]`).
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { EvidenceError, b64, type EvidenceProvider, type WireEvidence } from "./types.js";
import { type CommandRunner, spawnRunner } from "../exec.js";
import { azureQuoteExtraData } from "../../attestation/binding.js";
import { EVENT_LOG_PATH } from "./vtpm.js";

const NAME = "azure";
export const HCL_REPORT_NV_INDEX = "0x01400001";
export const HCL_USERDATA_NV_INDEX = "0x01400002";
export const AZURE_AK_HANDLE = "0x81000003";
export const PCR_SELECTION = `sha256:${Array.from({ length: 24 }, (_, i) => i).join(",")}`;
const IMDS_TD_QUOTE = "http://169.254.169.254/acc/tdquote";

export interface AzureOptions {
  tpmDevice: string;
  runner?: CommandRunner;
  /** Polls for the refreshed HCL report (the paravisor updates it asynchronously). */
  refreshAttempts?: number;
  refreshDelayMs?: number;
  fetchTdQuote?: (tdReport: Buffer) => Promise<Buffer>;
  /** The TCG event log (default /sys/kernel/security/tpm0/binary_bios_measurements). */
  eventLogPath?: string;
}

/** The event log's bytes, or undefined when the kernel publishes none (ENOENT); other read errors are errors. */
async function readEventLog(file: string): Promise<Buffer | undefined> {
  try {
    const b = await readFile(file);
    return b.length ? b : undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new EvidenceError(NAME, "event-log", `cannot read the TCG event log: ${(e as Error).message}`);
  }
}

export function azureCommands(tcti: string) {
  const t = ["-T", `device:${tcti}`];
  return {
    probe: ["tpm2_nvreadpublic", ...t, HCL_REPORT_NV_INDEX],
    userDataDefined: ["tpm2_nvreadpublic", ...t, HCL_USERDATA_NV_INDEX],
    defineUserData: [
      "tpm2_nvdefine",
      ...t,
      "-C",
      "o",
      "-s",
      "64",
      "-a",
      "ownerread|ownerwrite|authread|authwrite",
      HCL_USERDATA_NV_INDEX,
    ],
    writeUserData: ["tpm2_nvwrite", ...t, "-C", "o", "-i", "-", HCL_USERDATA_NV_INDEX],
    readReport: (out: string) => ["tpm2_nvread", ...t, "-C", "o", "-o", out, HCL_REPORT_NV_INDEX],
    quote: (qualifying: string, msg: string, sig: string) => [
      "tpm2_quote",
      ...t,
      "-c",
      AZURE_AK_HANDLE,
      "-l",
      PCR_SELECTION,
      "-q",
      qualifying,
      "-m",
      msg,
      "-s",
      sig,
      "-f",
      "plain",
      "-g",
      "sha256",
    ],
    pcrRead: (out: string) => ["tpm2_pcrread", ...t, PCR_SELECTION, "-o", out],
  };
}

/** The HCL report's IGVM request header and runtime-claims JSON (offsets in azure-gcp-evidence.md). */
export function parseHclReport(buf: Buffer): {
  reportType: "snp" | "tdx";
  hardwareReport: Buffer;
  runtimeClaims: Record<string, unknown>;
} {
  if (buf.length < 0x4d4 || buf.subarray(0, 4).toString("latin1") !== "HCLA")
    throw new EvidenceError(NAME, "hcl-report", "not an HCL report (no 'HCLA' signature)");
  const type = buf.readUInt32LE(0x4c0 + 8);
  const varSize = buf.readUInt32LE(0x4c0 + 16);
  if (0x4d4 + varSize > buf.length)
    throw new EvidenceError(NAME, "hcl-report", `runtime claims (${varSize} B) overrun the report`);
  const reportType = type === 2 ? "snp" : type === 4 ? "tdx" : undefined;
  if (!reportType) throw new EvidenceError(NAME, "hcl-report", `unknown report type ${type}`);
  let runtimeClaims: Record<string, unknown>;
  try {
    runtimeClaims = JSON.parse(
      buf
        .subarray(0x4d4, 0x4d4 + varSize)
        .toString("utf8")
        .replace(/\0+$/, ""),
    );
  } catch {
    throw new EvidenceError(NAME, "hcl-report", "runtime claims are not JSON");
  }
  return { reportType, hardwareReport: buf.subarray(0x20, 0x20 + (reportType === "snp" ? 1184 : 1024)), runtimeClaims };
}

export function azureProvider(o: AzureOptions): EvidenceProvider {
  const runner = o.runner ?? spawnRunner;
  const cmd = azureCommands(o.tpmDevice);
  const attempts = o.refreshAttempts ?? 10;
  const delayMs = o.refreshDelayMs ?? 1000;

  async function tpm(argv: string[], stdin?: Buffer): Promise<void> {
    const r = await runner.run(argv, { stdin, timeoutMs: 30_000 });
    if (r.code !== 0)
      throw new EvidenceError(
        NAME,
        argv[0],
        `exit ${r.code}: ${r.stderr.toString("utf8").trim().split("\n").pop() ?? ""}`,
      );
  }

  return {
    name: NAME,
    async available() {
      const r = await runner.run(cmd.probe, { timeoutMs: 10_000 }).catch(() => undefined);
      return r?.code === 0;
    },
    async collect(reportData) {
      if (reportData.length !== 64)
        throw new EvidenceError(NAME, "user-data", `REPORT_DATA must be 64 bytes, got ${reportData.length}`);
      const dir = await mkdtemp(path.join(tmpdir(), "enclaivelet-azure-"));
      try {
        if ((await runner.run(cmd.userDataDefined)).code !== 0) await tpm(cmd.defineUserData);
        await tpm(cmd.writeUserData, reportData);
        const want = reportData.toString("hex").toLowerCase();
        let hcl: Buffer | undefined;
        let parsed: ReturnType<typeof parseHclReport> | undefined;
        for (let i = 0; i < attempts; i++) {
          const f = path.join(dir, `hcl-${i}.bin`);
          await tpm(cmd.readReport(f));
          hcl = await readFile(f);
          parsed = parseHclReport(hcl);
          if (String(parsed.runtimeClaims["user-data"] ?? "").toLowerCase() === want) break;
          parsed = undefined;
          await new Promise((r) => setTimeout(r, delayMs));
        }
        if (!hcl || !parsed)
          throw new EvidenceError(
            NAME,
            "hcl-report",
            `the paravisor did not refresh the report with our user data after ${attempts} reads`,
          );
        const msg = path.join(dir, "quote.msg"),
          sig = path.join(dir, "quote.sig"),
          pcrFile = path.join(dir, "pcrs.bin");
        const qualifying = azureQuoteExtraData(reportData).toString("hex");
        await tpm(cmd.quote(qualifying, msg, sig));
        await tpm(cmd.pcrRead(pcrFile));
        const pcrBytes = await readFile(pcrFile);
        if (pcrBytes.length !== 24 * 32)
          throw new EvidenceError(NAME, "tpm2_pcrread", `expected 24 SHA-256 values, got ${pcrBytes.length} bytes`);
        const pcrs: Record<string, string> = {};
        for (let i = 0; i < 24; i++) pcrs[String(i)] = b64(pcrBytes.subarray(i * 32, i * 32 + 32));
        const tpmQuote = { message: b64(await readFile(msg)), signature: b64(await readFile(sig)), pcrs };
        // The firmware's log is complete at ExitBootServices (IMA keeps its own), so it matches the quoted PCRs.
        const eventLog = await readEventLog(o.eventLogPath ?? EVENT_LOG_PATH);
        const log = eventLog ? { event_log: b64(eventLog) } : {};
        if (parsed.reportType === "snp")
          return { kind: "azure-snp", hcl_report: b64(hcl), tpm_quote: tpmQuote, ...log } satisfies WireEvidence;
        const tdQuote = await (o.fetchTdQuote ?? imdsTdQuote)(parsed.hardwareReport);
        return {
          kind: "azure-tdx",
          hcl_report: b64(hcl),
          td_quote: b64(tdQuote),
          tpm_quote: tpmQuote,
          ...log,
        } satisfies WireEvidence;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Azure IMDS turns a TDREPORT into a TD quote (the platform's quoting enclave). */
async function imdsTdQuote(tdReport: Buffer): Promise<Buffer> {
  const res = await fetch(IMDS_TD_QUOTE, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ report: tdReport.toString("base64url") }),
    signal: AbortSignal.timeout(30_000),
  }).catch((e: Error) => {
    throw new EvidenceError(NAME, "imds-tdquote", e.message);
  });
  if (!res.ok) throw new EvidenceError(NAME, "imds-tdquote", `HTTP ${res.status}`);
  const body = (await res.json()) as { quote?: string };
  if (!body.quote) throw new EvidenceError(NAME, "imds-tdquote", "no quote in the answer");
  return Buffer.from(body.quote, "base64url");
}
