// Known-answer tests of the ML-KEM-768 (FIPS 203) and ML-DSA-65 (FIPS 204) implementation the kit uses
// (@noble/post-quantum), against a handful of NIST ACVP vectors committed under test/fixtures/pq-acvp/
// (provenance in each file: the ACVP-Server JSON as shipped in the kyber-py / dilithium-py sdists, with
// their SHA-256). Then the same operations through the kit's own modules: the hybrid seal's ML-KEM key
// check and the AKP JWK / ML-DSA JWS code (runtime/attestation/ml-dsa-jose.ts).
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { ml_dsa65 } from "@noble/post-quantum/ml-dsa.js";
import { checkMlKemPublicKey } from "../../../runtime/attestation/hybrid-seal.js";
import { akpPrivateKey, akpPublicKey } from "../../../runtime/attestation/ml-dsa-jose.js";
import { repoRoot } from "../../support/shared.js";

const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex").toUpperCase();
const fixture = (name: string) =>
  JSON.parse(readFileSync(path.join(repoRoot, "test/fixtures/pq-acvp", name), "utf8")) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const kem = fixture("ml-kem-768.json");
const dsa = fixture("ml-dsa-65.json");

describe("ML-KEM-768 ACVP vectors (FIPS 203)", () => {
  it("records where the vectors come from", () => {
    expect(kem.parameterSet).toBe("ML-KEM-768");
    for (const p of kem.provenance) expect(p.file_sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  for (const t of kem.keyGen)
    it(`keyGen tcId ${t.tcId}: (d, z) → ek, dk`, () => {
      const { publicKey, secretKey } = ml_kem768.keygen(new Uint8Array([...hex(t.d), ...hex(t.z)]));
      expect(toHex(publicKey)).toBe(t.ek);
      expect(toHex(secretKey)).toBe(t.dk);
      // The kit's FIPS 203 encapsulation-key check accepts a genuine key.
      expect(checkMlKemPublicKey(publicKey)).toBe(publicKey);
    });

  for (const t of kem.encapsulation)
    it(`encapsulation tcId ${t.tcId}: (ek, m) → c, K`, () => {
      const { cipherText, sharedSecret } = ml_kem768.encapsulate(hex(t.ek), hex(t.m));
      expect(toHex(cipherText)).toBe(t.c);
      expect(toHex(sharedSecret)).toBe(t.k);
    });

  for (const t of kem.decapsulation.tests)
    it(`decapsulation tcId ${t.tcId} (${t.reason}): c → K (implicit rejection included)`, () => {
      expect(toHex(ml_kem768.decapsulate(hex(t.c), hex(kem.decapsulation.dk)))).toBe(t.k);
    });
});

describe("ML-DSA-65 ACVP vectors (FIPS 204)", () => {
  for (const t of dsa.keyGen)
    it(`keyGen tcId ${t.tcId}: seed → pk, sk; the AKP JWK of the seed yields the same keys`, () => {
      const { publicKey, secretKey } = ml_dsa65.keygen(hex(t.seed));
      expect(toHex(publicKey)).toBe(t.pk);
      expect(toHex(secretKey)).toBe(t.sk);
      const pub = Buffer.from(hex(t.pk)).toString("base64url");
      const priv = Buffer.from(hex(t.seed)).toString("base64url");
      const k = akpPrivateKey({ kty: "AKP", alg: "ML-DSA-65", pub, priv });
      expect(toHex(k.secretKey)).toBe(t.sk);
      expect(toHex(akpPublicKey({ kty: "AKP", alg: "ML-DSA-65", pub }))).toBe(t.pk);
    });

  for (const t of dsa.sigGen)
    it(`sigGen tcId ${t.tcId} (${t.deterministic ? "deterministic" : "hedged, given rnd"}): Sign_internal`, () => {
      const sig = ml_dsa65.internal.sign(hex(t.message), hex(t.sk), {
        extraEntropy: t.deterministic ? false : hex(t.rnd),
      });
      expect(toHex(sig)).toBe(t.signature);
    });

  for (const t of dsa.sigVer.tests)
    it(`sigVer tcId ${t.tcId} (${t.reason}): ${t.testPassed ? "accepted" : "refused"}`, () => {
      expect(ml_dsa65.internal.verify(hex(t.signature), hex(t.message), hex(dsa.sigVer.pk))).toBe(t.testPassed);
    });
});
