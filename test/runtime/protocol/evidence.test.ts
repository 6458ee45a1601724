// The wire evidence format (runtime/protocol/evidence.ts): encode/decode round trips for every kind,
// strict refusals naming the field, and fast-check fuzzing of the decoder (only WireFormatError escapes).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import type { Evidence } from "../../../runtime/attestation/types.js";
import { decodeEvidence, encodeEvidence, type WireEvidence } from "../../../runtime/protocol/evidence.js";
import { WireFormatError } from "../../../runtime/protocol/errors.js";
import { evidenceFromJson } from "../../../runtime/server/nitride/evidence-json.js";
import { LogicalError } from "../../../runtime/server/vault/backend.js";

const bytes = (n: number, fill = 7) => new Uint8Array(n).fill(fill);
const tpm = { message: bytes(10, 1), signature: bytes(256, 2), pcrs: { 0: bytes(32, 3), 23: bytes(32, 4) } };
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

const SAMPLES: Evidence[] = [
  { kind: "snp", report: bytes(1184) },
  { kind: "snp", report: bytes(1184), certTable: bytes(100, 9), vek: bytes(1300, 5) },
  { kind: "tdx", quote: bytes(5000) },
  { kind: "azure-snp", hclReport: bytes(2600), tpmQuote: tpm },
  { kind: "azure-snp", hclReport: bytes(2600), tpmQuote: tpm, vcekChainPem: PEM },
  { kind: "azure-tdx", hclReport: bytes(2600), tdQuote: bytes(5000), tpmQuote: tpm },
  { kind: "azure-snp", hclReport: bytes(2600), tpmQuote: tpm, vcekChainPem: PEM, eventLog: bytes(700, 6) },
  { kind: "azure-tdx", hclReport: bytes(2600), tdQuote: bytes(5000), tpmQuote: tpm, eventLog: bytes(700, 6) },
  {
    kind: "snp",
    report: bytes(1184),
    vtpm: {
      akPublic: bytes(90, 1),
      quote: bytes(120, 2),
      signature: bytes(72, 3),
      eventLog: bytes(500, 4),
      pcrs: { sha256: { 4: bytes(32, 5) } },
      akCertificate: bytes(1400, 6),
      akIntermediates: [bytes(1500, 8)],
    },
  },
];

function expectFieldError(v: unknown, field: RegExp): void {
  try {
    decodeEvidence(v);
    expect.unreachable(`accepted ${JSON.stringify(v).slice(0, 80)}`);
  } catch (e) {
    expect(e).toBeInstanceOf(WireFormatError);
    expect((e as WireFormatError).field).toMatch(field);
  }
}

describe("wire evidence", () => {
  it.each(SAMPLES.map((e) => [e.kind, e]))("round-trips %s (encode → JSON → decode)", (_k, e) => {
    const wire = JSON.parse(JSON.stringify(encodeEvidence(e))) as WireEvidence;
    expect(decodeEvidence(wire)).toEqual(e);
    expect(encodeEvidence(decodeEvidence(wire))).toEqual(wire);
  });

  it("carries the fields the agent's old type lacked (vek, vcek_chain_pem)", () => {
    const w = encodeEvidence(SAMPLES[1]);
    expect(w).toMatchObject({ kind: "snp", vek: expect.any(String), cert_table: expect.any(String) });
    expect(encodeEvidence(SAMPLES[4])).toMatchObject({ vcek_chain_pem: PEM });
  });

  it("accepts base64url and unpadded base64 (as before), decoding to the same bytes", () => {
    const raw = Buffer.from([0xfb, 0xff, 0xfe, 1, 2]);
    for (const text of [raw.toString("base64"), raw.toString("base64url"), raw.toString("base64").replace(/=+$/, "")])
      expect(decodeEvidence({ kind: "tdx", quote: text })).toEqual({ kind: "tdx", quote: new Uint8Array(raw) });
  });

  it("refuses hostile and malformed input, naming the field", () => {
    const ok = encodeEvidence(SAMPLES[3]) as Extract<WireEvidence, { kind: "azure-snp" }>;
    expectFieldError(null, /^evidence$/);
    expectFieldError([], /^evidence$/);
    expectFieldError("snp", /^evidence$/);
    expectFieldError({}, /^evidence\.kind$/);
    expectFieldError({ kind: "sgx", quote: "AA==" }, /^evidence\.kind$/);
    expectFieldError({ kind: "__proto__" }, /^evidence\.kind$/);
    expectFieldError({ kind: "snp" }, /^evidence\.report$/);
    expectFieldError({ kind: "snp", report: "" }, /^evidence\.report$/);
    expectFieldError({ kind: "snp", report: 42 }, /^evidence\.report$/);
    expectFieldError({ kind: "snp", report: "AAAA", certTable: "AAAA" }, /^evidence\.certTable$/);
    expectFieldError({ kind: "snp", report: "AA-A+A==" }, /^evidence\.report$/); // mixed alphabets
    expectFieldError({ kind: "snp", report: "A" }, /^evidence\.report$/); // impossible length
    expectFieldError({ kind: "snp", report: "AB==" }, /^evidence\.report$/); // non-zero trailing bits
    expectFieldError({ kind: "snp", report: "AA=" }, /^evidence\.report$/); // bad padding
    expectFieldError({ kind: "snp", report: "AAAA\n" }, /^evidence\.report$/);
    expectFieldError({ kind: "tdx", quote: "AAAA", report: "AAAA" }, /^evidence\.report$/);
    expectFieldError({ ...ok, tpm_quote: "x" }, /^evidence\.tpm_quote$/);
    expectFieldError({ ...ok, tpm_quote: { ...ok.tpm_quote, pcrs: [] } }, /^evidence\.tpm_quote\.pcrs$/);
    expectFieldError({ ...ok, tpm_quote: { ...ok.tpm_quote, pcrs: { 24: "AAAA" } } }, /^evidence\.tpm_quote\.pcrs$/);
    expectFieldError({ ...ok, tpm_quote: { ...ok.tpm_quote, pcrs: { "07": "AAAA" } } }, /^evidence\.tpm_quote\.pcrs$/);
    expectFieldError({ ...ok, tpm_quote: { ...ok.tpm_quote, pcrs: { 7: 1 } } }, /^evidence\.tpm_quote\.pcrs\.7$/);
    expectFieldError({ ...ok, tpm_quote: { ...ok.tpm_quote, extra: 1 } }, /^evidence\.tpm_quote\.extra$/);
    expectFieldError({ ...ok, vcek_chain_pem: 5 }, /^evidence\.vcek_chain_pem$/);
    expectFieldError({ ...ok, vcek_chain_pem: "not a pem" }, /^evidence\.vcek_chain_pem$/);
    expectFieldError({ kind: "azure-tdx", hcl_report: "AAAA", tpm_quote: ok.tpm_quote }, /^evidence\.td_quote$/);
    // The Azure event log: strict base64, never empty, and only where the kind has one.
    expectFieldError({ ...ok, event_log: "" }, /^evidence\.event_log$/);
    expectFieldError({ ...ok, event_log: "AB==" }, /^evidence\.event_log$/);
    expectFieldError({ ...ok, event_log: 7 }, /^evidence\.event_log$/);
    expectFieldError({ ...ok, eventLog: "AAAA" }, /^evidence\.eventLog$/);
    expectFieldError(
      { kind: "azure-tdx", hcl_report: "AAAA", td_quote: "AAAA", tpm_quote: ok.tpm_quote, event_log: "A" },
      /^evidence\.event_log$/,
    );
    expectFieldError({ kind: "tdx", quote: "AAAA", event_log: "AAAA" }, /^evidence\.event_log$/);
  });

  it("the runtime answers a malformed evidence with a 400 naming the field", () => {
    try {
      evidenceFromJson({ kind: "snp", report: "A" }, "evidence");
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(LogicalError);
      expect((e as LogicalError).status).toBe(400);
      expect((e as Error).message).toMatch(/^evidence\.report: /);
    }
  });

  const arbBytes = (max: number) => fc.uint8Array({ minLength: 1, maxLength: max });
  const arbTpm = fc.record({
    message: arbBytes(64),
    signature: arbBytes(64),
    pcrs: fc.dictionary(fc.integer({ min: 0, max: 23 }).map(String), fc.uint8Array({ minLength: 32, maxLength: 32 })),
  });
  const arbEvidence: fc.Arbitrary<Evidence> = fc.oneof(
    fc.record(
      { kind: fc.constant("snp" as const), report: arbBytes(200), certTable: arbBytes(50), vek: arbBytes(50) },
      { requiredKeys: ["kind", "report"] },
    ),
    fc.record({ kind: fc.constant("tdx" as const), quote: arbBytes(200) }),
    fc.record(
      { kind: fc.constant("azure-snp" as const), hclReport: arbBytes(100), tpmQuote: arbTpm, eventLog: arbBytes(100) },
      { requiredKeys: ["kind", "hclReport", "tpmQuote"] },
    ),
    fc.record(
      {
        kind: fc.constant("azure-tdx" as const),
        hclReport: arbBytes(100),
        tdQuote: arbBytes(100),
        tpmQuote: arbTpm,
        eventLog: arbBytes(100),
      },
      { requiredKeys: ["kind", "hclReport", "tdQuote", "tpmQuote"] },
    ),
  ) as fc.Arbitrary<Evidence>;

  it("fuzz: every evidence round-trips", () => {
    fc.assert(
      fc.property(arbEvidence, (e) => {
        const wire = JSON.parse(JSON.stringify(encodeEvidence(e)));
        expect(encodeEvidence(decodeEvidence(wire))).toEqual(wire);
      }),
      { numRuns: 300 },
    );
  });

  it("fuzz: arbitrary JSON and mutated wire evidence only ever raise WireFormatError", () => {
    const mutated = fc.tuple(arbEvidence, fc.string(), fc.jsonValue()).map(([e, key, val]) => {
      const w = JSON.parse(JSON.stringify(encodeEvidence(e))) as Record<string, unknown>;
      const keys = Object.keys(w);
      w[keys[key.length % keys.length]] = val;
      return w;
    });
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), mutated, fc.anything()), (v) => {
        try {
          const e = decodeEvidence(v);
          expect(["snp", "tdx", "azure-snp", "azure-tdx"]).toContain(e.kind);
        } catch (err) {
          expect(err).toBeInstanceOf(WireFormatError);
          expect((err as WireFormatError).field).toMatch(/^evidence(\.|$)/);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe("wire evidence: GCE AK certificate", () => {
  it("refuses more than 4 intermediates or a non-list, naming the field", () => {
    const wire = encodeEvidence(SAMPLES[SAMPLES.length - 1]) as Extract<WireEvidence, { kind: "snp" }>;
    const many = { ...wire, vtpm: { ...wire.vtpm!, ak_intermediates: Array(5).fill("AAAA") } };
    expectFieldError(many, /vtpm\.ak_intermediates/);
    expectFieldError({ ...wire, vtpm: { ...wire.vtpm!, ak_intermediates: "AAAA" } }, /vtpm\.ak_intermediates/);
    expectFieldError({ ...wire, vtpm: { ...wire.vtpm!, ak_cert: "%%%" } }, /vtpm\.ak_cert/);
  });
});
