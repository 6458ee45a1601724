// Which machine a replica runs on, from its VERIFIED evidence: what peer unseal counts (docs/trust-bootstrap.md
// "Why k distinct peers"). A replica process's attested TLS key is new at every start and a host can start as many
// processes of the image as it likes, so a share slot held by a process key let one machine — restarted k times,
// or k VMs of the image on one chip — pass for k peers. Slots and the requester's count are therefore keyed by the
// hardware instead:
//   SEV-SNP  the report's CHIP_ID (the part the VCEK's hwID names: all 64 bytes, Turin's first 8), written and
//            signed by the PSP; the appraisal has checked it against the VCEK (snp.chip-id). A masked (all-zero)
//            CHIP_ID names no chip — the host sets MASK_CHIP_ID — so it is refused here (peer.chip-id).
//   TDX      the PPID in the PCK certificate's SGX extension: the Platform Provisioning ID Intel registered the
//            platform under. The PCK certificate is verified to Intel's root and its key signed the QE report that
//            certifies the quote's attestation key (tdx.pck-chain, tdx.qe-signature), so the PPID is Intel's word
//            for which platform produced the quote. Not the PCK key: a platform has one PCK key per TCB level (the
//            PCE derives them from CPUSVN/PCESVN, lower levels included), so one machine could show several. A
//            quote without a PPID is refused (peer.platform-id).
// What this does not bind: the identity is a chip or platform, not a replica — two replicas on one machine are one
// peer (by design), and k peers need k machines whose evidence passed. It does not make k machines independent of
// one verifier: a flaw that accepts bad evidence still fools every replica alike; what it removes is the host's
// ability to turn one accepted machine into k.
import { hwIdOf, type SnpProduct } from "../../attestation/snp/abi.js";
import type { Check, Claims } from "../../attestation/types.js";

export interface HardwareIdentity {
  /** The named check: ok with the identity, or why there is none. */
  check: Check;
  /** "snp:<product>:<hwID hex>" or "tdx:ppid:<hex>"; absent when the check failed. */
  id?: string;
}

/** The hardware identity in verified claims (`whose`: "the peer's", "the requester's", "this replica's own"). */
export function hardwareIdentity(claims: Claims | undefined, whose: string): HardwareIdentity {
  if (claims?.platform === "snp") {
    const id = "peer.chip-id";
    const product = claims.product as SnpProduct | undefined;
    if (!product || !claims.chipId || !/^[0-9a-f]{128}$/.test(claims.chipId))
      return { check: { id, ok: false, detail: `${whose} CHIP_ID is unavailable` } };
    const hw = Buffer.from(hwIdOf(Buffer.from(claims.chipId, "hex"), product)).toString("hex");
    if (/^0+$/.test(hw))
      return {
        check: {
          id,
          ok: false,
          detail: `${whose} CHIP_ID is masked (all zero): a replica set counts peers by chip, and a masked report names none (MASK_CHIP_ID must be off for peer unseal)`,
        },
      };
    return { check: { id, ok: true, detail: `${whose} chip ${hw.slice(0, 16)}…` }, id: `snp:${product}:${hw}` };
  }
  if (claims?.platform === "tdx") {
    const id = "peer.platform-id";
    const ppid = claims.extra.ppid;
    if (typeof ppid !== "string" || !/^[0-9a-f]{32}$/.test(ppid) || /^0+$/.test(ppid))
      return {
        check: {
          id,
          ok: false,
          detail: `${whose} PCK certificate names no platform (no PPID in its SGX extension): a replica set counts peers by platform`,
        },
      };
    return { check: { id, ok: true, detail: `${whose} platform PPID ${ppid.slice(0, 8)}…` }, id: `tdx:ppid:${ppid}` };
  }
  return {
    check: {
      id: "peer.chip-id",
      ok: false,
      detail: `${whose} hardware identity is unavailable (evidence not verified, or not SEV-SNP/TDX)`,
    },
  };
}
