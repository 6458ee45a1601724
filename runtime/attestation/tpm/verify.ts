// Verifies vTPM evidence, every check listed: the AK is a restricted signing key, the quote is signed by it,
// extraData is the verifier's nonce, the PCR values hash to the quoted digest, and the TCG event log replays
// to exactly those PCR values. Which PCRs are then trustworthy is returned so the measured-boot policy
// (boot-policy.ts) only believes events of PCRs the quote covers.
import { constants, createHash, timingSafeEqual, verify as cryptoVerify } from "node:crypto";
import type { Check } from "../types.js";
import {
  akAttributeProblems,
  HASH_ALGS,
  parseTpmPublic,
  parseTpmsAttest,
  parseTpmtSignature,
  type HashName,
  type TpmPublic,
  type TpmSignature,
  type TpmsAttest,
} from "./abi.js";
import { EV, parseEventLog, replayEventLog, type EventLog } from "./eventlog.js";
import type { PcrValues, TpmEvidence } from "./evidence.js";

// PCRs a boot log legitimately leaves out: IMA's (10, its own log) and the DRTM ones (17-22). A quoted
// PCR 0-9 or 11-16 without events is a stripped log and must fail replay, not be set aside as "not logged".
const MAY_BE_UNLOGGED = new Set([10, 17, 18, 19, 20, 21, 22]);

export type { PcrValues, TpmEvidence } from "./evidence.js";

export interface TpmVerifyOptions {
  /** Expected extraData (the verifier's nonce). Absent → the nonce is not checked (listed as such). */
  nonce?: Uint8Array;
  /** Require an event log (default true). */
  requireEventLog?: boolean;
}

export interface TpmVerification {
  checks: Check[];
  ak?: TpmPublic;
  attest?: TpmsAttest;
  log?: EventLog;
  /** PCR values covered by a verified quote, per bank (hex), after replay agreement. */
  quotedPcrs: Partial<Record<HashName, Record<number, string>>>;
  /** Banks whose quoted PCRs the event log replays to; the boot policy reads events only for these PCRs. */
  replayed: Partial<Record<HashName, number[]>>;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

const CURVE_BYTES: Record<string, number> = { prime256v1: 32, secp384r1: 48, secp521r1: 66 };

function signatureValid(msg: Uint8Array, sig: TpmSignature, ak: TpmPublic): { ok: boolean; why: string } {
  if ((sig.alg === "ecdsa") !== (ak.type === "ecc"))
    return { ok: false, why: `a ${sig.alg.toUpperCase()} signature cannot come from an ${ak.type.toUpperCase()} key` };
  if (ak.scheme && (ak.scheme.alg !== sig.alg || ak.scheme.hash !== sig.hash))
    return {
      ok: false,
      why: `signature scheme ${sig.alg}/${sig.hash} differs from the key's fixed scheme ${ak.scheme.alg}/${ak.scheme.hash}`,
    };
  try {
    if (sig.alg === "ecdsa") {
      const n = CURVE_BYTES[ak.key.asymmetricKeyDetails?.namedCurve ?? ""] ?? 32;
      if (sig.r.length > n || sig.s.length > n) return { ok: false, why: "ECDSA r/s longer than the curve order" };
      const rs = Buffer.alloc(2 * n);
      Buffer.from(sig.r).copy(rs, n - sig.r.length);
      Buffer.from(sig.s).copy(rs, 2 * n - sig.s.length);
      return { ok: cryptoVerify(sig.hash, msg, { key: ak.key, dsaEncoding: "ieee-p1363" }, rs), why: "" };
    }
    const padding = sig.alg === "rsassa" ? constants.RSA_PKCS1_PADDING : constants.RSA_PKCS1_PSS_PADDING;
    return {
      ok: cryptoVerify(
        sig.hash,
        msg,
        { key: ak.key, padding, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
        Buffer.from(sig.sig),
      ),
      why: "",
    };
  } catch (e) {
    return { ok: false, why: (e as Error).message };
  }
}

/** Verifies the quote and the event log against each other. Never throws for bad evidence. */
export function verifyTpmEvidence(ev: TpmEvidence, opts: TpmVerifyOptions = {}): TpmVerification {
  const checks: Check[] = [];
  const out: TpmVerification = { checks, quotedPcrs: {}, replayed: {} };
  try {
    out.ak = parseTpmPublic(ev.akPublic);
    const problems = akAttributeProblems(out.ak);
    checks.push({
      id: "tpm.ak-attributes",
      ok: problems.length === 0,
      detail: problems.length
        ? `the attestation key is unfit: ${problems.join("; ")}`
        : `${out.ak.type.toUpperCase()} attestation key: restricted, signing-only, fixedTPM, TPM-generated`,
    });
  } catch (e) {
    checks.push({ id: "tpm.ak-attributes", ok: false, detail: (e as Error).message });
  }
  let sig: TpmSignature | undefined;
  try {
    out.attest = parseTpmsAttest(ev.quote);
    sig = parseTpmtSignature(ev.signature);
  } catch (e) {
    checks.push({ id: "tpm.quote-format", ok: false, detail: (e as Error).message });
  }
  const attest = out.attest;
  if (!attest || !sig || !out.ak) {
    if (attest && sig) checks.push({ id: "tpm.quote-signature", ok: false, detail: "no usable attestation key" });
    return out;
  }
  const s = signatureValid(ev.quote, sig, out.ak);
  checks.push({
    id: "tpm.quote-signature",
    ok: s.ok,
    detail: s.ok
      ? `TPMS_ATTEST signed by the attestation key (${sig.alg}/${sig.hash})`
      : `quote signature does not verify with the attestation key${s.why ? `: ${s.why}` : ""}`,
  });
  if (opts.nonce === undefined) {
    checks.push({ id: "tpm.nonce", ok: true, detail: "extraData not checked: no nonce expected by the caller" });
  } else {
    const ok = eq(attest.extraData, opts.nonce);
    checks.push({
      id: "tpm.nonce",
      ok,
      detail: ok
        ? "extraData equals the verifier's nonce"
        : `extraData ${hex(attest.extraData)} is not the verifier's nonce (replayed or foreign quote)`,
    });
  }

  // Event log → replayed PCR values per bank the quote selects.
  const parsed = replayForQuote(ev.eventLog, attest, opts.requireEventLog ?? true);
  checks.push(parsed.check);
  out.log = parsed.log;
  const replay = parsed.replay;

  // PCR digest over the selection, in selection order, hashed with the signing scheme's hash.
  const values = (bank: HashName, i: number): Uint8Array | undefined =>
    ev.pcrs?.[bank]?.[i] ?? replayedValue(replay, attest, bank, i);
  const h = createHash(sig.hash);
  const missing: string[] = [];
  for (const sel of attest.pcrSelections)
    for (const i of sel.pcrs) {
      const v = values(sel.hash, i);
      if (!v || v.length !== HASH_ALGS[sel.hashAlg].bytes) missing.push(`${sel.hash}:${i}`);
      else h.update(v);
    }
  const banks = attest.pcrSelections.map((x) => `${x.hash}:${x.pcrs.join(",")}`).join(" ");
  let digestOk = false;
  if (missing.length) {
    checks.push({ id: "tpm.pcr-digest", ok: false, detail: `PCR value(s) ${missing.join(", ")} missing for ${banks}` });
  } else {
    digestOk = eq(h.digest(), attest.pcrDigest);
    checks.push({
      id: "tpm.pcr-digest",
      ok: digestOk,
      detail: digestOk
        ? `PCR values hash to the quoted pcrDigest (${banks})`
        : `PCR values do not hash to the quoted pcrDigest (${banks})`,
    });
  }

  if (replay) {
    const a = replayAgreement(out.log!, replay, attest, ev.pcrs);
    checks.push(a.check);
    if (a.check.ok && digestOk && s.ok) out.replayed = a.agreed;
  }
  if (digestOk && s.ok)
    for (const sel of attest.pcrSelections) {
      const bank: Record<number, string> = {};
      for (const i of sel.pcrs) bank[i] = hex(values(sel.hash, i)!);
      out.quotedPcrs[sel.hash] = bank;
    }
  return out;
}

type Replay = Partial<Record<HashName, Record<number, Buffer>>>;

/** A replayed PCR value; a PCR the log never extends is at its reset value (0). */
function replayedValue(replay: Replay | undefined, attest: TpmsAttest, bank: HashName, i: number): Buffer | undefined {
  const r = replay?.[bank];
  if (!r) return undefined;
  return r[i] ?? Buffer.alloc(HASH_ALGS[attest.pcrSelections.find((x) => x.hash === bank)!.hashAlg].bytes);
}

/**
 * Parses the TCG event log (strictly, eventlog.ts) and replays it in every bank the quote selects and the log
 * carries. `tpm.event-log` fails for a missing log when one is required, or an unparseable one.
 */
export function replayForQuote(
  eventLog: Uint8Array | undefined,
  attest: TpmsAttest,
  requireLog: boolean,
): { check: Check; log?: EventLog; replay?: Replay } {
  if (!eventLog)
    return {
      check: {
        id: "tpm.event-log",
        ok: !requireLog,
        detail: requireLog ? "no TCG event log in the evidence" : "no event log (not required)",
      },
    };
  try {
    const log = parseEventLog(eventLog);
    const replay: Replay = {};
    for (const sel of attest.pcrSelections)
      if (log.specId.algorithms.some((a) => a.hash === sel.hash)) replay[sel.hash] = replayEventLog(log, sel.hash);
    return {
      log,
      replay,
      check: {
        id: "tpm.event-log",
        ok: true,
        detail: `crypto-agile event log, ${log.events.length} events, banks ${log.specId.algorithms.map((a) => a.hash).join(",")}`,
      },
    };
  } catch (e) {
    return { check: { id: "tpm.event-log", ok: false, detail: (e as Error).message } };
  }
}

/**
 * Replay agreement (`tpm.event-log-replay`): every quoted PCR the boot log has events for equals the replayed value.
 * A quoted PCR the log has no event for (IMA's PCR 10, the DRTM PCRs 17-22 of a real vTPM quote) agrees only at its
 * reset value (0; all ones for 17-22); otherwise it is listed as not logged and left out of `agreed`, so the boot
 * policy, which believes events only of replayed PCRs, cannot read anything about it. `pcrs` are the quote's values;
 * the caller believes `agreed` only when the quote's signature and PCR digest verified.
 */
export function replayAgreement(
  log: EventLog,
  replay: Replay,
  attest: TpmsAttest,
  pcrs: PcrValues | undefined,
): { check: Check; agreed: Partial<Record<HashName, number[]>> } {
  const diffs: string[] = [];
  const unlogged: string[] = [];
  const agreed: Partial<Record<HashName, number[]>> = {};
  const logged = new Set(log.events.filter((e) => e.type !== EV.NO_ACTION).map((e) => e.pcr));
  for (const sel of attest.pcrSelections) {
    if (!replay[sel.hash]) continue;
    agreed[sel.hash] = [];
    for (const i of sel.pcrs) {
      const got = replayedValue(replay, attest, sel.hash, i)!;
      const want = pcrs?.[sel.hash]?.[i];
      if (!logged.has(i) && want && MAY_BE_UNLOGGED.has(i)) {
        const reset = Buffer.alloc(want.length, i >= 17 && i <= 22 ? 0xff : 0);
        if (eq(want, reset) || eq(want, got)) agreed[sel.hash]!.push(i);
        else unlogged.push(`${sel.hash}:PCR${i}`);
      } else if (want && !eq(got, want)) diffs.push(`${sel.hash}:PCR${i}`);
      else agreed[sel.hash]!.push(i);
    }
  }
  const covered = Object.keys(agreed).length > 0;
  const ok = covered && diffs.length === 0;
  const check: Check = {
    id: "tpm.event-log-replay",
    ok,
    detail: !covered
      ? "the event log has no bank the quote selects"
      : ok
        ? `the event log replays to every quoted PCR (${Object.entries(agreed)
            .map(([b, p]) => `${b}:${p!.join(",")}`)
            .join(" ")})${unlogged.length ? `; not in the boot log (not believed): ${unlogged.join(", ")}` : ""}`
        : `the event log does not replay to the quoted ${diffs.join(", ")}: events were added, removed or altered`,
  };
  return { check, agreed };
}
