// Property-based fuzzing of every SEV-SNP parser and of appraise() itself: random, truncated and mutated
// input may only produce typed errors (EvidenceFormatError / PolicyError) or failed checks, never a crash,
// never an accepted verdict.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { hasShared, sharedPath } from "../../support/shared.js";
import { EvidenceFormatError } from "../../../runtime/attestation/types.js";
import { appraise } from "../../../runtime/attestation/appraise.js";
import { PolicyError, parsePolicy, type TrustConfig } from "../../../runtime/attestation/policy.js";
import { REPORT_SIZE, decodeTcb, parseCertTable, parseReport } from "../../../runtime/attestation/snp/abi.js";
import { checkCrl, parseCert, parseVek, splitCertificates } from "../../../runtime/attestation/snp/certs.js";
import { createSnpSimulator, type SimulatedReport, type SnpSimulator } from "../../../runtime/sim/snp.js";

let sim: SnpSimulator;
let good: SimulatedReport;
let trust: TrustConfig;
const realVcek = hasShared
  ? new Uint8Array(readFileSync(sharedPath("evidence", "snp", "go-sev-guest-milan-v2", "vcek.der")))
  : undefined;

beforeAll(async () => {
  sim = await createSnpSimulator({ product: "Genoa" });
  good = await sim.report({ measurement: "11".repeat(48), version: 5 });
  trust = { snp: { simulated: [sim.trustAnchor] } };
});

/** Runs fn and accepts only success or the allowed error type. */
function typedOnly(fn: () => unknown, ...allowed: Array<new (...a: never[]) => Error>): void {
  try {
    fn();
  } catch (e) {
    if (!allowed.some((t) => e instanceof t))
      throw new Error(`untyped error: ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
  }
}

/** A byte array with 1..4 bytes changed (each XOR with a non-zero value), optionally truncated or extended. */
const mutation = (len: number) =>
  fc.record({
    flips: fc.array(fc.tuple(fc.nat(len - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
    cut: fc.option(fc.nat(len), { nil: undefined }),
    extra: fc.option(fc.uint8Array({ minLength: 1, maxLength: 8 }), { nil: undefined }),
  });

function mutate(src: Uint8Array, m: { flips: [number, number][]; cut?: number; extra?: Uint8Array }): Uint8Array {
  let out = Uint8Array.from(src);
  for (const [at, x] of m.flips) out[at % out.length] ^= x;
  if (m.cut !== undefined) out = out.subarray(0, m.cut);
  if (m.extra) out = Uint8Array.from([...out, ...m.extra]);
  return out;
}

const changed = (a: Uint8Array, b: Uint8Array) => a.length !== b.length || !Buffer.from(a).equals(Buffer.from(b));

describe("SNP parser fuzzing", () => {
  it("parseReport: random bytes of any length → report or EvidenceFormatError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1300 }), (b) => typedOnly(() => parseReport(b), EvidenceFormatError)),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: REPORT_SIZE, maxLength: REPORT_SIZE }), (b) =>
        typedOnly(() => parseReport(b), EvidenceFormatError),
      ),
      { numRuns: 500 },
    );
  });

  it("parseReport: mutated and truncated genuine-format reports → report or EvidenceFormatError", () => {
    fc.assert(
      fc.property(mutation(REPORT_SIZE), (m) =>
        typedOnly(() => parseReport(mutate(good.report, m)), EvidenceFormatError),
      ),
      { numRuns: 1000 },
    );
  });

  it("parseCertTable: random, mutated and truncated tables → entries or EvidenceFormatError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => typedOnly(() => parseCertTable(b), EvidenceFormatError)),
      { numRuns: 500 },
    );
    // Mutations concentrated on the 96-byte header, where the structure lives.
    fc.assert(
      fc.property(mutation(96), fc.nat(good.certTable.length), (m, cut) => {
        typedOnly(() => parseCertTable(mutate(good.certTable, m)), EvidenceFormatError);
        typedOnly(() => parseCertTable(good.certTable.subarray(0, cut)), EvidenceFormatError);
      }),
      { numRuns: 500 },
    );
  });

  it("parseVek / parseCert / splitCertificates: random, mutated, truncated DER and PEM text → typed errors only", () => {
    const vek = realVcek ?? good.vek;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
        typedOnly(() => parseVek(b), EvidenceFormatError);
        typedOnly(() => parseCert(b), EvidenceFormatError);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(mutation(vek.length), (m) => typedOnly(() => parseVek(mutate(vek, m)), EvidenceFormatError)),
      { numRuns: 600 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) =>
        typedOnly(
          () => splitCertificates(`-----BEGIN CERTIFICATE-----\n${s}\n-----END CERTIFICATE-----`).map(parseCert),
          EvidenceFormatError,
        ),
      ),
      { numRuns: 300 },
    );
  });

  it("checkCrl: random and mutated CRLs → a failed result, never an exception", async () => {
    const crl = await sim.crl({ revoke: ["ask"] });
    const ark = parseCert(sim.caCerts.ark);
    const ask = parseCert(sim.caCerts.ask);
    fc.assert(
      fc.property(mutation(crl.length), (m) => {
        const c = mutate(crl, m);
        const r = checkCrl(c, ark, ask, new Date());
        // The genuine CRL revokes the ASK; no mutation may turn that into a clean bill.
        expect(r.ok).toBe(false);
      }),
      { numRuns: 400 },
    );
  });

  it("decodeTcb: any 8 bytes for any product; other lengths are EvidenceFormatError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), fc.constantFrom("Milan", "Genoa", "Turin" as const), (b, p) =>
        typedOnly(() => decodeTcb(b, p), EvidenceFormatError),
      ),
      { numRuns: 300 },
    );
  });

  it("parsePolicy: arbitrary JSON → Policy or PolicyError", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => typedOnly(() => parsePolicy(v), PolicyError)),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.constantFrom(
            "measurements",
            "vmpl",
            "minTcb",
            "hostData",
            "allowDebug",
            "products",
            "minAbi",
            "minFirmware",
            "allowedChipIds",
            "x",
          ),
          fc.jsonValue(),
        ),
        (snp) => typedOnly(() => parsePolicy({ snp }), PolicyError),
      ),
      { numRuns: 500 },
    );
  });
});

describe("appraise() fuzzing: never a crash, never an accept", () => {
  it("sanity: the unmutated simulated evidence is accepted", async () => {
    expect(
      (await appraise({ kind: "snp", report: good.report, certTable: good.certTable }, {}, { trust })).accepted,
    ).toBe(true);
  });

  it("mutated reports and certificate tables are always rejected", async () => {
    await fc.assert(
      fc.asyncProperty(mutation(REPORT_SIZE), mutation(good.certTable.length), fc.boolean(), async (mr, mt, both) => {
        const report = mutate(good.report, mr);
        const certTable = both ? mutate(good.certTable, mt) : good.certTable;
        if (!changed(report, good.report)) return;
        const v = await appraise(
          { kind: "snp", report, certTable },
          { snp: { allowDebug: true, allowMigrationAgent: true } },
          { trust },
        );
        expect(v.accepted).toBe(false);
        expect(v.checks.some((c) => !c.ok)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("mutated certificate tables with the genuine report never crash the verifier", async () => {
    const evidenceOnly: TrustConfig = { snp: { simulated: [{ ...sim.trustAnchor, caCerts: [] }] } };
    await fc.assert(
      fc.asyncProperty(mutation(good.certTable.length), async (mt) => {
        const certTable = mutate(good.certTable, mt);
        const v = await appraise({ kind: "snp", report: good.report, certTable }, {}, { trust: evidenceOnly });
        // A mutation may hit bytes no verifier reads (e.g. an unused cert field is still signed, so it cannot);
        // whenever it is accepted, the VCEK, ASK and ARK bytes that were used must be the genuine ones.
        if (v.accepted)
          expect(
            changed(certTable, good.certTable)
              ? parseCertTable(certTable).every((e, i) => !changed(e.data, parseCertTable(good.certTable)[i].data))
              : true,
          ).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("random evidence objects of every shape → a rejected verdict, never an exception", async () => {
    const bytes = fc.uint8Array({ maxLength: 1400 });
    const evidence = fc.oneof(
      fc.record({
        kind: fc.constant("snp" as const),
        report: bytes,
        certTable: fc.option(bytes, { nil: undefined }),
        vek: fc.option(bytes, { nil: undefined }),
        caChain: fc.option(fc.array(bytes, { maxLength: 3 }), { nil: undefined }),
      }),
      fc.record({ kind: fc.constant("snp" as const), report: fc.constant(good.report), vek: bytes }),
      fc.record({ kind: fc.constantFrom("bogus", "", "snp"), report: fc.anything() }),
    );
    await fc.assert(
      fc.asyncProperty(evidence, async (ev) => {
        const v = await appraise(ev as never, {}, { trust });
        expect(v.accepted).toBe(false);
        expect(v.checks.length).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });
});
