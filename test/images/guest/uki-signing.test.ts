// Signing the cloud disk's UKI for Secure Boot (images/guest/disk.ts signUki, `image build --sign-key/--sign-cert`):
// a real UKI (Debian's systemd-stub + sections by objcopy, odd-sized like the kit's) signed by osslsigncode with a
// customer db key made by openssl. Checked: the same key and UKI give the same bytes; the firmware's PCR 4 digest
// (efiImageDigest) is the unsigned UKI's and is the digest the signer itself put into the signature (osslsigncode
// verify recomputes it independently); sbverify (sbsigntool, another implementation) accepts it under the
// certificate and refuses it under another; the prediction requires the UKI's signer; a key that is not the
// certificate's is refused.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { signingCertificate, signUki } from "../../../images/guest/disk.js";
import { efiImageDigest } from "../../../images/pe.js";
import { predictMeasuredBoot, ukiCarriesCertificate } from "../../../images/vtpm/index.js";
import { certificateDer } from "../../../images/vtpm/secure-boot.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { buildUki, haveUkiTools, SYSTEMD_STUB } from "../../support/uki.js";
import { dbKeyPair } from "../../support/db-key.js";

const ready =
  haveUkiTools() &&
  requireTool("openssl", haveCommand("openssl", ["version"])) &&
  requireTool("osslsigncode (the UKI signer)", haveCommand("osslsigncode", ["--version"])) &&
  requireTool("sbverify (sbsigntool)", haveCommand("sbverify", ["--help"]));

const dir = mkdtempSync(path.join(tmpdir(), "bk-uki-sign-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const keyPair = (cn: string) => dbKeyPair(dir, cn, 3650);

const fail = (why: string) => new Error(why);
const EPOCH = 1_700_000_000;

describe.runIf(ready)("the disk's UKI signed for Secure Boot with the customer's db key", () => {
  const customer = keyPair("customer db");
  const other = keyPair("another db");
  const stage = mkdtempSync(path.join(dir, "stage-"));
  // An odd-sized UKI (the kit's are too): the signer pads it, so signUki pads first.
  const uki = buildUki(mkdtempSync(path.join(dir, "uki-")), {
    ".osrel": Buffer.from('ID=debian\nVERSION_ID="12"\n'),
    ".cmdline": Buffer.from("console=ttyS0 bk.roothash=" + "ab".repeat(32) + "x"),
    ".linux": Buffer.alloc(4097, 0x5a),
  });

  it("is deterministic, keeps the PCR 4 digest, and carries the digest the signer computed", async () => {
    const a = await signUki(stage, uki, customer, EPOCH);
    const b = await signUki(stage, uki, customer, EPOCH);
    expect(a.signed.equals(b.signed)).toBe(true);
    expect(a.unsigned.length % 8).toBe(0);
    expect(a.unsigned.subarray(0, uki.length).equals(uki)).toBe(true);
    const pcr4 = efiImageDigest(a.signed, "sha256", fail);
    expect(pcr4.equals(efiImageDigest(a.unsigned, "sha256", fail))).toBe(true);
    expect(efiImageDigest(a.signed, "sha384", fail).equals(efiImageDigest(a.unsigned, "sha384", fail))).toBe(true);
    // Another signer's key: other signature bytes, the same measured digest.
    const c = await signUki(stage, uki, other, EPOCH);
    expect(c.signed.equals(a.signed)).toBe(false);
    expect(efiImageDigest(c.signed, "sha256", fail).equals(pcr4)).toBe(true);
    // Another signing time: other bytes (the time is the epoch, not the clock).
    expect((await signUki(stage, uki, customer, EPOCH + 1)).signed.equals(a.signed)).toBe(false);
    // osslsigncode recomputes the Authenticode digest itself and compares it with the signed one.
    const f = path.join(dir, "signed.efi");
    writeFileSync(f, a.signed);
    const v = spawnSync("osslsigncode", ["verify", "-in", f, "-CAfile", customer.cert], { encoding: "utf8" });
    expect(v.stdout).toMatch(new RegExp(`Calculated message digest\\s*:\\s*${pcr4.toString("hex")}`, "i"));
    expect(v.stdout).toMatch(new RegExp(`Current message digest\\s*:\\s*${pcr4.toString("hex")}`, "i"));
  });

  it("sbverify accepts it under the customer's certificate and refuses it under another", async () => {
    const { signed } = await signUki(stage, uki, customer, EPOCH);
    const f = path.join(dir, "signed-sbverify.efi");
    writeFileSync(f, signed);
    expect(spawnSync("sbverify", ["--cert", customer.cert, f]).status).toBe(0);
    expect(spawnSync("sbverify", ["--cert", other.cert, f]).status).not.toBe(0);
    // The unsigned UKI verifies under nothing.
    writeFileSync(f, uki);
    expect(spawnSync("sbverify", ["--cert", customer.cert, f]).status).not.toBe(0);
  });

  it("the prediction registers the signer's certificate; the UKI must carry it", async () => {
    const { signed, unsigned } = await signUki(stage, uki, customer, EPOCH);
    const certPem = readFileSync(customer.cert, "utf8");
    const der = certificateDer(certPem);
    expect(ukiCarriesCertificate(signed, der)).toBe(true);
    expect(ukiCarriesCertificate(unsigned, der)).toBe(false);
    expect(ukiCarriesCertificate(signed, certificateDer(readFileSync(other.cert)))).toBe(false);
    const facts = await signingCertificate(customer);
    expect(facts.certSha256).toBe(createHash("sha256").update(der).digest("hex"));
    expect(facts.subject).toContain("customer db");
    expect(JSON.stringify(facts)).not.toContain("PRIVATE KEY");
    const app = (image: Buffer) => [{ name: "uki", image }];
    const signedPolicy = predictMeasuredBoot({
      bootApplications: app(signed),
      uki: { pcr11: false },
      secureBoot: { dbCertificates: [certPem] },
    });
    const unsignedPolicy = predictMeasuredBoot({ bootApplications: app(unsigned), uki: { pcr11: false } });
    expect(signedPolicy.bootApplications!.allowed).toEqual(unsignedPolicy.bootApplications!.allowed);
    expect(signedPolicy.secureBoot).toEqual({ enabled: true, authorities: [facts.certSha256] });
  });

  it("under Secure Boot only the UKI is required in PCR 4 (systemd-stub's override skips the kernel's measurement); without, the kernel too", () => {
    const withPe = buildUki(mkdtempSync(path.join(dir, "uki-pe-")), {
      ".cmdline": Buffer.from("console=ttyS0"),
      ".linux": readFileSync(SYSTEMD_STUB), // a PE the stub would LoadImage
    });
    const app = [{ name: "uki", image: withPe }];
    const plain = predictMeasuredBoot({ bootApplications: app, uki: { pcr11: false } });
    expect(plain.bootApplications!.required).toHaveLength(2);
    for (const secureBoot of [true, { dbCertificates: [readFileSync(customer.cert)] }]) {
      const sb = predictMeasuredBoot({ bootApplications: app, uki: { pcr11: false }, secureBoot });
      expect(sb.bootApplications!.required).toEqual([plain.bootApplications!.required![0]]);
      expect(sb.bootApplications!.allowed).toEqual(plain.bootApplications!.allowed);
    }
  });

  it("refuses a key that is not the certificate's, naming the signer", async () => {
    await expect(signUki(stage, uki, { key: other.key, cert: customer.cert }, EPOCH)).rejects.toThrow(
      /osslsigncode sign.*exited[\s\S]*(key|match|private)/i,
    );
  });
});
