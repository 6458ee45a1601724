// Azure measured boot over events (policy azure.measuredBoot). The AK is the paravisor's vTPM key, bound to the
// hardware report through the HCL's runtime claims (verify.ts), and its quote is nonce-bound; what it cannot say by
// itself is *what* booted — PCR values are opaque. So the guest's TCG event log (binary_bios_measurements, unsigned)
// must replay to exactly the quoted SHA-256 PCRs, and then the same measured-boot policy as on AWS/GCE
// (tpm/boot-policy.ts: PCR 4 boot applications, command line, initrd, PCR 7 Secure Boot state and db authorities) is
// applied to its events — the shared replay and policy code, with the same check ids (tpm.event-log,
// tpm.event-log-replay, boot.*). Events are believed only for PCRs the verified quote covers and the log replays to.
import type { Check } from "../types.js";
import type { TpmsAttest } from "../tpm/abi.js";
import { appraiseMeasuredBoot, type MeasuredBootPolicy } from "../tpm/boot-policy.js";
import { replayAgreement, replayForQuote, type TpmVerification } from "../tpm/verify.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/**
 * `attest` is the TPMS_ATTEST of a quote whose signature (HCL AK), nonce and PCR digest all verified — undefined
 * otherwise, and then no event is believed. `pcrs` are the quote's SHA-256 values (index → 32 bytes).
 */
export function appraiseAzureMeasuredBoot(
  eventLog: Uint8Array | undefined,
  attest: TpmsAttest | undefined,
  pcrs: Record<number, Uint8Array>,
  policy: MeasuredBootPolicy,
): Check[] {
  if (!attest)
    return [
      { id: "boot.event-log", ok: false, detail: "the vTPM quote did not verify: no boot event can be believed" },
    ];
  // Azure evidence carries one PCR value per index (the SHA-256 bank, what the enclaivelet quotes): a quote over
  // another bank would leave the log's replay in that bank uncompared, so it is refused rather than half-read.
  const other = attest.pcrSelections.filter((s) => s.hash !== "sha256" && s.pcrs.length > 0);
  if (other.length)
    return [
      {
        id: "tpm.event-log-replay",
        ok: false,
        detail: `the quote selects ${other.map((s) => s.hash).join(", ")} PCRs; Azure evidence carries SHA-256 PCR values only`,
      },
    ];
  const checks: Check[] = [];
  const r = replayForQuote(eventLog, attest, true);
  checks.push(r.check);
  const quoted: Record<number, string> = {};
  for (const sel of attest.pcrSelections) for (const i of sel.pcrs) if (pcrs[i]) quoted[i] = hex(pcrs[i]);
  const v: TpmVerification = { checks: [], attest, log: r.log, quotedPcrs: { sha256: quoted }, replayed: {} };
  if (r.log && r.replay) {
    const a = replayAgreement(r.log, r.replay, attest, { sha256: pcrs });
    checks.push(a.check);
    if (a.check.ok) v.replayed = a.agreed;
  }
  checks.push(...appraiseMeasuredBoot(v, policy));
  return checks;
}
