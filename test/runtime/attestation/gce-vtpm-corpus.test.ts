// Real Google Compute Engine vTPM evidence (test/fixtures/gce/PROVENANCE.md): AK certificates of both Google
// hierarchies verified to the pinned roots and bound to the quoting key, go-tpm-tools' recorded COS 85
// attestations (quotes over three banks + event log) verified with our TPM verifier, and the recorded GCE
// event logs replayed to the PCR values go-tpm-tools' tests state for them. Every positive has one-bit negatives.
import { describe, expect, it } from "vitest";
import { X509Certificate, createHash, createPublicKey, verify as cryptoVerify } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "../../support/shared.js";
import {
  parseEventLog,
  parseTpmPublic,
  parseTpmsAttest,
  replayEventLog,
  verifyTpmEvidence,
  type HashName,
} from "../../../runtime/attestation/tpm/index.js";
import { parseGceInstanceInfo, verifyGceAkCertificate } from "../../../runtime/attestation/gce/ak-cert.js";
import {
  GCE_AK_INTERMEDIATES,
  GCE_AK_ROOTS,
  GCE_EK_AK_CA_ROOT_SHA256,
  GCE_EK_ROOT_1_SHA256,
} from "../../../runtime/attestation/gce/ak-roots.js";
import { certFingerprint, certsFrom } from "../../../runtime/attestation/gce/x509.js";
import { asTpmEvidence, flipBit, gceFixture, parseGoTpmToolsAttestation } from "./gce-fixtures.js";

const NOW = new Date("2026-12-01T00:00:00Z");
const expectedPcrs = JSON.parse(
  readFileSync(path.join(repoRoot, "test/fixtures/gce/go-tpm-tools/expected-pcrs.json"), "utf8"),
) as Record<string, { banks: Record<string, Record<string, string>> }>;

describe("GCE AK roots", () => {
  it("pins exactly the two bundled roots by SHA-256 (self-signed)", () => {
    expect(GCE_AK_ROOTS.map(certFingerprint).sort()).toEqual([GCE_EK_AK_CA_ROOT_SHA256, GCE_EK_ROOT_1_SHA256].sort());
  });
});

describe("GCE AK certificate, EK/AK CA hierarchy (salrashid123/gcp-vtpm-ek-ak, n2d confidential VM, 2024)", () => {
  const certDer = certsFrom(Buffer.from(gceFixture("salrashid123-gcp-vtpm-ek-ak", "akcert.pem")).toString())[0];

  it("the certified key is the VM's AK: it verifies the AK's recorded signature over 'foobar'", () => {
    const sig = Buffer.from(
      Buffer.from(gceFixture("salrashid123-gcp-vtpm-ek-ak", "signature-foobar.b64")).toString(),
      "base64",
    );
    const certKey = new X509Certificate(certDer).publicKey;
    expect(cryptoVerify("sha256", Buffer.from("foobar"), certKey, sig)).toBe(true);
    expect(cryptoVerify("sha256", Buffer.from("foobaR"), certKey, sig)).toBe(false);
  });

  it("chains to the pinned EK/AK CA Root and names the instance", () => {
    const certKey = new X509Certificate(certDer).publicKey;
    const r = verifyGceAkCertificate(certDer, certKey, { now: NOW });
    expect(r.check.ok, r.check.detail).toBe(true);
    expect(r.check.detail).toContain("EK/AK CA Root");
    expect(r.instance).toEqual({
      zone: "us-central1-a",
      projectNumber: "995081019036",
      projectId: "core-eso",
      instanceId: "6524697943022743941",
      instanceName: "instance-1",
      securityVersion: "0",
      isProduction: true,
    });
  });

  it("one bit flipped in the certificate's signature → refused", () => {
    const certKey = new X509Certificate(certDer).publicKey;
    const bad = flipBit(certDer, certDer.length - 10);
    const r = verifyGceAkCertificate(bad, certKey, { now: NOW });
    expect(r.check.ok).toBe(false);
    expect(r.check.detail).toMatch(/no trusted issuer/);
  });

  it("a certificate of another key than the quoting AK → refused", () => {
    const cos = parseGoTpmToolsAttestation(gceFixture("go-tpm-tools", "gce-cos-85-nonce9009.pb"));
    const otherAk = parseTpmPublic(cos.akPub, { sized: false }).key;
    const r = verifyGceAkCertificate(certDer, otherAk, { now: NOW });
    expect(r.check.ok).toBe(false);
    expect(r.check.detail).toMatch(/certifies another key/);
  });

  it("a chain to a root that is not pinned → refused, even with the real intermediate", () => {
    const certKey = new X509Certificate(certDer).publicKey;
    const r = verifyGceAkCertificate(certDer, certKey, {
      now: NOW,
      roots: { certs: [...GCE_AK_ROOTS], fingerprints: ["00".repeat(32)] },
    });
    expect(r.check.ok).toBe(false);
  });

  it("before the certificate's validity → refused", () => {
    const certKey = new X509Certificate(certDer).publicKey;
    expect(verifyGceAkCertificate(certDer, certKey, { now: new Date("2024-01-01T00:00:00Z") }).check.ok).toBe(false);
  });

  it("instance-identity extension: strict DER (truncation and wrong tags refused)", () => {
    const ext = Buffer.from(
      "30590c0d75732d63656e7472616c312d61020600e7af735e9c0c08636f72652d65736f02085a8c6235b897b1850c0a696e7374616e63652d31a020301ea003020100a1030101ffa2030101ffa3030101" +
        "00a403010100a503010100",
      "hex",
    );
    expect(parseGceInstanceInfo(ext).instanceName).toBe("instance-1");
    expect(() => parseGceInstanceInfo(ext.subarray(0, ext.length - 1))).toThrow(/ak_cert.gce_instance_info/);
    expect(() => parseGceInstanceInfo(flipBit(ext, 2, 3))).toThrow(/UTF8String/);
  });
});

describe("go-tpm-tools recorded GCE attestations (COS 85, AMD SEV, tpm_ek_v1 hierarchy)", () => {
  for (const [file, nonce] of [
    ["gce-cos-85-nonce9009.pb", Uint8Array.from([0x90, 0x09])],
    ["gce-cos-85-no-nonce.pb", new Uint8Array(0)],
  ] as const) {
    const a = parseGoTpmToolsAttestation(gceFixture("go-tpm-tools", file));
    const ak = parseTpmPublic(a.akPub, { sized: false });

    it(`${file}: the AK certificate chains to the pinned GCE EK root and certifies the quoting AK`, () => {
      const r = verifyGceAkCertificate(a.akCert, ak.key, { now: NOW, intermediates: a.intermediates });
      expect(r.check.ok, r.check.detail).toBe(true);
      expect(r.check.detail).toContain("tpm_ek_v1_cloud_host_root");
    });

    it(`${file}: every bank's quote verifies, the nonce is the recorded one, the event log replays`, () => {
      expect(a.quotes.map((q) => q.hash)).toEqual(["sha1", "sha256", "sha384"]);
      for (const q of a.quotes) {
        const v = verifyTpmEvidence(asTpmEvidence(a, q), { nonce });
        const failed = v.checks.filter((c) => !c.ok);
        expect(failed, JSON.stringify(failed)).toEqual([]);
        // PCR 10 is IMA's (its own log): quoted, not in the boot log, so never believed.
        expect(v.replayed[q.hash]).toEqual(
          Object.keys(q.pcrs)
            .map(Number)
            .filter((i) => i !== 10),
        );
        expect(v.checks.find((c) => c.id === "tpm.event-log-replay")!.detail).toContain(
          `not in the boot log (not believed): ${q.hash}:PCR10`,
        );
      }
    });

    it(`${file}: one-bit negatives — quote, signature, PCR value, event digest, nonce`, () => {
      const q = a.quotes.find((x) => x.hash === "sha256")!;
      const ev = asTpmEvidence(a, q);
      const fails = (e: typeof ev, id: string, n = nonce) => {
        const c = verifyTpmEvidence(e, { nonce: n }).checks.find((x) => x.id === id);
        expect(c?.ok, `${id}: ${c?.detail}`).toBe(false);
      };
      fails({ ...ev, quote: flipBit(ev.quote, ev.quote.length - 1) }, "tpm.quote-signature");
      fails({ ...ev, signature: flipBit(ev.signature, ev.signature.length - 1) }, "tpm.quote-signature");
      fails({ ...ev, pcrs: { sha256: { ...q.pcrs, 4: flipBit(q.pcrs[4], 0) } } }, "tpm.pcr-digest");
      const log = parseEventLog(a.eventLog);
      const sep = log.events.find((e) => e.pcr === 4)!;
      const at = Buffer.from(a.eventLog).indexOf(Buffer.from(sep.digests.sha256!), sep.offset);
      fails({ ...ev, eventLog: flipBit(a.eventLog, at) }, "tpm.event-log-replay");
      fails(ev, "tpm.nonce", Uint8Array.from([0x90, 0x0a]));
      // The AK certificate of this VM does not certify a key with one bit changed.
      const r = verifyGceAkCertificate(flipBit(a.akCert, a.akCert.length - 300), ak.key, { now: NOW });
      expect(r.check.ok).toBe(false);
    });
  }
});

describe("recorded GCE event logs replay to go-tpm-tools' expected PCRs", () => {
  for (const [file, exp] of Object.entries(expectedPcrs)) {
    const raw = gceFixture("go-tpm-tools", file);
    it(`${file}: ${Object.keys(exp.banks).join(" + ")}`, () => {
      const log = parseEventLog(raw);
      for (const [bank, pcrs] of Object.entries(exp.banks)) {
        const got = replayEventLog(log, bank as HashName);
        for (const [i, want] of Object.entries(pcrs))
          expect(got[Number(i)]?.toString("hex"), `${bank} PCR${i}`).toBe(want);
      }
    });
    it(`${file}: one bit flipped in a PCR 4 digest changes PCR 4 in every bank it touches`, () => {
      const log = parseEventLog(raw);
      const e = log.events.find((x) => x.pcr === 4)!;
      const at = Buffer.from(raw).indexOf(Buffer.from(e.digests.sha256!), e.offset);
      const bad = parseEventLog(flipBit(raw, at + 5, 2));
      expect(replayEventLog(bad, "sha256")[4].toString("hex")).not.toBe(exp.banks.sha256["4"]);
      expect(replayEventLog(bad, "sha1")[4].toString("hex")).toBe(exp.banks.sha1["4"]);
    });
  }
});

// A TDX VM's vTPM (lockboot/vaportpm, c3 TDX VM in us-central1-a, 2026-02-03; PROVENANCE.md): an ECC P-256 AK
// certificate issued by the 2024 "EK/AK CA Intermediate", and a TPM2_Quote over the SHA-256 bank. No AK
// TPMT_PUBLIC and no event log were recorded, so the quote is checked with our TPMS_ATTEST parser and the
// certificate's key rather than the full verifyTpmEvidence (no ak-attributes check, no replay).
describe("GCE TDX VM vTPM (lockboot/vaportpm test-gcp-tdx-fixture.json, 2026)", () => {
  const fx = JSON.parse(Buffer.from(gceFixture("vaportpm", "test-gcp-tdx-fixture.json")).toString()) as {
    nonce: string;
    pcrs: { sha256: Record<string, string> };
    ak_pubkeys: { ecc_p256: { x: string; y: string } };
    attestation: { tpm: { ecc_p256: { attest_data: string; signature: string } }; gcp: { ak_cert_chain: string } };
  };
  const [leaf, intermediate, root] = certsFrom(fx.attestation.gcp.ak_cert_chain);
  const b64u = (h: string) => Buffer.from(h, "hex").toString("base64url");
  const akKey = createPublicKey({
    key: { kty: "EC", crv: "P-256", x: b64u(fx.ak_pubkeys.ecc_p256.x), y: b64u(fx.ak_pubkeys.ecc_p256.y) },
    format: "jwk",
  });
  const attest = Buffer.from(fx.attestation.tpm.ecc_p256.attest_data, "hex");
  const sig = Buffer.from(fx.attestation.tpm.ecc_p256.signature, "hex");
  const pcrs = Array.from({ length: 24 }, (_, i) => Buffer.from(fx.pcrs.sha256[String(i)], "hex"));

  it("the recorded chain is Google's: its root is the pinned EK/AK CA Root, its intermediate the bundled 2024 one", () => {
    expect(certFingerprint(root)).toBe(GCE_EK_AK_CA_ROOT_SHA256);
    expect(GCE_AK_INTERMEDIATES.map(certFingerprint)).toContain(certFingerprint(intermediate));
    expect(certFingerprint(intermediate)).toBe("02f507068014de60d15fee5901513a03040baa922143143bc50288b55b24bceb");
  });

  it("the leaf alone (as the guest sends it) chains to the pinned root and certifies the quoting AK", () => {
    const r = verifyGceAkCertificate(leaf, akKey, { now: NOW });
    expect(r.check.ok, r.check.detail).toBe(true);
    expect(r.check.detail).toContain("EK/AK CA Intermediate");
    expect(r.check.detail).toContain("EK/AK CA Root");
    expect(r.instance).toMatchObject({
      zone: "us-central1-a",
      projectId: "lockboot",
      instanceId: "2141209421113254303",
      instanceName: "instance-20260203-023447",
      isProduction: true,
    });
  });

  it("without the 2024 intermediate (go-tpm-tools' set alone) the leaf is refused: why it is bundled", () => {
    const r = verifyGceAkCertificate(leaf, akKey, {
      now: NOW,
      roots: {
        certs: [...GCE_AK_ROOTS],
        fingerprints: [GCE_EK_AK_CA_ROOT_SHA256, GCE_EK_ROOT_1_SHA256],
        intermediates: GCE_AK_INTERMEDIATES.filter((c) => certFingerprint(c) !== certFingerprint(intermediate)),
      },
    });
    expect(r.check.ok).toBe(false);
  });

  it("one-bit negatives on the certificate: its signature, and the key it must certify", () => {
    expect(verifyGceAkCertificate(flipBit(leaf, leaf.length - 10), akKey, { now: NOW }).check.ok).toBe(false);
    const cos = parseGoTpmToolsAttestation(gceFixture("go-tpm-tools", "gce-cos-85-nonce9009.pb"));
    const r = verifyGceAkCertificate(leaf, parseTpmPublic(cos.akPub, { sized: false }).key, { now: NOW });
    expect(r.check.detail).toMatch(/certifies another key/);
  });

  it("the quote: signed by the certified AK, nonce in extraData, PCR 0-23 SHA-256 hash to pcrDigest", () => {
    const certKey = new X509Certificate(leaf).publicKey;
    expect(cryptoVerify("sha256", attest, certKey, sig)).toBe(true);
    const a = parseTpmsAttest(attest);
    expect(Buffer.from(a.extraData).toString("hex")).toBe(fx.nonce);
    expect(a.pcrSelections.map((s) => [s.hash, s.pcrs])).toEqual([["sha256", [...Array(24).keys()]]]);
    expect(Buffer.from(a.pcrDigest).equals(createHash("sha256").update(Buffer.concat(pcrs)).digest())).toBe(true);
  });

  it("one-bit negatives on the quote: message, signature, a PCR value, the nonce", () => {
    const certKey = new X509Certificate(leaf).publicKey;
    expect(cryptoVerify("sha256", flipBit(attest, attest.length - 1), certKey, sig)).toBe(false);
    expect(cryptoVerify("sha256", attest, certKey, flipBit(sig, 10))).toBe(false);
    const a = parseTpmsAttest(attest);
    const bad = pcrs.map((p, i) => (i === 7 ? Buffer.from(flipBit(p, 0)) : p));
    expect(Buffer.from(a.pcrDigest).equals(createHash("sha256").update(Buffer.concat(bad)).digest())).toBe(false);
    expect(Buffer.from(a.extraData).equals(Buffer.from(flipBit(Buffer.from(fx.nonce, "hex"), 0)))).toBe(false);
  });
});
