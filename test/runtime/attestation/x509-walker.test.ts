// The shared X.509 chain walker (runtime/attestation/x509.ts): a good root → intermediate → leaf chain passes,
// and each one-field change fails with the fault on the certificate that carries it.
import "reflect-metadata";
import { beforeAll, describe, expect, it } from "vitest";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import {
  buildPath,
  chainCert,
  checkCrl,
  walkChain,
  type ChainCert,
  type ChainProfile,
} from "../../../runtime/attestation/x509.js";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 86400_000;
const now = new Date();
const { digitalSignature: DS, keyCertSign: KCS, cRLSign: CRL } = x509.KeyUsageFlags;

interface Spec {
  name: string;
  /** Issuer spec; undefined: self-signed. */
  issuer?: Issued;
  ca?: boolean;
  /** basicConstraints absent when false. */
  basicConstraints?: boolean;
  pathLength?: number;
  /** keyUsage bits; null: no keyUsage extension. */
  keyUsage?: number | null;
  notBefore?: Date;
  notAfter?: Date;
  criticalOid?: string;
}
interface Issued {
  cert: ChainCert;
  name: string;
  keys: webcrypto.CryptoKeyPair;
}

const gen = async () => (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;

async function make(s: Spec): Promise<Issued> {
  const keys = await gen();
  const ca = s.ca ?? false;
  const extensions: x509.Extension[] = [];
  if (s.basicConstraints !== false) extensions.push(new x509.BasicConstraintsExtension(ca, s.pathLength, true));
  const usage = s.keyUsage === undefined ? (ca ? KCS | CRL : DS) : s.keyUsage;
  if (usage !== null) extensions.push(new x509.KeyUsagesExtension(usage, true));
  if (s.criticalOid) extensions.push(new x509.Extension(s.criticalOid, true, new Uint8Array([0x05, 0x00])));
  const common = {
    serialNumber: "01" + Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString("hex"),
    notBefore: s.notBefore ?? new Date(now.getTime() - DAY),
    notAfter: s.notAfter ?? new Date(now.getTime() + 365 * DAY),
    signingAlgorithm: ALG,
    extensions,
  };
  const c = s.issuer
    ? await x509.X509CertificateGenerator.create({
        ...common,
        subject: `CN=${s.name}`,
        issuer: s.issuer.name,
        publicKey: keys.publicKey,
        signingKey: s.issuer.keys.privateKey,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({ ...common, name: `CN=${s.name}`, keys });
  return { cert: chainCert(new Uint8Array(c.rawData)), name: `CN=${s.name}`, keys };
}

let root: Issued;
let inter: Issued;
let leaf: Issued;
let profile: ChainProfile;
const kinds = (w: ReturnType<typeof walkChain>) => w.faults.map((f) => `${f.index}:${f.kind}`);

beforeAll(async () => {
  root = await make({ name: "Test Root", ca: true });
  inter = await make({ name: "Test Intermediate", ca: true, pathLength: 0, issuer: root });
  leaf = await make({ name: "Test Leaf", issuer: inter });
  profile = { anchors: [root.cert.sha256], leafDigitalSignature: true, requireKeyUsage: true };
});

describe("walkChain", () => {
  it("accepts a well-formed chain pinned by fingerprint or by exact DER, and says which pin", () => {
    const w = walkChain([leaf.cert, inter.cert, root.cert], profile, now);
    expect(w).toEqual({ ok: true, faults: [], anchorIndex: 0 });
    const byDer = walkChain([leaf.cert, inter.cert, root.cert], { ...profile, anchors: ["00", root.cert.der] }, now);
    expect(byDer.anchorIndex).toBe(1);
    expect(byDer.ok).toBe(true);
  });

  it("refuses an issuer that is not a CA (basicConstraints CA false, or absent)", async () => {
    for (const spec of [
      { ca: false, keyUsage: KCS },
      { basicConstraints: false, keyUsage: KCS },
    ]) {
      const notCa = await make({ name: "Not A CA", issuer: root, ...spec });
      const l = await make({ name: "Leaf", issuer: notCa });
      const w = walkChain([l.cert, notCa.cert, root.cert], profile, now);
      expect(kinds(w)).toEqual(["1:ca"]);
      expect(w.faults[0].detail).toMatch(/not a CA certificate/);
    }
  });

  it("refuses a missing keyUsage where the profile requires it, and allows it where it does not", async () => {
    const noKu = await make({ name: "No KU", ca: true, issuer: root, keyUsage: null });
    const l = await make({ name: "Leaf", issuer: noKu, keyUsage: null });
    const w = walkChain([l.cert, noKu.cert, root.cert], profile, now);
    expect(kinds(w)).toEqual(["0:key-usage", "1:key-usage"]);
    expect(w.faults.map((f) => f.detail)).toEqual([
      "has no keyUsage extension (needs digitalSignature)",
      "has no keyUsage extension (needs keyCertSign)",
    ]);
    expect(walkChain([l.cert, noKu.cert, root.cert], { anchors: profile.anchors }, now).ok).toBe(true);
  });

  it("refuses keyUsage without keyCertSign on an issuer, without digitalSignature on the leaf", async () => {
    const i = await make({ name: "CRL only", ca: true, issuer: root, keyUsage: CRL });
    const l = await make({ name: "Leaf", issuer: i, keyUsage: x509.KeyUsageFlags.keyEncipherment });
    const w = walkChain([l.cert, i.cert, root.cert], { anchors: profile.anchors, leafDigitalSignature: true }, now);
    expect(kinds(w)).toEqual(["0:key-usage", "1:key-usage"]);
    // Without leafDigitalSignature the leaf's usage is not judged; the issuer's always is.
    expect(kinds(walkChain([l.cert, i.cert, root.cert], { anchors: profile.anchors }, now))).toEqual(["1:key-usage"]);
  });

  it("refuses a CA certificate as the leaf", async () => {
    const caLeaf = await make({ name: "CA Leaf", ca: true, issuer: inter, keyUsage: DS | KCS });
    // pathLenConstraint counts intermediates only: the CA leaf is refused as a leaf, not as a path-length fault.
    expect(kinds(walkChain([caLeaf.cert, inter.cert, root.cert], profile, now))).toEqual(["0:ca"]);
  });

  it("refuses an expired or not-yet-valid certificate at the verification time, and accepts it at its own time", async () => {
    const expired = await make({
      name: "Expired",
      issuer: inter,
      notBefore: new Date(now.getTime() - 10 * DAY),
      notAfter: new Date(now.getTime() - 3600_000),
    });
    const w = walkChain([expired.cert, inter.cert, root.cert], profile, now);
    expect(kinds(w)).toEqual(["0:validity"]);
    expect(w.faults[0].detail).toMatch(/is not valid at/);
    expect(walkChain([expired.cert, inter.cert, root.cert], profile, new Date(now.getTime() - 7200_000)).ok).toBe(true);
    expect(kinds(walkChain([leaf.cert, inter.cert, root.cert], profile, new Date(now.getTime() + 400 * DAY)))).toEqual([
      "0:validity",
      "1:validity",
      "2:validity",
    ]);
  });

  it("refuses a chain that ends at another root, even one that signed it correctly", async () => {
    const other = await make({ name: "Test Root", ca: true });
    const i = await make({ name: "Test Intermediate", ca: true, issuer: other });
    const l = await make({ name: "Test Leaf", issuer: i });
    const w = walkChain([l.cert, i.cert, other.cert], profile, now);
    expect(kinds(w)).toEqual(["2:anchor"]);
    expect(w.anchorIndex).toBeUndefined();
    // Same names, other keys: the genuine intermediate does not verify under the rogue root.
    expect(kinds(walkChain([leaf.cert, inter.cert, other.cert], { anchors: [other.cert.sha256] }, now))).toEqual([
      "1:signature",
    ]);
  });

  it("refuses a swapped order", () => {
    const w = walkChain([inter.cert, leaf.cert, root.cert], profile, now);
    expect(w.ok).toBe(false);
    expect(w.faults.filter((f) => f.kind === "signature").map((f) => f.index)).toEqual([0, 1]);
    expect(walkChain([root.cert, inter.cert, leaf.cert], profile, now).faults.map((f) => f.kind)).toContain("anchor");
  });

  it("refuses a one-bit change in a signed certificate", () => {
    const der = Buffer.from(leaf.cert.der);
    der[der.length - 10] ^= 0x01; // inside the signature value
    const w = walkChain([chainCert(der), inter.cert, root.cert], profile, now);
    expect(kinds(w)).toEqual(["0:signature"]);
  });

  it("keeps pathLenConstraint: a CA with pathLength 0 may not issue another CA", async () => {
    const sub = await make({ name: "Sub CA", ca: true, issuer: inter });
    const l = await make({ name: "Leaf", issuer: sub });
    const w = walkChain([l.cert, sub.cert, inter.cert, root.cert], profile, now);
    expect(kinds(w)).toEqual(["2:path-length"]);
    expect(w.faults[0].detail).toBe("allows 0 CA certificate(s) below it, the chain has 1");
  });

  it("refuses an unknown critical extension", async () => {
    const l = await make({ name: "Leaf", issuer: inter, criticalOid: "1.3.6.1.4.1.99999.1" });
    expect(kinds(walkChain([l.cert, inter.cert, root.cert], profile, now))).toEqual(["0:critical-extension"]);
  });

  it("requires a self-signed anchor unless the profile trusts a bare pinned CA", () => {
    const w = walkChain([leaf.cert, inter.cert], { ...profile, anchors: [inter.cert.sha256] }, now);
    expect(kinds(w)).toEqual(["1:signature"]);
    expect(w.faults[0].detail).toBe("is not self-signed");
    expect(
      walkChain([leaf.cert, inter.cert], { ...profile, anchors: [inter.cert.sha256], anchorNeedNotSelfSign: true }, now)
        .ok,
    ).toBe(true);
  });

  it("walks an anchor alone as an issuer", () => {
    expect(walkChain([root.cert], { anchors: [root.cert.sha256] }, now).ok).toBe(true);
    expect(kinds(walkChain([leaf.cert], { anchors: [leaf.cert.sha256] }, now))).toEqual([
      "0:signature",
      "0:ca",
      "0:key-usage",
    ]);
    expect(walkChain([], profile, now).ok).toBe(false);
  });
});

describe("buildPath", () => {
  it("orders an unordered pool up to the first pinned anchor", () => {
    const r = buildPath(leaf.cert, [root.cert, inter.cert], [root.cert.sha256]);
    expect(r.ok).toBe(true);
    expect(r.chain.map((c) => c.name)).toEqual(["CN=Test Leaf", "CN=Test Intermediate", "CN=Test Root"]);
  });

  it("stops at an unpinned self-signed root, or where no issuer verifies", () => {
    const r = buildPath(leaf.cert, [root.cert, inter.cert], ["00"]);
    expect(r).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/self-signed certificate that is not a trusted root/),
    });
    const r2 = buildPath(leaf.cert, [root.cert], [root.cert.sha256]);
    expect(r2).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/no trusted issuer verifies "CN=Test Intermediate"/),
    });
  });
});

describe("checkCrl", () => {
  async function crl(
    by: Issued,
    o: { revoke?: ChainCert; thisUpdate?: Date; nextUpdate?: Date | null; name?: string } = {},
  ): Promise<Uint8Array> {
    const c = await x509.X509CrlGenerator.create({
      issuer: o.name ?? by.name,
      thisUpdate: o.thisUpdate ?? new Date(now.getTime() - 3600_000),
      nextUpdate: o.nextUpdate === null ? undefined : (o.nextUpdate ?? new Date(now.getTime() + 7 * DAY)),
      entries: o.revoke ? [{ serialNumber: o.revoke.node.serialNumber, revocationDate: now }] : [],
      signingKey: by.keys.privateKey,
      signingAlgorithm: ALG,
    });
    return new Uint8Array(c.rawData);
  }
  const faults = (r: ReturnType<typeof checkCrl>) => r.faults.map((f) => f.kind);

  it("accepts the issuer's current CRL that does not list the subject", async () => {
    const r = checkCrl(await crl(inter), inter.cert, leaf.cert, now);
    expect(r).toMatchObject({ ok: true, faults: [], entries: 0 });
  });

  it("refuses a CRL that lists the subject, and says since when", async () => {
    const r = checkCrl(await crl(inter, { revoke: leaf.cert }), inter.cert, leaf.cert, now);
    expect(faults(r)).toEqual(["revoked"]);
    expect(r.revokedAt).toBeInstanceOf(Date);
  });

  it("refuses a CRL signed by another key under the issuer's name, or issued by another name", async () => {
    const impostor = await make({ name: "Test Intermediate", ca: true, issuer: root });
    expect(faults(checkCrl(await crl(impostor), inter.cert, leaf.cert, now))).toEqual(["signature"]);
    expect(faults(checkCrl(await crl(inter, { name: "CN=Someone Else" }), inter.cert, leaf.cert, now))).toEqual([
      "issuer",
    ]);
    expect(faults(checkCrl(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]), inter.cert, leaf.cert, now))).toEqual([
      "parse",
    ]);
  });

  it("refuses a stale CRL, one from the future, and one without nextUpdate when the caller requires it", async () => {
    const stale = await crl(inter, { nextUpdate: new Date(now.getTime() - 60_000) });
    expect(faults(checkCrl(stale, inter.cert, leaf.cert, now))).toEqual(["stale"]);
    const future = await crl(inter, { thisUpdate: new Date(now.getTime() + DAY) });
    expect(faults(checkCrl(future, inter.cert, leaf.cert, now))).toEqual(["not-yet-valid"]);
    const open = await crl(inter, { nextUpdate: null });
    expect(checkCrl(open, inter.cert, leaf.cert, now).ok).toBe(true);
    expect(faults(checkCrl(open, inter.cert, leaf.cert, now, { requireNextUpdate: true }))).toEqual(["stale"]);
  });
});
