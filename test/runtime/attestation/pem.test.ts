// PEM text (runtime/attestation/pem.ts): the one writer and reader every certificate, key and CRL goes through.
import { describe, expect, it } from "vitest";
import { X509Certificate, createPrivateKey, generateKeyPairSync } from "node:crypto";
import { pemDecode, pemEncode } from "../../../runtime/attestation/pem.js";
import { AWS_NITRO_ROOT_G1_PEM } from "../../../runtime/attestation/aws/roots.js";
import { EvidenceFormatError } from "../../../runtime/attestation/types.js";

describe("pemEncode / pemDecode", () => {
  it("round-trips a real certificate byte for byte, in 64-column lines that node reads", () => {
    const der = new X509Certificate(AWS_NITRO_ROOT_G1_PEM).raw;
    const text = pemEncode("CERTIFICATE", der);
    expect(text).toBe(AWS_NITRO_ROOT_G1_PEM);
    expect(text.split("\n").every((l) => l.length <= 64)).toBe(true);
    expect(Buffer.from(pemDecode(text)[0]).equals(der)).toBe(true);
    expect(new X509Certificate(text).raw.equals(der)).toBe(true);
  });

  it("writes a private key node imports, and reads several blocks of one label in order, ignoring others", () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const pkcs8 = privateKey.export({ type: "pkcs8", format: "der" });
    const keyText = pemEncode("PRIVATE KEY", pkcs8);
    expect(createPrivateKey(keyText).export({ type: "pkcs8", format: "der" }).equals(pkcs8)).toBe(true);
    const bundle =
      pemEncode("CERTIFICATE", Buffer.from([1, 2, 3])) + keyText + pemEncode("CERTIFICATE", Buffer.from([4]));
    expect(pemDecode(bundle).map((d) => [...d])).toEqual([[1, 2, 3], [4]]);
    expect(pemDecode(bundle, "PRIVATE KEY")).toHaveLength(1);
    expect(pemDecode("no pem here")).toEqual([]);
  });

  it("refuses a block that is not base64, naming the field and the block", () => {
    const bad =
      pemEncode("CERTIFICATE", Buffer.from([1])) + "-----BEGIN CERTIFICATE-----\nAA*A\n-----END CERTIFICATE-----\n";
    expect(() => pemDecode(bad, "CERTIFICATE", "pck_cert_chain")).toThrow(EvidenceFormatError);
    expect(() => pemDecode(bad, "CERTIFICATE", "pck_cert_chain")).toThrow(
      /^pck_cert_chain: certificate 1 is not base64$/,
    );
  });
});
