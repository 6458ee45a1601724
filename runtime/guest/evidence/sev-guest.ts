// SEV-SNP through the legacy /dev/sev-guest device (kernels before configfs-tsm, e.g. AWS images
// with 5.19-6.6 kernels): SNP_GET_EXT_REPORT via the python3 helper in sev-guest-helper.ts.
import { stat } from "node:fs/promises";
import { SEV_GUEST_HELPER } from "./sev-guest-helper.js";
import { EvidenceError, b64, type EvidenceProvider } from "./types.js";
import { type CommandRunner, spawnRunner } from "../exec.js";

const NAME = "sev-guest";

export interface SevGuestOptions {
  device: string;
  python?: string;
  runner?: CommandRunner;
}

export function sevGuestProvider(o: SevGuestOptions): EvidenceProvider {
  const runner = o.runner ?? spawnRunner;
  const python = o.python ?? "python3";
  return {
    name: NAME,
    async available() {
      try {
        return (await stat(o.device)).isCharacterDevice();
      } catch {
        return false;
      }
    },
    async collect(reportData) {
      if (reportData.length !== 64)
        throw new EvidenceError(NAME, "request", `REPORT_DATA must be 64 bytes, got ${reportData.length}`);
      const r = await runner.run([python, "-c", SEV_GUEST_HELPER, o.device], {
        stdin: Buffer.from(reportData.toString("hex") + "\n"),
      });
      let res: { report?: string; certs?: string; error?: string; fw_error?: number; vmm_error?: number };
      try {
        res = JSON.parse(r.stdout.toString("utf8"));
      } catch {
        throw new EvidenceError(
          NAME,
          "helper",
          `python3 helper failed (exit ${r.code}): ${r.stderr.toString("utf8").trim().split("\n").pop() ?? ""}`,
        );
      }
      if (r.code !== 0 || !res.report) {
        const fw =
          res.fw_error !== undefined
            ? ` fw_error=0x${res.fw_error.toString(16)} vmm_error=0x${(res.vmm_error ?? 0).toString(16)}`
            : "";
        throw new EvidenceError(NAME, "ioctl", `${res.error ?? "no report"}${fw}`);
      }
      const certs = Buffer.from(res.certs ?? "", "hex");
      return {
        kind: "snp",
        report: b64(Buffer.from(res.report, "hex")),
        ...(certs.some((x) => x !== 0) ? { cert_table: b64(certs) } : {}),
      };
    },
  };
}
