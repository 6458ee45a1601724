// Property-based fuzzing of the TPM structure parsers and the TCG event-log parser: arbitrary bytes and
// mutations of valid structures either parse or fail with a typed EvidenceFormatError naming the field;
// verification never throws. Runs without swtpm (keys and quotes made with node:crypto).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { createHash, generateKeyPairSync, sign } from "node:crypto";
import { EvidenceFormatError } from "../../../runtime/attestation/types.js";
import {
  appraiseMeasuredBoot,
  parseEventLog,
  parseTaggedEvent,
  parseTpmPublic,
  parseTpmsAttest,
  parseTpmtSignature,
  parseUefiVariableData,
  replayEventLog,
  verifyTpmEvidence,
  TPM_ALG,
} from "../../../runtime/attestation/tpm/index.js";
import { buildBootLog } from "./tpm-fixtures.js";
import { readFileSync } from "node:fs";
import { hasShared, sharedPath } from "../../support/shared.js";
import { parseTpmQuoteFile } from "../../../runtime/attestation/azure/index.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

function typedOnly(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof EvidenceFormatError))
      throw new Error(`untyped ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
    expect((e as EvidenceFormatError).field).toBeTruthy();
  }
}

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const tpm2b = (b: Buffer) => Buffer.concat([u16(b.length), b]);

/** A TPM2B_PUBLIC of a restricted ECC P-256 signing key (the AK template of tpm2_createak), from a node key. */
function eccAk(attrs = 0x00050072) {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = publicKey.export({ format: "jwk" });
  const x = Buffer.from(jwk.x!, "base64url");
  const y = Buffer.from(jwk.y!, "base64url");
  const body = Buffer.concat([
    u16(TPM_ALG.ECC),
    u16(TPM_ALG.SHA256),
    u32(attrs),
    tpm2b(Buffer.alloc(0)),
    u16(TPM_ALG.NULL),
    u16(TPM_ALG.ECDSA),
    u16(TPM_ALG.SHA256),
    u16(0x0003),
    u16(TPM_ALG.NULL),
    tpm2b(x),
    tpm2b(y),
  ]);
  return { pub: tpm2b(body), privateKey };
}

function quoteFor(pcrValues: Buffer[], pcrs: number[], nonce: Buffer): Buffer {
  const bitmap = Buffer.alloc(3);
  for (const p of pcrs) bitmap[p >> 3] |= 1 << (p & 7);
  const digest = createHash("sha256").update(Buffer.concat(pcrValues)).digest();
  return Buffer.concat([
    u32(0xff544347),
    u16(0x8018),
    tpm2b(Buffer.alloc(34, 1)),
    tpm2b(nonce),
    Buffer.alloc(17),
    Buffer.alloc(8),
    u32(1),
    u16(TPM_ALG.SHA256),
    Buffer.from([3]),
    bitmap,
    tpm2b(digest),
  ]);
}

function ecdsaSig(msg: Buffer, key: ReturnType<typeof eccAk>["privateKey"]): Buffer {
  const rs = sign("sha256", msg, { key, dsaEncoding: "ieee-p1363" });
  return Buffer.concat([u16(TPM_ALG.ECDSA), u16(TPM_ALG.SHA256), tpm2b(rs.subarray(0, 32)), tpm2b(rs.subarray(32))]);
}

function validEvidence() {
  const boot = buildBootLog();
  const log = parseEventLog(boot.log);
  const bank = replayEventLog(log, "sha256");
  const pcrs = [0, 1, 4, 7, 8, 9, 12];
  const values = pcrs.map((p) => bank[p] ?? Buffer.alloc(32));
  const nonce = Buffer.alloc(32, 7);
  const ak = eccAk();
  const quote = quoteFor(values, pcrs, nonce);
  return {
    boot,
    nonce,
    ak,
    quote,
    ev: { akPublic: ak.pub, quote, signature: ecdsaSig(quote, ak.privateKey), eventLog: boot.log },
  };
}

describe("TPM structures built with node:crypto", () => {
  it("a node-signed quote over the replayed log verifies; a non-restricted key is refused", () => {
    const { ev, nonce, boot } = validEvidence();
    const v = verifyTpmEvidence(ev, { nonce });
    expect(v.checks.filter((c) => !c.ok)).toEqual([]);
    expect(appraiseMeasuredBoot(v, boot.policy).filter((c) => !c.ok)).toEqual([]);
    const loose = eccAk(0x00040072); // sign, but restricted=0
    const bad = verifyTpmEvidence(
      { ...ev, akPublic: loose.pub, signature: ecdsaSig(ev.quote, loose.privateKey) },
      { nonce },
    );
    expect(bad.checks.filter((c) => !c.ok).map((c) => c.id)).toEqual(["tpm.ak-attributes"]);
    expect(bad.checks[0].detail).toMatch(/not restricted/);
  });

  it("the parsed AK Name is nameAlg ‖ SHA-256(TPMT_PUBLIC)", () => {
    const { ak } = validEvidence();
    const p = parseTpmPublic(ak.pub);
    expect(Buffer.from(p.name).toString("hex")).toBe(
      "000b" + createHash("sha256").update(ak.pub.subarray(2)).digest("hex"),
    );
  });

  it("strictness: trailing bytes, unknown algorithms, wrong magic and type are refused with the field named", () => {
    const { quote, ev } = validEvidence();
    const errs = [
      () => parseTpmsAttest(Buffer.concat([quote, Buffer.from([0])])),
      () => parseTpmsAttest(Buffer.concat([u32(0xff544348), quote.subarray(4)])),
      () => parseTpmsAttest(Buffer.concat([quote.subarray(0, 4), u16(0x8014), quote.subarray(6)])),
      () => parseTpmtSignature(Buffer.concat([u16(0x0015), Buffer.from(ev.signature).subarray(2)])),
      () => parseTpmtSignature(Buffer.concat([Buffer.from(ev.signature), Buffer.from([0])])),
      () => parseTpmPublic(Buffer.concat([ev.akPublic, Buffer.from([0])])),
      () => parseEventLog(Buffer.concat([ev.eventLog, Buffer.from([0])])),
    ];
    for (const f of errs) expect(f).toThrow(EvidenceFormatError);
  });
});

describe("fuzzing", () => {
  const { ev, quote, nonce, boot } = validEvidence();
  const parsers: [string, (b: Uint8Array) => unknown][] = [
    ["TPMS_ATTEST", (b) => parseTpmsAttest(b)],
    ["TPMT_SIGNATURE", (b) => parseTpmtSignature(b)],
    ["TPM2B_PUBLIC", (b) => parseTpmPublic(b)],
    ["event log", (b) => parseEventLog(b)],
    ["UEFI_VARIABLE_DATA", (b) => parseUefiVariableData(b)],
    ["tagged event", (b) => parseTaggedEvent(b)],
  ];
  const seeds: Record<string, Uint8Array> = {
    TPMS_ATTEST: quote,
    TPMT_SIGNATURE: ev.signature,
    TPM2B_PUBLIC: ev.akPublic,
    "event log": ev.eventLog,
    UEFI_VARIABLE_DATA: Buffer.alloc(40),
    "tagged event": Buffer.alloc(8),
  };

  for (const [name, parse] of parsers) {
    it(`${name}: random bytes parse or fail typed`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), (b) => typedOnly(() => parse(b))),
        { numRuns: RUNS },
      );
    });
    it(`${name}: byte mutations and truncations of a valid one parse or fail typed`, () => {
      const seed = seeds[name];
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(seed.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
          fc.nat(seed.length),
          (muts, cut) => {
            const b = Buffer.from(seed);
            for (const [i, v] of muts) b[i] = v;
            typedOnly(() => parse(b));
            typedOnly(() => parse(b.subarray(0, cut)));
          },
        ),
        { numRuns: RUNS },
      );
    });
  }

  it("verifyTpmEvidence and the boot policy never throw, and accept only the untouched evidence", () => {
    const fields = ["akPublic", "quote", "signature", "eventLog"] as const;
    fc.assert(
      fc.property(fc.constantFrom(...fields), fc.nat(), fc.integer({ min: 1, max: 255 }), (f, at, x) => {
        const b = Buffer.from(ev[f]);
        b[at % b.length] ^= x;
        const v = verifyTpmEvidence({ ...ev, [f]: b }, { nonce });
        const boot2 = appraiseMeasuredBoot(v, boot.policy);
        const all = [...v.checks, ...boot2];
        // Some event-log bytes (the unbound data of a firmware event) may change without effect; anything
        // else must fail a check. The AK's nameAlg and policy-irrelevant attribute bits (userWithAuth,
        // noDA …) are not bound by the quote signature, so those flips may pass too.
        const attrByte = f === "akPublic" && at % b.length >= 4 && at % b.length < 10;
        if (f !== "eventLog" && !attrByte) expect(all.some((c) => !c.ok)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });
});

describe.skipIf(!hasShared)("real Azure vTPM quotes (trustee test data, ../shared/evidence/cloud)", () => {
  // Provenance: confidential-containers/trustee deps/verifier/test_data/az-{snp,tdx}-vtpm @ 78962cd4
  // (../shared/docs/reference/azure-gcp-evidence.md). Real Azure CVM vTPM output.
  const cases = [
    ["cloud/azure-snp-vtpm-trustee", "quote.bin"],
    ["cloud/azure-snp-vtpm-trustee", "tpm-quote-v1.json"],
    ["cloud/azure-tdx-vtpm-trustee", "quote.bin"],
    ["cloud/azure-tdx-vtpm-trustee", "tpm-quote-v1.json"],
  ];
  it.each(cases)("%s/%s: the strict TPMS_ATTEST parser reads it and its PCRs hash to the quoted digest", (dir, f) => {
    const q = parseTpmQuoteFile(readFileSync(sharedPath("evidence", dir, f)));
    const a = parseTpmsAttest(q.message);
    expect(a.pcrSelections).toEqual([
      { hashAlg: 0x000b, hash: "sha256", pcrs: Array.from({ length: 24 }, (_, i) => i) },
    ]);
    const h = createHash("sha256");
    for (const i of a.pcrSelections[0].pcrs) h.update(q.pcrs[i]);
    expect(h.digest().equals(Buffer.from(a.pcrDigest))).toBe(true);
    // One-bit negatives: the strict parser refuses a flipped magic and a flipped attest type.
    for (const at of [0, 4]) {
      const m = Buffer.from(q.message);
      m[at] ^= 1;
      expect(() => parseTpmsAttest(m)).toThrow(EvidenceFormatError);
    }
  });
});
