// Components registering Secure Boot under the customer's keys (bootChain.dbCertificates): the predicted policy
// requires Secure Boot on and the boot verified by that db certificate (secureBoot.authorities, checked over the
// PCR 7 authority event), the UKI signed by it is the required boot application, and the mistakes are preview errors
// naming the field. The UKI is a real one (systemd-stub + objcopy) signed by osslsigncode as `image build` signs.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { awsOsBinding } from "../../components/aws/os-binding.js";
import { predictBootChain } from "../../components/common/boot-chain.js";
import { measuredBootPolicy } from "../../components/common/os-binding.js";
import { signUki } from "../../images/guest/disk.js";
import { bootApplicationDigest } from "../../images/index.js";
import { haveCommand, requireTool } from "../support/prereq.js";
import { buildUki, haveUkiTools } from "../support/uki.js";
import { dbKeyPair } from "../support/db-key.js";

const ready =
  haveUkiTools() &&
  requireTool("openssl", haveCommand("openssl", ["version"])) &&
  requireTool("osslsigncode", haveCommand("osslsigncode", ["--version"]));
const dir = mkdtempSync(path.join(tmpdir(), "bk-sb-chain-"));
const who = "AwsConfidentialVm sb";

const keyPair = (cn: string) => dbKeyPair(dir, cn);

describe.runIf(ready)("bootChain.dbCertificates: Secure Boot under the customer's db key", () => {
  const db = keyPair("customer-db");
  const other = keyPair("other-db");
  const cmdline = "console=ttyS0 systemd.import_credentials=no roothash=" + "ab".repeat(32);
  const uki = buildUki(mkdtempSync(path.join(dir, "uki-")), {
    ".osrel": Buffer.from("ID=custom\n"),
    ".cmdline": Buffer.from(cmdline),
    ".linux": Buffer.alloc(3001, 7),
  });

  it("registers Secure Boot on and the authority of the named certificate; the signed UKI is required", async () => {
    const { signed } = await signUki(mkdtempSync(path.join(dir, "s-")), uki, db, 1_700_000_000);
    const file = path.join(dir, "signed.efi");
    writeFileSync(file, signed);
    const policy = predictBootChain(who, { uki: file, dbCertificates: [db.cert] }, "sha384");
    expect(policy.secureBoot).toEqual({ enabled: true, authorities: [db.sha256] });
    expect(policy.bootApplications!.required).toEqual([bootApplicationDigest(signed, "sha384")]);
    // Through the AWS binding (NitroTPM document: sha384) as the component registers it.
    const vtpm = awsOsBinding(who, { bootChain: { uki: file, dbCertificates: [db.cert] } });
    expect(vtpm?.measuredBoot?.secureBoot).toEqual({ enabled: true, authorities: [db.sha256] });
  });

  it("names the field of each mistake", () => {
    const file = path.join(dir, "unsigned.efi");
    writeFileSync(file, uki);
    expect(() => predictBootChain(who, { uki: file, dbCertificates: [db.cert], secureBoot: false }, "sha256")).toThrow(
      /sb: bootChain\.secureBoot is false, but dbCertificates require Secure Boot on/,
    );
    expect(() => predictBootChain(who, { uki: file, dbCertificates: [] }, "sha256")).toThrow(
      /sb: bootChain\.dbCertificates is empty/,
    );
    const bad = path.join(dir, "bad.crt");
    writeFileSync(bad, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    expect(() => predictBootChain(who, { uki: file, dbCertificates: [bad] }, "sha256")).toThrow(
      /sb: bootChain\.dbCertificates\[0\] not an X\.509 certificate/,
    );
    expect(() =>
      predictBootChain(who, { uki: file, dbCertificates: [path.join(dir, "missing.crt")] }, "sha256"),
    ).toThrow(/sb: bootChain\.dbCertificates\[0\]/);
    expect(() => measuredBootPolicy(who, { secureBoot: { enabled: true, authorities: ["ab".repeat(20)] } })).toThrow(
      /sb: measuredBoot\.secureBoot\.authorities\[0\] must be 64 hex digits/,
    );
    expect(() => measuredBootPolicy(who, { secureBoot: { enabled: false, authorities: [other.sha256] } })).toThrow(
      /sb: measuredBoot\.secureBoot\.enabled is false, but authorities require Secure Boot on/,
    );
  });
});
