// Secure Boot under the customer's own keys, over events (PCR 7): the db certificate that verified the boot
// (EV_EFI_VARIABLE_AUTHORITY) must be the registered one, Secure Boot must be on, and nothing else may have verified
// an image on the boot path. Logs are built the way EDK2 measures them (Tcg2Dxe: SecureBoot/PK/KEK/db/dbx as
// UEFI_VARIABLE_DATA, the separator at ReadyToBoot; DxeImageVerificationLib: the matching EFI_SIGNATURE_DATA of db
// for each image it verified); the real OVMF boot is test/images/guest/secure-boot-disk.test.ts. One thing flips per
// negative; the authority data is fuzzed with its digest recomputed (the replay holds, only the data is hostile).
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  appraiseMeasuredBoot,
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  encodeEvent2,
  encodeSpecIdHeader,
  encodeUefiVariableData,
  EV,
  parseEventLog,
  parseVtpmPolicy,
  replayEventLog,
  type MeasuredBootPolicy,
  type TpmVerification,
} from "../../../runtime/attestation/tpm/index.js";
import {
  certificateSha256,
  predictSecureBootPcr7,
  secureBootPolicy,
  signatureData,
  x509SignatureList,
} from "../../../images/vtpm/secure-boot.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { dbKeyPair } from "../../support/db-key.js";

const ready = requireTool("openssl (test certificates)", haveCommand("openssl", ["version"]));
const dir = mkdtempSync(path.join(tmpdir(), "bk-sb-"));

/** A self-signed RSA certificate (DER) made by openssl, as a customer's PK/KEK/db would be. */
function cert(cn: string): Buffer {
  return Buffer.from(new X509Certificate(readFileSync(dbKeyPair(dir, cn, 3650).cert)).raw);
}

const OWNER = "1f0ba0c1-24f0-4bc3-9a5f-2a6f4d5c3e01";
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest();
const failed = (cs: { id: string; ok: boolean }[]) => cs.filter((c) => !c.ok).map((c) => c.id);

interface Spec {
  secureBoot?: number;
  /** db entries that verified images after the separator (EFI_SIGNATURE_DATA), in order. */
  after?: Buffer[];
  /** … before it (firmware drivers, option ROMs). */
  before?: Buffer[];
  /** Authority events whose variable is not db (e.g. shim's MokList). */
  afterVar?: { guid: string; name: string; data: Buffer }[];
  /** Flip one bit of the first post-separator authority event's data (digest unchanged). */
  flipAuthority?: boolean;
  twiceSecureBoot?: boolean;
}

function bootLog(vars: { PK: Buffer; KEK: Buffer; db: Buffer; dbx: Buffer }, s: Spec): Buffer {
  const parts = [encodeSpecIdHeader(["sha1", "sha256"])];
  const add = (pcr: number, type: number, data: Buffer, digestOf: Buffer = data) =>
    parts.push(
      encodeEvent2(
        pcr,
        type,
        [
          ["sha1", createHash("sha1").update(digestOf).digest()],
          ["sha256", sha256(digestOf)],
        ],
        data,
      ),
    );
  add(0, EV.S_CRTM_VERSION, Buffer.from("cloud firmware"));
  const cfg = (guid: string, name: string, v: Buffer) =>
    add(7, EV.EFI_VARIABLE_DRIVER_CONFIG, encodeUefiVariableData(guid, name, v));
  cfg(EFI_GLOBAL_VARIABLE, "SecureBoot", Buffer.from([s.secureBoot ?? 1]));
  if (s.twiceSecureBoot) cfg(EFI_GLOBAL_VARIABLE, "SecureBoot", Buffer.from([1]));
  cfg(EFI_GLOBAL_VARIABLE, "PK", vars.PK);
  cfg(EFI_GLOBAL_VARIABLE, "KEK", vars.KEK);
  cfg(EFI_IMAGE_SECURITY_DATABASE, "db", vars.db);
  cfg(EFI_IMAGE_SECURITY_DATABASE, "dbx", vars.dbx);
  const authority = (sig: Buffer, flip = false) => {
    const data = encodeUefiVariableData(EFI_IMAGE_SECURITY_DATABASE, "db", sig);
    const shown = Buffer.from(data);
    if (flip) shown[shown.length - 40] ^= 1;
    add(7, EV.EFI_VARIABLE_AUTHORITY, shown, data);
  };
  for (const a of s.before ?? []) authority(a);
  for (let pcr = 0; pcr <= 7; pcr++) add(pcr, EV.SEPARATOR, Buffer.alloc(4));
  (s.after ?? []).forEach((a, i) => authority(a, i === 0 && s.flipAuthority));
  for (const v of s.afterVar ?? []) add(7, EV.EFI_VARIABLE_AUTHORITY, encodeUefiVariableData(v.guid, v.name, v.data));
  add(4, EV.EFI_BOOT_SERVICES_APPLICATION, Buffer.alloc(32), Buffer.from("uki"));
  return Buffer.concat(parts);
}

const verified = (log: Buffer, pcrs = Array.from({ length: 24 }, (_, i) => i)): TpmVerification => ({
  checks: [],
  log: parseEventLog(log),
  quotedPcrs: {},
  replayed: { sha256: pcrs },
});

describe.runIf(ready)("Secure Boot db authority (PCR 7 events)", () => {
  const pk = cert("customer PK");
  const kek = cert("customer KEK");
  const db = cert("customer db");
  const other = cert("someone else's db");
  const vars = {
    PK: x509SignatureList(pk, OWNER),
    KEK: x509SignatureList(kek, OWNER),
    db: Buffer.concat([x509SignatureList(db, OWNER), x509SignatureList(other, OWNER)]),
    dbx: Buffer.alloc(0),
  };
  const ours = signatureData(db, OWNER);
  const theirs = signatureData(other, OWNER);
  const policy: MeasuredBootPolicy = { secureBoot: secureBootPolicy([db], "sha256", vars) };
  const appraise = (s: Spec, p = policy, pcrs?: number[]) => appraiseMeasuredBoot(verified(bootLog(vars, s), pcrs), p);

  it("accepts Secure Boot on with the UKI verified by the registered db certificate; PCR 7 is as predicted", () => {
    expect(policy.secureBoot!.authorities).toEqual([createHash("sha256").update(db).digest("hex")]);
    expect(certificateSha256(db)).toBe(policy.secureBoot!.authorities![0]);
    const checks = appraise({ after: [ours] });
    expect(failed(checks)).toEqual([]);
    expect(checks.map((c) => c.id)).toEqual(["boot.separators", "boot.secure-boot", "boot.secure-boot-authority"]);
    expect(checks[2].detail).toContain(certificateSha256(db));
    // The log's PCR 7, replayed, is the predicted value (the EDK2 event order: variables, separator, authority).
    const pcr7 = replayEventLog(parseEventLog(bootLog(vars, { after: [ours] })), "sha256")[7];
    expect(pcr7.toString("hex")).toBe(
      predictSecureBootPcr7(vars, { certDer: db, owner: OWNER }, "sha256").toString("hex"),
    );
    expect(predictSecureBootPcr7(vars, { certDer: other, owner: OWNER }).equals(pcr7)).toBe(false);
  });

  it("a UKI verified by another db certificate (same db, same Secure Boot state) is refused by name", () => {
    const checks = appraise({ after: [theirs] });
    expect(failed(checks)).toEqual(["boot.secure-boot-authority"]);
    expect(checks.find((c) => !c.ok)!.detail).toMatch(/verified by db entry [0-9a-f]{64}, which is not allowed/);
  });

  it("Secure Boot off is refused by both rules; an authority event without SecureBoot=1 proves nothing", () => {
    expect(failed(appraise({ secureBoot: 0 }))).toEqual(["boot.secure-boot", "boot.secure-boot-authority"]);
    const off = appraise(
      { secureBoot: 0, after: [ours] },
      { secureBoot: { authorities: policy.secureBoot!.authorities } },
    );
    expect(failed(off)).toEqual(["boot.secure-boot-authority"]);
    expect(off.find((c) => !c.ok)!.detail).toMatch(/Secure Boot is disabled/);
    expect(failed(appraise({ twiceSecureBoot: true, after: [ours] }))).toEqual([
      "boot.secure-boot",
      "boot.secure-boot-authority",
    ]);
  });

  it("any other verifier on the boot path is refused: a second certificate, a hash entry, MokList", () => {
    expect(failed(appraise({ after: [ours, theirs] }))).toEqual(["boot.secure-boot-authority"]);
    const hashEntry = Buffer.concat([signatureData(Buffer.alloc(0), OWNER), sha256(Buffer.from("an image"))]);
    expect(failed(appraise({ after: [ours, hashEntry] }))).toEqual(["boot.secure-boot-authority"]);
    const mok = { guid: "605dab50-e046-4300-abb6-3dd810dd8b23", name: "MokList", data: ours };
    const c = appraise({ after: [ours], afterVar: [mok] });
    expect(failed(c)).toEqual(["boot.secure-boot-authority"]);
    expect(c.find((x) => !x.ok)!.detail).toMatch(/verified by MokList/);
  });

  it("firmware drivers verified before the separator by another certificate do not count against the boot", () => {
    expect(failed(appraise({ before: [theirs], after: [ours] }))).toEqual([]);
    // … but they do not stand in for the boot's own authority either, unless it is the registered one.
    expect(failed(appraise({ before: [theirs] }))).toEqual(["boot.secure-boot-authority"]);
    expect(failed(appraise({ before: [ours] }))).toEqual([]); // EDK2 logs an authority once per boot
  });

  it("authority data rewritten without its digest is not believed (one bit)", () => {
    const c = appraise({ after: [ours], flipAuthority: true });
    expect(failed(c)).toEqual(["boot.secure-boot-authority"]);
    expect(c.find((x) => !x.ok)!.detail).toMatch(/data is not what its digest covers/);
  });

  it("needs PCR 7 covered by the quote and the replay", () => {
    const c = appraise({ after: [ours] }, policy, [0, 4]);
    expect(failed(c)).toEqual(["boot.secure-boot", "boot.secure-boot-authority"]);
    expect(c.find((x) => x.id === "boot.secure-boot-authority")!.detail).toMatch(/PCR 7 .*not covered/);
  });

  it("a registered key database that differs (PK, KEK, db) is refused by boot.secure-boot", () => {
    for (const k of ["PK", "KEK", "db"] as const) {
      const p = { secureBoot: { ...policy.secureBoot!, [k]: "00".repeat(32) } };
      expect(failed(appraise({ after: [ours] }, p))).toEqual(["boot.secure-boot"]);
    }
  });

  it("fuzz: hostile authority data (digest recomputed) never throws and never passes unless it names the certificate", () => {
    const good = encodeUefiVariableData(EFI_IMAGE_SECURITY_DATABASE, "db", ours);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.option(fc.nat(good.length), { nil: undefined }),
        (flips, cut) => {
          const data = Buffer.from(good);
          for (const [i, x] of flips) data[i] ^= x;
          const shown = cut === undefined ? data : data.subarray(0, cut);
          const parts = [encodeSpecIdHeader(["sha256"])];
          const add = (pcr: number, type: number, d: Buffer) =>
            parts.push(encodeEvent2(pcr, type, [["sha256", sha256(d)]], d));
          add(
            7,
            EV.EFI_VARIABLE_DRIVER_CONFIG,
            encodeUefiVariableData(EFI_GLOBAL_VARIABLE, "SecureBoot", Buffer.from([1])),
          );
          add(7, EV.SEPARATOR, Buffer.alloc(4));
          add(7, EV.EFI_VARIABLE_AUTHORITY, shown);
          const checks = appraiseMeasuredBoot(verified(Buffer.concat(parts)), {
            secureBoot: { authorities: policy.secureBoot!.authorities },
          });
          const ok = checks.find((c) => c.id === "boot.secure-boot-authority")!.ok;
          // Only the owner GUID may change and still pass: the name, the variable and the certificate are bound.
          if (ok)
            expect(shown.subarray(shown.length - db.length).equals(db) && shown.length === good.length).toBe(true);
        },
      ),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 300) },
    );
  });
});

describe("secureBoot.authorities in a vtpm policy (strict parsing)", () => {
  const d = "ab".repeat(32);
  it("parses, and names the field of each mistake", () => {
    expect(
      parseVtpmPolicy({ measuredBoot: { secureBoot: { enabled: true, authorities: [d.toUpperCase()] } } }),
    ).toEqual({
      measuredBoot: { secureBoot: { enabled: true, authorities: [d] } },
    });
    for (const [sb, field] of [
      [{ authorities: ["ab".repeat(48)] }, "vtpm.measuredBoot.secureBoot.authorities[0]"],
      [{ authorities: [] }, "vtpm.measuredBoot.secureBoot.authorities"],
      [{ authorities: "x" }, "vtpm.measuredBoot.secureBoot.authorities"],
      [{ enabled: false, authorities: [d] }, "vtpm.measuredBoot.secureBoot.enabled"],
      [{ authority: [d] }, "vtpm.measuredBoot.secureBoot.authority"],
    ] as const)
      expect(() => parseVtpmPolicy({ measuredBoot: { secureBoot: sb } })).toThrow(
        new RegExp(`^${field.replace(/[.[\]]/g, "\\$&")}: `),
      );
  });
});
