// A runtime whose attested TLS carries the vTPM half: a real software TPM (swtpm) whose PCRs were extended with a
// synthetic measured boot (tpm-fixtures.ts buildBootLog) and whose event log file says so, named in the config's
// `attestation "simulated" { vtpm { tcti event_log } }` — the path a cloud runtime takes with /dev/tpmrm0.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Vtpm } from "../../runtime/guest/evidence/vtpm.js";
import { SwTpm } from "../support/swtpm.js";
import { buildBootLog, type BootSpec } from "./attestation/tpm-fixtures.js";

export interface BootedTpm {
  tpm: SwTpm;
  /** The collector over this TPM (as the runtime's config names it). */
  vtpm: Vtpm;
  eventLog: string;
  /** SHA-256 (hex) of the AK's TPM2B_PUBLIC: what REPORT_DATA binds and vtpm.akPins lists. */
  akSha256: string;
  /** The `vtpm { … }` block for the runtime's attestation stanza. */
  stanza: string;
  stop(): Promise<void>;
}

/** A swtpm "booted" with `spec`'s measured boot: every event extended into its PCRs, the log written to a file. */
export async function bootTpm(spec: BootSpec = {}): Promise<BootedTpm> {
  const tpm = await SwTpm.start();
  const boot = buildBootLog(spec);
  for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
  const dir = mkdtempSync(path.join(tmpdir(), "bp-rt-evlog-"));
  const eventLog = path.join(dir, "binary_bios_measurements");
  writeFileSync(eventLog, boot.log);
  const vtpm = new Vtpm({ tcti: tpm.tcti, eventLogPath: eventLog });
  const ak = await vtpm.attestationKey();
  return {
    tpm,
    vtpm,
    eventLog,
    akSha256: createHash("sha256").update(ak).digest("hex"),
    stanza: `vtpm {\n tcti = "${tpm.tcti}"\n event_log = "${eventLog}"\n }`,
    stop: async () => {
      await tpm.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The measured-boot policy the synthetic boot meets (what images/ predictFromDisk gives for the kit's image). */
export const goodBootPolicy = () => buildBootLog().policy;
