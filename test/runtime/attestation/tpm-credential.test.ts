// TPM2_MakeCredential written with node:crypto (runtime/attestation/tpm/credential.ts), checked three ways:
//  - byte for byte against tpm2-tools' own software MakeCredential (`tpm2_makecredential --tcti none`): its seed is
//    recovered with the (software) EK's private key, and ours, given that seed, must produce the same blob;
//  - by activation in a real TPM (swtpm) through the enclaivelet's code (Vtpm.activateCredential) for the TCG
//    default EKs RSA-2048, ECC P-256 and ECC P-384 (tpm2-tools' high-range template: SHA-384, AES-256);
//  - one-field negatives: a byte changed in the HMAC, the encrypted identity, the encrypted seed; a credential for
//    another Name or another TPM's EK — the TPM (or the agent, finding no such EK) refuses each.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { constants, createHash, createHmac, generateKeyPairSync, privateDecrypt, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import {
  credentialAkProblems,
  credentialEk,
  kdfa,
  makeCredential,
  type MadeCredential,
} from "../../../runtime/attestation/tpm/credential.js";
import { parseTpmPublic, TPMA_OBJECT } from "../../../runtime/attestation/tpm/abi.js";
import { parseVtpmPolicy } from "../../../runtime/attestation/tpm/policy.js";
import { EK_HANDLE, Vtpm } from "../../../runtime/guest/evidence/vtpm.js";
import { SwTpm, haveSwtpm } from "../../support/swtpm.js";
import { haveCommand } from "../../support/prereq.js";

const run = haveSwtpm();

/** A TPMT_PUBLIC of an RSA-2048 EK per the TCG default template L-1 (attributes, PolicyA, AES-128-CFB) for `n`. */
function rsaEkTpmt(n: Buffer): Buffer {
  const policyA = Buffer.from("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa", "hex");
  const h = Buffer.alloc(10);
  h.writeUInt16BE(0x0001, 0); // RSA
  h.writeUInt16BE(0x000b, 2); // SHA-256
  h.writeUInt32BE(0x000300b2, 4); // fixedTPM fixedParent sensitiveDataOrigin adminWithPolicy restricted decrypt
  h.writeUInt16BE(policyA.length, 8);
  const params = Buffer.from("0006008000430010080000000000", "hex"); // AES-128 CFB, scheme NULL, 2048 bits, e=0
  const len = Buffer.alloc(2);
  len.writeUInt16BE(n.length);
  return Buffer.concat([h, policyA, params, len, n]);
}

/** TPM2B parsing of a credential file written by tpm2_makecredential (magic, version, ID_OBJECT, SECRET). */
function splitCredentialFile(f: Buffer): MadeCredential {
  expect(f.subarray(0, 8).toString("hex")).toBe("badcc0de00000001");
  const idLen = f.readUInt16BE(8);
  const credentialBlob = f.subarray(8, 10 + idLen);
  const secLen = f.readUInt16BE(10 + idLen);
  const encryptedSecret = f.subarray(10 + idLen, 12 + idLen + secLen);
  expect(12 + idLen + secLen).toBe(f.length);
  return { credentialBlob, encryptedSecret };
}

describe("KDFa and input checks", () => {
  it("KDFa is SP 800-108 counter-mode HMAC with the label's NUL and the bit length", () => {
    const key = Buffer.alloc(32, 1);
    const u = Buffer.from("u");
    const k = kdfa("sha256", key, "STORAGE", u, Buffer.alloc(0), 256 + 128);
    expect(k).toHaveLength(48);
    // The first block by hand: HMAC(key, 00000001 ‖ "STORAGE\0" ‖ u ‖ 00000180).
    const first = createHmac("sha256", key)
      .update(Buffer.from("00000001", "hex"))
      .update("STORAGE\0")
      .update(u)
      .update(Buffer.from("00000180", "hex"))
      .digest();
    expect(k.subarray(0, 32).equals(first)).toBe(true);
    expect(kdfa("sha256", key, "STORAGE", u, Buffer.alloc(0), 128).equals(k.subarray(0, 16))).toBe(false); // bits are input
    expect(kdfa("sha256", key, "INTEGRITY", u, Buffer.alloc(0), 384).equals(k)).toBe(false);
  });

  const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const n = Buffer.from(publicKey.export({ format: "jwk" }).n!, "base64url");
  const ek = credentialEk(rsaEkTpmt(n));
  const name = Buffer.concat([Buffer.from("000b", "hex"), randomBytes(32)]);

  it("refuses an EK that is not a restricted decryption key, or has no AES-CFB cipher (field named)", () => {
    const t = rsaEkTpmt(n);
    const signing = Buffer.from(t);
    signing.writeUInt32BE(0x000500b2, 4); // restricted + sign instead of decrypt
    expect(() => credentialEk(signing)).toThrow(/objectAttributes: must be a restricted decryption key/);
    const unrestricted = Buffer.from(t);
    unrestricted.writeUInt32BE(0x000200b2, 4);
    expect(() => credentialEk(unrestricted)).toThrow(/objectAttributes/);
    const ofb = Buffer.from(t);
    ofb.writeUInt16BE(0x0042, 10 + 32 + 4); // mode OFB
    expect(() => credentialEk(ofb)).toThrow(/parameters\.symmetric: must be AES/);
    expect(() => credentialEk(t.subarray(0, 40))).toThrow(/ek_public: is not a TPMT_PUBLIC/);
  });
  it("refuses a credential longer than the EK nameAlg's digest, an empty one, and a malformed Name", () => {
    expect(() => makeCredential(ek, name, Buffer.alloc(33))).toThrow(/credential: must be 1\.\.32 bytes/);
    expect(() => makeCredential(ek, name, Buffer.alloc(0))).toThrow(/credential/);
    expect(() => makeCredential(ek, name.subarray(0, 20), Buffer.alloc(32))).toThrow(/objectName/);
    expect(() =>
      makeCredential(ek, Buffer.concat([Buffer.from("0099", "hex"), name.subarray(2)]), Buffer.alloc(32)),
    ).toThrow(/objectName/);
  });
  it("the same seed gives the same blob; another seed, Name or credential another (the seed is random by default)", () => {
    const seed = Buffer.alloc(32, 3);
    const a = makeCredential(ek, name, Buffer.alloc(32, 9), { seed });
    expect(makeCredential(ek, name, Buffer.alloc(32, 9), { seed }).credentialBlob.equals(a.credentialBlob)).toBe(true);
    const other = Buffer.from(name);
    other[5] ^= 1;
    expect(makeCredential(ek, other, Buffer.alloc(32, 9), { seed }).credentialBlob.equals(a.credentialBlob)).toBe(
      false,
    );
    expect(makeCredential(ek, name, Buffer.alloc(32, 8), { seed }).credentialBlob.equals(a.credentialBlob)).toBe(false);
    expect(makeCredential(ek, name, Buffer.alloc(32, 9)).credentialBlob.equals(a.credentialBlob)).toBe(false);
    // TPM2B_ID_OBJECT = size ‖ TPM2B_DIGEST(HMAC-SHA-256) ‖ encIdentity (2 + 32 bytes).
    expect(a.credentialBlob).toHaveLength(2 + 2 + 32 + 2 + 32);
    expect(a.encryptedSecret).toHaveLength(2 + 256);
  });
  it("policy vtpm.ekPublics: base64 TPMT_PUBLIC of an EK a credential can be made for; errors name the field", () => {
    const good = rsaEkTpmt(n).toString("base64");
    expect(parseVtpmPolicy({ ekPublics: [good] }).ekPublics).toEqual([good]);
    expect(() => parseVtpmPolicy({ ekPublics: [] })).toThrow(/vtpm\.ekPublics: expected at least one EK/);
    expect(() => parseVtpmPolicy({ ekPublics: ["not base64!"] })).toThrow(
      /vtpm\.ekPublics\[0\]: expected a base64 TPMT_PUBLIC/,
    );
    const signing = rsaEkTpmt(n);
    signing.writeUInt32BE(0x000500b2, 4);
    expect(() => parseVtpmPolicy({ ekPublics: [good, signing.toString("base64")] })).toThrow(
      /vtpm\.ekPublics\[1\]\.objectAttributes: must be a restricted decryption key/,
    );
  });
  it("an AK an untrusted TPM could have a copy of is named: adminWithPolicy=1, fixedTPM=0, not restricted signing", () => {
    const { publicKey: k } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const base = { type: "ecc" as const, nameAlg: "sha256" as const, key: k, tpmtPublic: Buffer.alloc(0) };
    const ak = (a: number) => ({ ...base, objectAttributes: a, name: Buffer.alloc(34), authPolicy: Buffer.alloc(0) });
    const good = 0x00050072; // fixedTPM fixedParent sensitiveDataOrigin userWithAuth restricted sign
    expect(credentialAkProblems(ak(good))).toEqual([]);
    expect(credentialAkProblems(ak(good | TPMA_OBJECT.adminWithPolicy)).join()).toMatch(/adminWithPolicy=1/);
    expect(credentialAkProblems(ak(good & ~TPMA_OBJECT.fixedTPM)).join()).toMatch(/fixedTPM=0/);
    expect(credentialAkProblems(ak(good & ~TPMA_OBJECT.restricted)).join()).toMatch(/restricted signing/);
  });
});

describe.runIf(haveCommand("tpm2_makecredential", ["--version"]))(
  "byte for byte against tpm2-tools' software MakeCredential (--tcti none)",
  () => {
    it("the seed tpm2-tools chose, decrypted with the EK's private key, gives our exact TPM2B_ID_OBJECT", () => {
      const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
      const dir = mkdtempSync(path.join(tmpdir(), "bp-mkcred-"));
      try {
        writeFileSync(path.join(dir, "ek.pem"), publicKey.export({ type: "spki", format: "pem" }));
        const secret = randomBytes(32);
        writeFileSync(path.join(dir, "secret.bin"), secret);
        const name = Buffer.concat([Buffer.from("000b", "hex"), createHash("sha256").update("some ak").digest()]);
        const r = spawnSync(
          "tpm2_makecredential",
          ["--tcti", "none", "-G", "rsa", "-u", "ek.pem", "-s", "secret.bin", "-n", name.toString("hex"), "-o", "c"],
          { cwd: dir },
        );
        expect(r.status, r.stderr.toString()).toBe(0);
        const theirs = splitCredentialFile(readFileSync(path.join(dir, "c")));
        const seed = privateDecrypt(
          {
            key: privateKey,
            padding: constants.RSA_PKCS1_OAEP_PADDING,
            oaepHash: "sha256",
            oaepLabel: Buffer.from("IDENTITY\0"),
          },
          theirs.encryptedSecret.subarray(2),
        );
        expect(seed).toHaveLength(32);
        const n = Buffer.from(publicKey.export({ format: "jwk" }).n!, "base64url");
        const ours = makeCredential(credentialEk(rsaEkTpmt(n)), name, secret, { seed });
        expect(ours.credentialBlob.toString("hex")).toBe(theirs.credentialBlob.toString("hex"));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);

describe.runIf(run)("activation in a real TPM (swtpm) through the enclaivelet's Vtpm.activateCredential", () => {
  let tpm: SwTpm;
  let other: SwTpm;
  let vtpm: Vtpm;
  let akName: Buffer;
  let dir: string;
  const eks: Record<string, Buffer> = {};

  const tpmt = (t: SwTpm, argv: string[]) => {
    const f = path.join(dir, `pub-${Math.random()}`);
    const r = t.tool([...argv, "-f", "tpmt", ...(argv[0] === "tpm2_readpublic" ? ["-o", f] : ["-u", f])]);
    expect(r.status, r.stderr.toString()).toBe(0);
    t.tool(["tpm2_flushcontext", "-t"]);
    return readFileSync(f);
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "bp-cred-"));
    tpm = await SwTpm.start();
    other = await SwTpm.start();
    vtpm = new Vtpm({ tcti: tpm.tcti });
    akName = Buffer.from(parseTpmPublic(await vtpm.attestationKey()).name);
    eks.rsa = tpmt(tpm, ["tpm2_readpublic", "-c", EK_HANDLE]);
    eks.ecc = tpmt(tpm, ["tpm2_createek", "-c", path.join(dir, "ecc.ctx"), "-G", "ecc"]);
    eks.ecc384 = tpmt(tpm, ["tpm2_createek", "-c", path.join(dir, "ecc384.ctx"), "-G", "ecc384"]);
    await new Vtpm({ tcti: other.tcti }).attestationKey();
    eks.otherRsa = tpmt(other, ["tpm2_readpublic", "-c", EK_HANDLE]);
  }, 60_000);
  afterAll(async () => {
    await tpm?.stop();
    await other?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const activate = (ekTpmt: Buffer, c: MadeCredential) =>
    vtpm.activateCredential({ ekName: Buffer.from(credentialEk(ekTpmt).name), ...c });

  for (const [kind, detail] of [
    ["rsa", "RSA-2048, SHA-256, AES-128 (template L-1, PolicySecret(endorsement))"],
    ["ecc", "ECC P-256, SHA-256, AES-128 (template L-2)"],
    ["ecc384", "ECC P-384, SHA-384, AES-256 (tpm2-tools' high-range template, userWithAuth)"],
  ] as const)
    it(`the TPM recovers the secret for its ${detail} EK`, async () => {
      const ek = credentialEk(eks[kind]);
      const secret = randomBytes(32);
      const got = await activate(eks[kind], makeCredential(ek, akName, secret));
      expect(got.toString("hex")).toBe(secret.toString("hex"));
    }, 30_000);

  it("the TPM's own TPM2_MakeCredential (tpm2_makecredential with the TPM) activates through the same agent code", async () => {
    // tpm2_makecredential -u takes a TPM2B_PUBLIC: the size, then the TPMT_PUBLIC.
    const ekFile = path.join(dir, "ek-rsa.pub");
    const size = Buffer.alloc(2);
    size.writeUInt16BE(eks.rsa.length);
    writeFileSync(ekFile, Buffer.concat([size, eks.rsa]));
    const secret = randomBytes(32);
    writeFileSync(path.join(dir, "s.bin"), secret);
    const out = path.join(dir, "tpm-made.cred");
    const r = tpm.tool([
      "tpm2_makecredential",
      "-u",
      ekFile,
      "-s",
      path.join(dir, "s.bin"),
      "-n",
      akName.toString("hex"),
      "-o",
      out,
    ]);
    tpm.tool(["tpm2_flushcontext", "-t"]);
    expect(r.status, r.stderr.toString()).toBe(0);
    const theirs = splitCredentialFile(readFileSync(out));
    expect((await activate(eks.rsa, theirs)).equals(secret)).toBe(true);
    // Same shapes as ours.
    const ours = makeCredential(credentialEk(eks.rsa), akName, secret);
    expect(ours.credentialBlob.length).toBe(theirs.credentialBlob.length);
    expect(ours.encryptedSecret.length).toBe(theirs.encryptedSecret.length);
  }, 30_000);

  describe("one-field negatives: the TPM refuses each", () => {
    const flip = (b: Buffer, at: number) => {
      const c = Buffer.from(b);
      c[at] ^= 0x01;
      return c;
    };
    for (const kind of ["rsa", "ecc"] as const) {
      it(`${kind}: a bit of the integrity HMAC, of the encrypted identity, of the encrypted seed`, async () => {
        const good = makeCredential(credentialEk(eks[kind]), akName, randomBytes(32));
        const cases: [string, MadeCredential][] = [
          ["outerHMAC", { ...good, credentialBlob: flip(good.credentialBlob, 4 + 5) }],
          ["encIdentity", { ...good, credentialBlob: flip(good.credentialBlob, good.credentialBlob.length - 3) }],
          ["encryptedSecret", { ...good, encryptedSecret: flip(good.encryptedSecret, 40) }],
        ];
        for (const [field, c] of cases)
          await expect(activate(eks[kind], c), field).rejects.toThrow(/activate-credential/);
      }, 60_000);
    }
    it("a credential made for another object's Name (e.g. a software TPM's AK) is refused (integrity)", async () => {
      const otherName = Buffer.from(akName);
      otherName[10] ^= 0x80;
      await expect(
        activate(eks.rsa, makeCredential(credentialEk(eks.rsa), otherName, randomBytes(32))),
      ).rejects.toThrow(/activate-credential/);
    }, 30_000);
    it("a public-only copy of another TPM's AK loaded into this TPM (TPM2_LoadExternal) cannot activate, adminWithPolicy or not", async () => {
      // The attack credentialAkProblems guards against: the guest kernel creates an AK in a software TPM, binds it,
      // then loads its public part into the real TPM (which holds the registered EK) and activates there.
      // TPM_RC_AUTH_UNAVAILABLE for both the authValue (adminWithPolicy=0) and a policy anyone can satisfy
      // (adminWithPolicy=1, PolicyCommandCode(ActivateCredential)): a public-only object has no authorization.
      const d = (f: string) => path.join(dir, f);
      const ok = (t: SwTpm, argv: string[]) => {
        const r = t.tool(argv);
        expect(r.status, `${argv.join(" ")}: ${r.stderr.toString()}`).toBe(0);
        t.tool(["tpm2_flushcontext", "-t"]);
        return r;
      };
      ok(other, ["tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", d("prim.ctx")]);
      ok(other, ["tpm2_startauthsession", "-S", d("trial.ctx")]);
      ok(other, ["tpm2_policycommandcode", "-S", d("trial.ctx"), "-L", d("cc.policy"), "TPM2_CC_ActivateCredential"]);
      other.tool(["tpm2_flushcontext", d("trial.ctx")]);
      const attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign";
      for (const [k, extra] of [
        ["plain", []],
        ["admpol", ["-a", `${attrs}|adminwithpolicy`, "-L", d("cc.policy")]],
      ] as const) {
        ok(other, [
          "tpm2_create",
          "-C",
          d("prim.ctx"),
          "-G",
          "ecc:ecdsa-sha256:null",
          ...(extra.length ? extra : ["-a", attrs]),
          "-u",
          d(`${k}.pub`),
          "-r",
          d(`${k}.priv`),
        ]);
        const pub = parseTpmPublic(readFileSync(d(`${k}.pub`)));
        expect(!!(pub.objectAttributes & TPMA_OBJECT.adminWithPolicy)).toBe(k === "admpol");
        ok(tpm, ["tpm2_loadexternal", "-C", "n", "-u", d(`${k}.pub`), "-c", d(`${k}.ext.ctx`)]);
        const c = makeCredential(credentialEk(eks.rsa), Buffer.from(pub.name), randomBytes(32));
        writeFileSync(
          d(`${k}.cred`),
          Buffer.concat([Buffer.from("badcc0de00000001", "hex"), c.credentialBlob, c.encryptedSecret]),
        );
        ok(tpm, ["tpm2_startauthsession", "--policy-session", "-S", d("ek.ctx")]);
        ok(tpm, ["tpm2_policysecret", "-S", d("ek.ctx"), "-c", "e"]);
        if (k === "admpol") {
          ok(tpm, ["tpm2_startauthsession", "--policy-session", "-S", d("ak.ctx")]);
          ok(tpm, ["tpm2_policycommandcode", "-S", d("ak.ctx"), "TPM2_CC_ActivateCredential"]);
        }
        const r = tpm.tool([
          "tpm2_activatecredential",
          "-c",
          d(`${k}.ext.ctx`),
          "-C",
          EK_HANDLE,
          "-i",
          d(`${k}.cred`),
          "-o",
          d(`${k}.out`),
          "-P",
          `session:${d("ek.ctx")}`,
          ...(k === "admpol" ? ["-p", `session:${d("ak.ctx")}`] : []),
        ]);
        for (const s of ["ek.ctx", "ak.ctx"]) tpm.tool(["tpm2_flushcontext", d(s)]);
        tpm.tool(["tpm2_flushcontext", "-t"]);
        expect(r.status, k).not.toBe(0);
        expect(r.stderr.toString(), k).toMatch(/0x12F|authValue or authPolicy is not available/i);
      }
    }, 60_000);
    it("a credential for another TPM's EK: this TPM has no EK of that Name, the agent says so", async () => {
      await expect(
        activate(eks.otherRsa, makeCredential(credentialEk(eks.otherRsa), akName, randomBytes(32))),
      ).rejects.toThrow(/ek-credential.*no endorsement key named/);
    }, 30_000);
  });
});
