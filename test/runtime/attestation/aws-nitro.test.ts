// NitroTPM attestation documents: a real document from EC2 (provenance in aws-nitro/PROVENANCE.md) verified
// against the pinned AWS Nitro root as of its own time, cross-checked with the TPM quote taken alongside it;
// documents signed under a test root for the paths no real sample covers; one-bit negatives.
import { describe, expect, it, beforeAll } from "vitest";
import { createHash, createPublicKey, generateKeyPairSync, verify, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  AWS_NITRO_ROOT_G1_PEM,
  AWS_NITRO_ROOT_G1_SHA256,
  instanceIdOf,
  parseNitroDocument,
  validateNitroDocument,
  verifyNitroDocument,
} from "../../../runtime/attestation/aws/index.js";
import { parseTpmsAttest } from "../../../runtime/attestation/tpm/index.js";
import { EvidenceFormatError } from "../../../runtime/attestation/types.js";
import { simulatedNitroPki, cbor, type SimulatedNitroPki } from "../../../runtime/sim/nitrotpm.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = JSON.parse(readFileSync(path.join(here, "aws-nitro/vaportpm-nitro-fixture.json"), "utf8"));
const realDoc = Buffer.from(fixture.attestation.nitro.document, "hex");
const realQuote = Buffer.from(fixture.attestation.tpm.ecc_p256.attest_data, "hex");
const realQuoteSig = Buffer.from(fixture.attestation.tpm.ecc_p256.signature, "hex");
const akKey = createPublicKey({
  key: {
    kty: "EC",
    crv: "P-256",
    x: Buffer.from(fixture.ak_pubkeys.ecc_p256.x, "hex").toString("base64url"),
    y: Buffer.from(fixture.ak_pubkeys.ecc_p256.y, "hex").toString("base64url"),
  },
  format: "jwk",
});
const realAk = { tpm2bPublic: new Uint8Array(0), key: akKey };
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const failed = (checks: { id: string; ok: boolean }[]) => checks.filter((c) => !c.ok).map((c) => c.id);

describe("real NitroTPM document (EC2 i-0082f89b039c97a0f)", () => {
  const doc = parseNitroDocument(realDoc);
  const justAfter = new Date(doc.timestamp + 30_000);

  it("pins the published AWS Nitro root G1", () => {
    const der = new X509Certificate(AWS_NITRO_ROOT_G1_PEM).raw;
    expect(createHash("sha256").update(der).digest("hex")).toBe(AWS_NITRO_ROOT_G1_SHA256);
    expect(Buffer.from(doc.cabundle[0]).equals(der)).toBe(true);
  });

  it("parses module_id, SHA-384 PCRs, the chain and the request fields", () => {
    expect(doc.moduleId).toBe("i-0082f89b039c97a0f-tpm0000000000000000".slice(0, doc.moduleId.length));
    expect(instanceIdOf(doc)).toBe("i-0082f89b039c97a0f");
    expect(doc.digest).toBe("SHA384");
    expect(new Date(doc.timestamp).toISOString()).toMatch(/^2026-02-02T07:28/);
    expect([...doc.pcrs.keys()]).toEqual([...Array(24).keys()]);
    expect(doc.cabundle).toHaveLength(4);
    expect(hex(doc.nonce!)).toBe(fixture.nonce);
    expect(doc.userData).toBeUndefined();
    expect(doc.publicKey).toHaveLength(65);
  });

  it("verifies: COSE signature, chain to the AWS root at the document's time, fresh", () => {
    const v = verifyNitroDocument(realDoc, { now: justAfter });
    expect(failed(v.checks)).toEqual([]);
    expect(v.testRoot).toBe(false);
    expect(v.checks.map((c) => c.id)).toEqual([
      "aws.document-format",
      "aws.document-signature",
      "aws.document-chain",
      "aws.document-time",
    ]);
  });

  it("is stale a day later, though its chain was valid when it was signed", () => {
    const v = verifyNitroDocument(realDoc, { now: new Date(doc.timestamp + 86400_000) });
    expect(failed(v.checks)).toEqual(["aws.document-time"]);
  });

  it("the quote taken with it: same nonce, signed by public_key, pcrDigest over the AWS-signed PCRs", () => {
    const q = parseTpmsAttest(realQuote);
    expect(hex(q.extraData)).toBe(hex(doc.nonce!));
    expect(q.pcrSelections).toEqual([{ hashAlg: 0x000c, hash: "sha384", pcrs: [...Array(24).keys()] }]);
    expect(verify("sha256", realQuote, akKey, realQuoteSig)).toBe(true);
    const h = createHash("sha256");
    for (let i = 0; i < 24; i++) h.update(doc.pcrs.get(i)!);
    expect(hex(h.digest())).toBe(hex(q.pcrDigest));
    const quotedSha384 = Object.fromEntries([...doc.pcrs].map(([i, v]) => [i, hex(v)]));
    const checks = validateNitroDocument(doc, {
      nonce: q.extraData,
      ak: realAk,
      quotedSha384,
      instanceIds: ["i-0082f89b039c97a0f"],
    });
    expect(failed(checks)).toEqual([]);
  });

  it("refuses another nonce, another AK, another PCR value, another instance", () => {
    const quotedSha384 = Object.fromEntries([...doc.pcrs].map(([i, v]) => [i, hex(v)]));
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
    const bad = { ...quotedSha384, 4: "00".repeat(48) };
    expect(failed(validateNitroDocument(doc, { nonce: Buffer.alloc(32, 1), ak: realAk, quotedSha384 }))).toEqual([
      "aws.document-nonce",
    ]);
    expect(
      failed(
        validateNitroDocument(doc, {
          nonce: doc.nonce,
          ak: { tpm2bPublic: new Uint8Array(0), key: other },
          quotedSha384,
        }),
      ),
    ).toEqual(["aws.document-ak"]);
    expect(failed(validateNitroDocument(doc, { nonce: doc.nonce, ak: realAk, quotedSha384: bad }))).toEqual([
      "aws.document-pcrs",
    ]);
    expect(failed(validateNitroDocument(doc, { nonce: doc.nonce, ak: realAk, quotedSha384: {} }))).toEqual([
      "aws.document-pcrs",
    ]);
    expect(
      failed(
        validateNitroDocument(doc, {
          nonce: doc.nonce,
          ak: realAk,
          quotedSha384,
          instanceIds: ["i-0123456789abcdef0"],
        }),
      ),
    ).toEqual(["aws.document-instance"]);
  });

  it("one-bit flips anywhere in the document are never accepted", () => {
    // Every 7th byte keeps the run short; a flip either breaks the CBOR, a field, the signature or the chain.
    for (let i = 0; i < realDoc.length; i += 7) {
      const b = Buffer.from(realDoc);
      b[i] ^= 1 << (i % 8);
      const v = verifyNitroDocument(b, { now: justAfter });
      expect(failed(v.checks).length, `flip at byte ${i}`).toBeGreaterThan(0);
    }
  });
});

describe("NitroTPM documents under a test root", () => {
  let pki: SimulatedNitroPki;
  const now = new Date();
  const pcrs = Object.fromEntries(
    [...Array(24).keys()].map((i) => [i, createHash("sha384").update(`pcr${i}`).digest()]),
  );
  beforeAll(async () => {
    pki = await simulatedNitroPki({ now });
  });

  it("verifies only when the test root is listed, and says so", () => {
    const d = pki.document({ pcrs, nonce: Buffer.alloc(32, 7) });
    expect(failed(verifyNitroDocument(d, { now }).checks)).toEqual(["aws.document-chain"]);
    const v = verifyNitroDocument(d, { now, testRoots: [pki.rootDer] });
    expect(failed(v.checks)).toEqual([]);
    expect(v.testRoot).toBe(true);
    expect(v.checks.find((c) => c.id === "aws.document-chain")!.detail).toMatch(/TEST root/);
  });

  it("refuses a Nitro Enclaves document (pcrs instead of nitrotpm_pcrs)", () => {
    const d = pki.document({ pcrs, extra: { pcrs: new Map([[0, Buffer.alloc(48)]]) } });
    const v = verifyNitroDocument(d, { now, testRoots: [pki.rootDer] });
    expect(v.checks[0]).toMatchObject({ id: "aws.document-format", ok: false });
    expect(v.checks[0].detail).toMatch(/Nitro Enclaves document/);
  });

  it("refuses unknown payload fields, another digest, a non-ES384 header, unprotected headers", () => {
    const base = () => pki.document({ pcrs });
    expect(() => parseNitroDocument(pki.document({ pcrs, extra: { surprise: 1 } }))).toThrow(/unknown field/);
    expect(() => parseNitroDocument(pki.document({ pcrs, extra: { digest: "SHA256" } }))).toThrow(/digest/);
    // Rewrap the same payload with an ES256 header / a non-empty unprotected header.
    const parts = (b: Buffer) => {
      const d = parseNitroDocument(b);
      return { payload: d.payload, sig: d.signature };
    };
    const { payload, sig } = parts(base());
    expect(() => parseNitroDocument(cbor([cbor(new Map([[1, -7]])), new Map(), payload, sig]))).toThrow(/ES384/);
    expect(() =>
      parseNitroDocument(cbor([cbor(new Map([[1, -35]])), new Map([[4, Buffer.from("kid")]]), payload, sig])),
    ).toThrow(/unprotected/);
  });

  it("a leaf expired at the document's time fails the chain", async () => {
    const old = await simulatedNitroPki({ now: new Date(now.getTime() - 86400_000) });
    const d = old.document({ pcrs, timestamp: now.getTime() });
    const v = verifyNitroDocument(d, { now, testRoots: [old.rootDer] });
    expect(failed(v.checks)).toEqual(["aws.document-chain"]);
  });

  it("keyUsage is required: a leaf without digitalSignature or without keyUsage, an issuer without keyCertSign", async () => {
    const cases: [Parameters<typeof simulatedNitroPki>[0], RegExp][] = [
      [{ keyUsage: { leaf: null } }, /the leaf has no keyUsage extension/],
      [{ keyUsage: { leaf: 0x20 /* keyCertSign only */ } }, /the leaf keyUsage lacks digitalSignature/],
      [{ keyUsage: { intermediate: null } }, /cabundle\[1\] has no keyUsage extension/],
      [{ keyUsage: { intermediate: 0x01 /* digitalSignature only */ } }, /cabundle\[1\] keyUsage lacks keyCertSign/],
    ];
    for (const [opts, why] of cases) {
      const bad = await simulatedNitroPki({ now, ...opts });
      const v = verifyNitroDocument(bad.document({ pcrs }), { now, testRoots: [bad.rootDer] });
      expect(failed(v.checks), String(why)).toEqual(["aws.document-chain"]);
      expect(v.checks.find((c) => c.id === "aws.document-chain")!.detail).toMatch(why);
    }
  });

  it("a document signed by another leaf than the one it carries fails the signature", async () => {
    const other = await simulatedNitroPki({ now });
    const a = parseNitroDocument(pki.document({ pcrs }));
    const b = parseNitroDocument(other.document({ pcrs }));
    const forged = cbor([a.protectedHeader, new Map(), a.payload, b.signature]);
    expect(failed(verifyNitroDocument(forged, { now, testRoots: [pki.rootDer] }).checks)).toEqual([
      "aws.document-signature",
    ]);
  });

  it("parse errors are typed and name the field", () => {
    for (const bad of [Buffer.alloc(0), Buffer.from([0x9f]), Buffer.from([0x84, 0x40, 0xa0, 0x40, 0x40, 0x00])]) {
      try {
        parseNitroDocument(bad);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(EvidenceFormatError);
        expect((e as EvidenceFormatError).field).toMatch(/^nitro_document/);
      }
    }
  });
});
