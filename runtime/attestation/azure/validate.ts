// Azure-specific policy: vTPM PCR values, the measured-boot policy over events (the same type as AWS/GCE's
// vtpm.measuredBoot, appraised by azure/boot.ts) and the paravisor's vm-configuration claims. The hardware parts
// (SNP report, TD quote) are judged by the SNP and TDX policies.
import type { Check } from "../types.js";
import type { MeasuredBootPolicy } from "../tpm/boot-policy.js";
import { parseMeasuredBootPolicy, VtpmPolicyError } from "../tpm/policy.js";

export interface AzurePolicy {
  /** Allowed values per PCR index (SHA-256 bank, 32-byte hex). Only quoted PCRs can satisfy this. */
  pcrs?: Record<string, string[]>;
  /**
   * Events the boot must show (tpm/boot-policy.ts, as vtpm.measuredBoot on AWS/GCE): the evidence's TCG event log
   * must replay to the PCRs of the HCL-bound AK's quote, then boot applications (PCR 4), command line, initrd and
   * Secure Boot state/authorities (PCR 7) are read from its events. Bank sha256 only (what the Azure quote carries).
   */
  measuredBoot?: MeasuredBootPolicy;
  /** Require vm-configuration."secure-boot" = true. Default false (not constrained). */
  requireSecureBoot?: boolean;
  /** Refuse vm-configuration."console-enabled" = true. Default false (not constrained). */
  forbidConsole?: boolean;
  /**
   * Allowed vm-configuration."vmUniqueId" values (the VM's id, compared case-insensitively): names the instance the
   * deployer created (the Azure API's vmId), so a VM another party launched from the same image and paravisor is
   * refused. The paravisor takes it from the host's VM configuration: it separates tenants, not the cloud operator.
   */
  vmUniqueIds?: string[];
}

export function parseAzurePolicy(v: unknown, field = "azure"): AzurePolicy {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`policy ${field}: expected an object`);
  const out: AzurePolicy = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (k === "pcrs") {
      if (typeof x !== "object" || x === null || Array.isArray(x))
        throw new Error(`policy ${field}.pcrs: expected {"<index>": [hex, …]}`);
      out.pcrs = {};
      for (const [i, list] of Object.entries(x as Record<string, unknown>)) {
        if (!/^(?:[0-9]|1[0-9]|2[0-3])$/.test(i)) throw new Error(`policy ${field}.pcrs.${i}: PCR index must be 0..23`);
        if (!Array.isArray(list) || !list.every((h) => typeof h === "string" && /^(0x)?[0-9a-fA-F]{64}$/.test(h))) {
          throw new Error(`policy ${field}.pcrs.${i}: expected a list of 32-byte hex values`);
        }
        out.pcrs[i] = list.map((h: string) => h.toLowerCase().replace(/^0x/, ""));
      }
    } else if (k === "measuredBoot") {
      try {
        out.measuredBoot = parseMeasuredBootPolicy(x, `${field}.measuredBoot`);
      } catch (e) {
        if (e instanceof VtpmPolicyError) throw new Error(`policy ${e.message}`, { cause: e });
        throw e;
      }
      if ((out.measuredBoot.bank ?? "sha256") !== "sha256")
        throw new Error(
          `policy ${field}.measuredBoot.bank: must be sha256 (the Azure vTPM quote carries the SHA-256 bank only)`,
        );
    } else if (k === "vmUniqueIds") {
      if (
        !Array.isArray(x) ||
        x.length === 0 ||
        !x.every((u) => typeof u === "string" && /^[0-9a-fA-F-]{32,36}$/.test(u))
      )
        throw new Error(`policy ${field}.vmUniqueIds: expected a non-empty list of VM ids (GUIDs)`);
      out.vmUniqueIds = x.map((u: string) => u.toLowerCase());
    } else if (k === "requireSecureBoot" || k === "forbidConsole") {
      if (typeof x !== "boolean") throw new Error(`policy ${field}.${k}: expected true or false`);
      out[k] = x;
    } else throw new Error(`policy ${field}.${k}: unknown field`);
  }
  return out;
}

/** `quotedPcrs` holds only PCRs covered by a verified quote digest. */
export function validateAzure(
  quotedPcrs: Record<string, string>,
  vmConfig: Record<string, unknown> | undefined,
  p: AzurePolicy = {},
): Check[] {
  const checks: Check[] = [];
  for (const [i, allowed] of Object.entries(p.pcrs ?? {})) {
    const actual = quotedPcrs[i];
    const ok = actual !== undefined && allowed.includes(actual);
    checks.push({
      id: `policy.pcr${i}`,
      ok,
      detail:
        actual === undefined
          ? `PCR ${i} is not covered by the verified TPM quote`
          : ok
            ? `PCR ${i} ${actual} is allowed`
            : `PCR ${i} ${actual} is not among the ${allowed.length} allowed value(s)`,
    });
  }
  if (p.vmUniqueIds) {
    const id = vmConfig?.["vmUniqueId"];
    const ok = typeof id === "string" && p.vmUniqueIds.includes(id.toLowerCase());
    checks.push({
      id: "policy.vm-unique-id",
      ok,
      detail: ok
        ? `vm-configuration names the expected VM ${String(id)}`
        : `vm-configuration names VM ${typeof id === "string" ? id : "(none)"}, not the expected ${p.vmUniqueIds.join(", ")}: another VM launched from the same image`,
    });
  }
  if (p.requireSecureBoot) {
    const ok = vmConfig?.["secure-boot"] === true;
    checks.push({
      id: "policy.secure-boot",
      ok,
      detail: ok
        ? "vm-configuration reports secure boot enabled"
        : "vm-configuration does not report secure boot enabled",
    });
  }
  if (p.forbidConsole) {
    const ok = vmConfig?.["console-enabled"] !== true;
    checks.push({
      id: "policy.console",
      ok,
      detail: ok ? "serial console disabled" : "vm-configuration reports the serial console enabled",
    });
  }
  return checks;
}
