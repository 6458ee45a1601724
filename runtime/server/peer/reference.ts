// The replica set's reference values, taken from the replica's OWN evidence: a replica releases its share to,
// and accepts shares from, only a replica that runs exactly what it runs. This is the only choice that works
// inside a measured image: the runtime's config is part of the measurement (the verity root in the runtime
// guest), so it cannot list the measurement it is part of. "What it runs" is:
//   SEV-SNP: MEASUREMENT, the guest POLICY (exact), HOST_DATA, VMPL, FAMILY_ID and IMAGE_ID — not CHIP_ID
//            (a replica moved to another chip must still be a peer).
//   TDX:     MRTD, RTMR0..3, TD_ATTRIBUTES, XFAM, MRCONFIGID, MROWNER, MROWNERCONFIG.
// And a TCB floor, not an exact TCB (firmware updates must not split the set): the peer's platform must be at least
// as patched as this replica's own. AMD signs a VCEK for every TCB a chip ever ran and the appraisal constrains none
// by default, so without a floor a host could move a replica to a machine on old, vulnerable firmware and have
// the share (k = 1: the whole unseal key) sent where it can read guest memory — or, in the other direction, have a
// replica take shares of a keyring the host wrote from a peer on such firmware.
//   SEV-SNP: the peer's REPORTED_TCB (the TCB its VCEK is for) ≥ this replica's COMMITTED_TCB, component by
//            component, on the same product (numbers of different products do not compare). COMMITTED_TCB because
//            the host can lower REPORTED_TCB (SNP_SET_CONFIG) but not roll the committed one back.
//   TDX:     TEE_TCB_SVN ≥ this replica's (policy.tee-tcb-svn).
// Trust (vendor roots, or listed simulated ones) comes from configuration; the appraisal's default policy
// still refuses debug and migration-agent guests.
// Besides, the replica's own hardware identity (hardware.ts: CHIP_ID / PPID), the slot its share is held by: taken
// from the same own report, but only once that report VERIFIED against the trust configuration and answered a
// fresh nonce — on TDX the quote comes through the host's quoting service, and an unverified PCK certificate
// would let the host choose which platform this replica claims to be.
import { randomBytes } from "node:crypto";
import {
  decodeTcb,
  formatTcb,
  parseReport,
  productFromCpuid,
  tcbComponents,
  type SnpProduct,
  type TcbVersion,
} from "../../attestation/snp/abi.js";
import { parseQuote } from "../../attestation/tdx/abi.js";
import { appraise } from "../../attestation/appraise.js";
import type { Policy, TrustConfig } from "../../attestation/policy.js";
import type { Check, Claims } from "../../attestation/types.js";
import { decodeEvidence } from "../../protocol/evidence.js";
import type { WireEvidence } from "../../protocol/evidence.js";
import type { RuntimeEvidenceSource } from "../http/attested-tls.js";
import { hardwareIdentity, type HardwareIdentity } from "./hardware.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/**
 * peer.tcb: the peer's REPORTED_TCB (claims.tcb, decoded for its verified product) against this replica's
 * COMMITTED_TCB. Own product from the report's CPUID (v3+); a v2 report (Milan/Genoa firmware, same TCB layout)
 * is decoded with the peer's layout, except for a Turin peer (a v2 report is never Turin's).
 */
function snpTcbFloor(committed: Uint8Array, ownProduct: SnpProduct | undefined, claims: Claims | undefined): Check {
  const id = "peer.tcb";
  const product = claims?.product as SnpProduct | undefined;
  if (!claims || !product) return { id, ok: false, detail: "the peer's TCB is unavailable (evidence not verified)" };
  if ((ownProduct && product !== ownProduct) || (!ownProduct && product === "Turin"))
    return {
      id,
      ok: false,
      detail: `the peer runs on ${product}, this replica on ${ownProduct ?? "Milan/Genoa"}: their TCB numbers do not compare (a move across CPU products needs the recovery shares)`,
    };
  const floor = decodeTcb(committed, ownProduct ?? product);
  const got = claims.tcb as Partial<TcbVersion>;
  const low = tcbComponents(product)
    .filter((k) => typeof got[k] !== "number" || got[k] < (floor[k] ?? 0))
    .map((k) => `${k} ${String(got[k])} < ${floor[k] ?? 0}`);
  return low.length === 0
    ? { id, ok: true, detail: `REPORTED_TCB ${formatTcb(got as TcbVersion)} ≥ this replica's COMMITTED_TCB` }
    : {
        id,
        ok: false,
        detail: `REPORTED_TCB below this replica's COMMITTED_TCB ${formatTcb(floor)}: ${low.join(", ")} (older firmware than the set runs)`,
      };
}

export interface ReplicaReference {
  platform: "snp" | "tdx";
  /** The appraisal policy a peer must meet (requireReportDataBinding set). */
  policy: Policy;
  /** Checks the policy language has no field for (the exact SNP guest POLICY). */
  extraChecks(claims: Claims | undefined): Check[];
  /** One line for logs and audit: what the set runs. Public values only. */
  summary: string;
  /**
   * The launch-time field a replica set may bind its instance id into (`launch_binds_instance_id`, instance.ts):
   * this replica's own SEV-SNP HOST_DATA or TDX MRCONFIGID, hex.
   */
  launchField: { name: "HOST_DATA" | "MRCONFIGID"; hex: string };
  /** This replica's own hardware identity, from its own verified report (ownReference only). */
  hardware?: HardwareIdentity;
}

/** The reference values of the replica whose evidence this is (its own, collected at start). */
export function replicaReference(wire: WireEvidence): ReplicaReference {
  const e = decodeEvidence(wire, "own evidence");
  if (e.kind === "snp") {
    const r = parseReport(e.report);
    const policyHex = "0x" + r.policy.toString(16);
    const ownProduct = r.cpuid ? productFromCpuid(r.cpuid.family, r.cpuid.model) : undefined;
    return {
      platform: "snp",
      policy: {
        requireReportDataBinding: true,
        snp: {
          measurements: [hex(r.measurement)],
          hostData: hex(r.hostData),
          vmpl: r.vmpl,
          familyId: hex(r.familyId),
          imageId: hex(r.imageId),
        },
      },
      extraChecks: (claims) => {
        const got = claims?.extra.policy;
        const ok = got === policyHex;
        return [
          {
            id: "peer.launch-policy",
            ok,
            detail: ok
              ? `guest POLICY ${policyHex} equals this replica's`
              : `guest POLICY ${String(got ?? "unavailable")} differs from this replica's ${policyHex}`,
          },
          snpTcbFloor(r.committedTcb, ownProduct, claims),
        ];
      },
      summary: `SEV-SNP measurement ${hex(r.measurement)}, policy ${policyHex}, host data ${hex(r.hostData).slice(0, 16)}…`,
      launchField: { name: "HOST_DATA", hex: hex(r.hostData) },
    };
  }
  if (e.kind === "tdx") {
    const b = parseQuote(e.quote).body;
    return {
      platform: "tdx",
      policy: {
        requireReportDataBinding: true,
        tdx: {
          mrTd: [hex(b.mrTd)],
          rtmr0: [hex(b.rtmrs[0])],
          rtmr1: [hex(b.rtmrs[1])],
          rtmr2: [hex(b.rtmrs[2])],
          rtmr3: [hex(b.rtmrs[3])],
          tdAttributes: { mask: "ff".repeat(8), value: hex(b.tdAttributes) },
          xfam: hex(b.xfam),
          mrConfigId: hex(b.mrConfigId),
          mrOwner: hex(b.mrOwner),
          mrOwnerConfig: hex(b.mrOwnerConfig),
          minTeeTcbSvn: hex(b.teeTcbSvn),
        },
      },
      extraChecks: () => [],
      summary: `TDX MRTD ${hex(b.mrTd)}, RTMR0..3 ${b.rtmrs.map((x) => hex(x).slice(0, 8) + "…").join(" ")}`,
      launchField: { name: "MRCONFIGID", hex: hex(b.mrConfigId) },
    };
  }
  throw new Error(`peer unseal: evidence kind '${e.kind}' is not supported (snp, tdx)`);
}

/**
 * This replica's reference values and hardware identity, from one report of its own (REPORT_DATA a random nonce:
 * the report is read, never sent), taken once and kept for the life of the process. A failure is retried on the
 * next call. The identity is set only when the report verifies against `trust` and answers that nonce.
 */
export function ownReference(source: RuntimeEvidenceSource, trust: TrustConfig): () => Promise<ReplicaReference> {
  let p: Promise<ReplicaReference> | undefined;
  const load = async (): Promise<ReplicaReference> => {
    const nonce = randomBytes(64);
    const wire = await source.collect(nonce);
    const ref = replicaReference(wire);
    const verdict = await appraise(decodeEvidence(wire, "own evidence"), ref.policy, {
      trust,
      expectedReportData: nonce,
    });
    const failed = verdict.checks.find((c) => !c.ok);
    const hardware: HardwareIdentity = verdict.accepted
      ? hardwareIdentity(verdict.claims, "this replica's own")
      : {
          check: {
            id: ref.platform === "snp" ? "peer.chip-id" : "peer.platform-id",
            ok: false,
            detail: `this replica's own evidence does not verify (${failed ? `${failed.id}: ${failed.detail}` : "not accepted"}), so it names no hardware to hold a share by`,
          },
        };
    return { ...ref, hardware };
  };
  return () =>
    (p ??= load().catch((e: unknown) => {
      p = undefined;
      throw e;
    }));
}
