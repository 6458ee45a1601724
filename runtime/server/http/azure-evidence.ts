// The runtime's own evidence on an Azure confidential VM (`attestation "azure" { device = "/dev/tpmrm0" }`). The guest
// has no /dev/sev-guest and cannot choose the hardware REPORT_DATA: the paravisor signs runtime claims (the vTPM's
// attestation key, vm-configuration, and 64 bytes of user-data the guest wrote to NV 0x01400002) and puts their
// SHA-256 into the SNP report it keeps in NV 0x01400001 (the HCL report). The attested-TLS binding
// (binding.ts runtimeTlsReportData: the verifier's nonce, the listener key's SPKI, the instance id) therefore goes in
// twice, by the enclaivelet's own collector (runtime/guest/evidence/azure.ts, reused rather than copied):
//   NV 0x01400002 ← REPORT_DATA        → the hardware-signed claims' "user-data"
//   TPM2_Quote(AK 0x81000003, qualifying data = SHA-256(REPORT_DATA), PCRs 0-23)  → freshness under the claims' AK
// and the TCG event log with it, which a verifier replays to the quoted PCRs to read what booted (azure.measuredBoot).
// A verifier checks both (runtime/client/attested-tls.ts → runtime/attestation/azure).
// One conversation at a time: the user-data NV index is one per VM, so two concurrent requests would overwrite each
// other's binding and each wait for a report the paravisor never publishes (availability, not trust: a report with
// another binding is refused by the verifier, and the collector itself waits for its own user-data).
// The VCEK certificate chain is fetched from the VM's metadata service (Azure's THIM cache of AMD's KDS) when it
// answers, so a verifier needs no KDS round trip; it is untrusted input either way (verified to the AMD root).
import { azureProvider } from "../../guest/evidence/azure.js";
import type { CommandRunner } from "../../guest/exec.js";
import type { WireEvidence } from "../../protocol/evidence.js";

/** Azure IMDS: the VCEK of this VM's chip and TCB, with the ASK/ARK chain (PEM), as Azure's THIM caches them. */
const THIM_URL = "http://169.254.169.254/metadata/THIM/amd/certification";

export interface AzureRuntimeSourceOptions {
  /** The vTPM device tpm2-tools opens (`-T device:<path>`). */
  device: string;
  runner?: CommandRunner;
  refreshDelayMs?: number;
  /** The TCG event log sent with the quote (default the kernel's binary_bios_measurements). */
  eventLog?: string;
  /** The VCEK chain (PEM) for the report, or undefined; default: Azure IMDS THIM, best effort. */
  fetchVcekChain?: () => Promise<string | undefined>;
}

/** The shape of attested-tls.ts RuntimeEvidenceSource (kept structural: this module does not import it). */
export interface AzureRuntimeSource {
  readonly name: string;
  collect(reportData: Buffer): Promise<WireEvidence>;
}

export function azureRuntimeSource(o: AzureRuntimeSourceOptions): AzureRuntimeSource {
  const provider = azureProvider({
    tpmDevice: o.device,
    ...(o.runner ? { runner: o.runner } : {}),
    ...(o.refreshDelayMs !== undefined ? { refreshDelayMs: o.refreshDelayMs } : {}),
    ...(o.eventLog ? { eventLogPath: o.eventLog } : {}),
  });
  const vcek = o.fetchVcekChain ?? thimVcekChain;
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    name: `azure (HCL report, ${o.device})`,
    collect: (reportData) =>
      serial(async () => {
        const e = await provider.collect(reportData);
        if (e.kind !== "azure-snp") return e;
        if (e.vcek_chain_pem) return e;
        const pem = await vcek().catch(() => undefined);
        return pem ? { ...e, vcek_chain_pem: pem } : e;
      }),
  };
}

/** Best effort: IMDS answers only inside an Azure VM; anything else leaves the chain to the verifier (KDS). */
async function thimVcekChain(): Promise<string | undefined> {
  const res = await fetch(THIM_URL, { headers: { Metadata: "true" }, signal: AbortSignal.timeout(5_000) });
  if (!res.ok) return undefined;
  const body = (await res.json()) as { vcekCert?: unknown; certificateChain?: unknown };
  if (typeof body.vcekCert !== "string" || !body.vcekCert.includes("-----BEGIN CERTIFICATE-----")) return undefined;
  const chain = typeof body.certificateChain === "string" ? body.certificateChain : "";
  return `${body.vcekCert.trim()}\n${chain.trim()}\n`;
}
