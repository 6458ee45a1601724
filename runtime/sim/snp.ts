// Simulated AMD SEV-SNP hardware for tests and the local stack. A fake AMD hierarchy is generated at run
// time (no key is ever stored): RSA-PSS ARK → ASK/ASVK, and P-384 VCEKs (one per TCB, like the real chip's
// derivation) / a VLEK, with the real KDS extension layout. It signs correctly formatted reports (v2, v3, v5)
// and returns the certificate table a host delivers with SNP_GET_EXT_REPORT / configfs-tsm `auxblob`.
// The verifier trusts it only when `trustAnchor` is listed in TrustConfig, and then says simulated.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { KeyObject, createHash, createHmac, randomBytes, sign, webcrypto } from "node:crypto";
import { FIELD, decodeKeyRequest } from "../attestation/snp/derived-key.js";
import type { SimulatedSnpAnchor } from "../attestation/policy.js";
import {
  CERT_GUID,
  REPORT_SIZE,
  SIGNED_LENGTH,
  buildCertTable,
  encodeTcb,
  type SnpProduct,
  type TcbVersion,
} from "../attestation/snp/abi.js";
import { OID } from "../attestation/snp/certs.js";

const subtle = webcrypto.subtle;

export interface SnpSimulatorOptions {
  product?: SnpProduct;
  /** RSA modulus of the simulated ARK/ASK/ASVK (AMD's are 4096; smaller is faster for tests). Default 2048. */
  rsaBits?: number;
  /** 64-byte CHIP_ID (Turin: only the first 8 bytes are significant). Default random. */
  chipId?: Uint8Array;
  /** Platform TCB used when a report does not name one. */
  tcb?: TcbVersion;
  /** Certificate validity start. Default: now minus one day (KDS backdates too). */
  notBefore?: Date;
  /** Cloud provider name put in the VLEK's cspID. */
  cspId?: string;
  /**
   * A platform saved by `exportState()`: the same simulated AMD hierarchy, chip and VCEKs across
   * processes (the local stack's runtime and its VMs). Overrides product, rsaBits, chipId, tcb,
   * notBefore and cspId.
   */
  state?: SnpSimulatorState;
}

/**
 * Everything a simulated platform is: keys (PKCS#8, base64), certificates (DER, base64) and chip facts.
 * It holds private keys: keep it in a file readable by its owner only.
 */
export interface SnpSimulatorState {
  format: "buckypaper-snp-simulator/1";
  product: SnpProduct;
  /** 64 bytes, hex. */
  chipId: string;
  tcb: TcbVersion;
  cspId: string;
  keys: { ark: string; ask: string; asvk: string; vlek: string };
  certs: { ark: string; ask: string; asvk: string };
  /** VEKs issued so far, keyed like the simulator's cache ("vcek:<tcb hex>"). */
  veks: Record<string, { cert: string; key: string }>;
}

export interface SimulatedReportOptions {
  measurement?: Uint8Array | string;
  reportData?: Uint8Array;
  /** Raw POLICY or bits to set on top of the default 0x30000 (SMT allowed, reserved bit 17). */
  policy?:
    | bigint
    | {
        debug?: boolean;
        migrateMa?: boolean;
        smt?: boolean;
        singleSocket?: boolean;
        abiMajor?: number;
        abiMinor?: number;
      };
  tcb?: TcbVersion;
  launchTcb?: TcbVersion;
  version?: 2 | 3 | 5;
  vmpl?: number;
  guestSvn?: number;
  hostData?: Uint8Array;
  familyId?: Uint8Array;
  imageId?: Uint8Array;
  idKeyDigest?: Uint8Array;
  authorKeyDigest?: Uint8Array;
  signer?: "vcek" | "vlek";
  /** Host masked the chip id (MASK_CHIP_ID): CHIP_ID reads as zero. */
  maskChipId?: boolean;
  platformInfo?: bigint;
  /** COMMITTED_TCB when it differs from the current one (provisional firmware). */
  committedTcb?: TcbVersion;
  /** v3+: CPUID family, model, stepping bytes (default: the product's). Zeros mimic firmware that leaves them blank. */
  cpuid?: [number, number, number];
}

export interface SimulatedReport {
  report: Uint8Array;
  /** Certificate table: VCEK/VLEK, ASK (or ASVK), ARK. */
  certTable: Uint8Array;
  /** The endorsement key certificate (DER) alone. */
  vek: Uint8Array;
}

/** The launch facts of the guest asking for a derived key (what the real PSP knows of the VM). */
export interface SimulatedGuestContext {
  /** 48-byte launch MEASUREMENT. */
  measurement: Uint8Array;
  policy: bigint;
  imageId?: Uint8Array;
  familyId?: Uint8Array;
  guestSvn?: number;
  /** VMPL the request comes from (a request may only ask for its own or a less privileged VMPL). */
  vmpl?: number;
  /**
   * false: the launch's MEASUREMENT does not cover kernel, initrd and command line (firmware without the
   * SNP kernel-hashes table), and the simulator refuses to derive a key (see deriveKey). Absent: not
   * known to the caller (a process-level test double), answered.
   */
  kernelMeasured?: boolean;
}

export interface SnpSimulator {
  /**
   * MSG_KEY_REQ / SNP_GET_DERIVED_KEY: 32 bytes derived from this chip's secret (root VCEK, per chip) or
   * the VM root key, mixed with the request and the guest fields it selects. Deterministic per chip.
   */
  deriveKey(request: Uint8Array, guest: SimulatedGuestContext): Uint8Array;
  product: SnpProduct;
  chipId: Uint8Array;
  /** Add to TrustConfig.snp.simulated to make the verifier accept this simulator's evidence. */
  trustAnchor: SimulatedSnpAnchor;
  /** ARK, ASK and ASVK (DER), as KDS cert_chain would deliver them. */
  caCerts: { ark: Uint8Array; ask: Uint8Array; asvk: Uint8Array };
  report(opts?: SimulatedReportOptions): Promise<SimulatedReport>;
  /** A CRL signed by the simulated ARK, listing the chosen intermediates as revoked. */
  crl(opts?: { revoke?: Array<"ask" | "asvk">; nextUpdate?: Date }): Promise<Uint8Array>;
  /** The platform's keys and certificates, to recreate it with `createSnpSimulator({ state })`. */
  exportState(): Promise<SnpSimulatorState>;
}

const CPUID: Record<SnpProduct, [number, number, number]> = {
  Milan: [0x19, 0x01, 0x01],
  Genoa: [0x19, 0x11, 0x01],
  Turin: [0x1a, 0x02, 0x00],
};
const VCEK_PRODUCT_NAME: Record<SnpProduct, string> = { Milan: "Milan-B0", Genoa: "Genoa", Turin: "Turin" };
const DEFAULT_TCB: Record<SnpProduct, TcbVersion> = {
  Milan: { bootloader: 3, tee: 0, snp: 8, microcode: 115 },
  Genoa: { bootloader: 10, tee: 0, snp: 25, microcode: 84 },
  Turin: { fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 71 },
};
// AMD's exact subject layout, so reference verifiers (go-sev-guest's profile checks) accept simulated
// evidence when given the simulated roots. What marks it as simulated is the unpinned ARK fingerprint.
const NAME_TAIL = "OU=Engineering, C=US, L=Santa Clara, ST=CA, O=Advanced Micro Devices";
const PSS = { name: "RSA-PSS", saltLength: 48 } as const;
const YEAR_MS = 365.25 * 24 * 3600 * 1000;

// DER encoders for the KDS extension values.
const derInt = (n: number) => (n < 0x80 ? [0x02, 0x01, n] : [0x02, 0x02, 0x00, n]);
const derIa5 = (s: string) => [0x16, s.length, ...Buffer.from(s, "latin1")];
const ext = (oid: string, bytes: number[] | Uint8Array) => new x509.Extension(oid, false, new Uint8Array(bytes));

function toBytes(v: Uint8Array | string | undefined, len: number, field: string): Uint8Array {
  if (v === undefined) return new Uint8Array(len);
  const b = typeof v === "string" ? Buffer.from(v.replace(/^0x/i, ""), "hex") : v;
  if (b.length > len) throw new RangeError(`simulator: ${field} must be at most ${len} bytes, got ${b.length}`);
  const out = new Uint8Array(len);
  out.set(b);
  return out;
}

async function rsaKeys(bits: number): Promise<webcrypto.CryptoKeyPair> {
  return subtle.generateKey(
    { name: "RSA-PSS", modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-384" },
    true,
    ["sign", "verify"],
  ) as Promise<webcrypto.CryptoKeyPair>;
}

async function ecKeys(): Promise<webcrypto.CryptoKeyPair> {
  return subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, [
    "sign",
    "verify",
  ]) as Promise<webcrypto.CryptoKeyPair>;
}

function caExtensions(product: SnpProduct, role: "vcek" | "vlek") {
  return [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    new x509.CRLDistributionPointsExtension([`https://kdsintf.amd.com/${role}/v1/${product}/crl`]),
  ];
}

export async function createSnpSimulator(opts: SnpSimulatorOptions = {}): Promise<SnpSimulator> {
  if (opts.state) return simulatorFromState(opts.state);
  const product = opts.product ?? "Milan";
  const bits = opts.rsaBits ?? 2048;
  const notBefore = opts.notBefore ?? new Date(Date.now() - 24 * 3600 * 1000);
  const caNotAfter = new Date(notBefore.getTime() + 25 * YEAR_MS);
  const chipId = new Uint8Array(64);
  chipId.set(opts.chipId ?? randomBytes(product === "Turin" ? 8 : 64));
  const platformTcb = opts.tcb ?? DEFAULT_TCB[product];
  const cspId = opts.cspId ?? "CN=simulated-cloud.buckypaper.invalid";
  const prefix = Math.max(1, ["Milan", "Genoa", "Turin"].indexOf(product) + 1);

  const [arkKeys, askKeys, asvkKeys, vlekKeys] = await Promise.all([
    rsaKeys(bits),
    rsaKeys(bits),
    rsaKeys(bits),
    ecKeys(),
  ]);
  const arkName = `CN=ARK-${product}, ${NAME_TAIL}`;
  const ark = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: `0${prefix}0000`,
    name: arkName,
    notBefore,
    notAfter: caNotAfter,
    keys: arkKeys,
    signingAlgorithm: PSS,
    extensions: caExtensions(product, "vcek"),
  });
  const issueCa = (cn: string, serial: string, keys: webcrypto.CryptoKeyPair, role: "vcek" | "vlek") =>
    x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: `CN=${cn}, ${NAME_TAIL}`,
      issuer: ark.subject,
      notBefore,
      notAfter: caNotAfter,
      publicKey: keys.publicKey,
      signingKey: arkKeys.privateKey,
      signingAlgorithm: PSS,
      extensions: caExtensions(product, role),
    });
  const ask = await issueCa(`SEV-${product}`, `0${prefix}0001`, askKeys, "vcek");
  const asvk = await issueCa(`SEV-VLEK-${product}`, `0${prefix}0101`, asvkKeys, "vlek");
  return buildSimulator({
    product,
    chipId,
    platformTcb,
    cspId,
    notBefore,
    arkKeys,
    askKeys,
    asvkKeys,
    vlekKeys,
    ark,
    ask,
    asvk,
    chipSecretSeed: new Uint8Array(await subtle.exportKey("pkcs8", vlekKeys.privateKey)),
    veks: new Map(),
  });
}

interface SimulatorParts {
  product: SnpProduct;
  chipId: Uint8Array;
  platformTcb: TcbVersion;
  cspId: string;
  notBefore: Date;
  arkKeys: webcrypto.CryptoKeyPair;
  askKeys: webcrypto.CryptoKeyPair;
  asvkKeys: webcrypto.CryptoKeyPair;
  vlekKeys: webcrypto.CryptoKeyPair;
  ark: x509.X509Certificate;
  ask: x509.X509Certificate;
  asvk: x509.X509Certificate;
  /** PKCS#8 of the VLEK private key: seeds the simulated per-chip secret (same across exportState). */
  chipSecretSeed: Uint8Array;
  /** VEKs already issued (restored from a state). */
  veks: Map<string, Promise<{ cert: Uint8Array; key: KeyObject }>>;
}

const b64 = (b: Uint8Array | ArrayBuffer) =>
  Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString("base64");
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

async function simulatorFromState(st: SnpSimulatorState): Promise<SnpSimulator> {
  if (st?.format !== "buckypaper-snp-simulator/1")
    throw new RangeError("simulator: state.format must be 'buckypaper-snp-simulator/1'");
  if (!(st.product in CPUID))
    throw new RangeError(`simulator: state.product '${String(st.product)}' is not Milan, Genoa or Turin`);
  if (!/^[0-9a-f]{128}$/.test(st.chipId))
    throw new RangeError("simulator: state.chipId must be 64 bytes of lowercase hex");
  const rsa = { name: "RSA-PSS", hash: "SHA-384" };
  const ec = { name: "ECDSA", namedCurve: "P-384" };
  const pair = async (
    field: "ark" | "ask" | "asvk" | "vlek",
    alg: typeof rsa | typeof ec,
  ): Promise<webcrypto.CryptoKeyPair> => {
    try {
      const privateKey = await subtle.importKey("pkcs8", unb64(st.keys[field]), alg, true, ["sign"]);
      // The public half is only used for issuing; derive it through a JWK round trip.
      const jwk = await subtle.exportKey("jwk", privateKey);
      const pub = { kty: jwk.kty, n: jwk.n, e: jwk.e, crv: jwk.crv, x: jwk.x, y: jwk.y };
      const publicKey = await subtle.importKey("jwk", pub, alg, true, ["verify"]);
      return { privateKey, publicKey } as webcrypto.CryptoKeyPair;
    } catch (e) {
      throw new RangeError(`simulator: state.keys.${field} is not a usable PKCS#8 key (${(e as Error).message})`, {
        cause: e,
      });
    }
  };
  const cert = (field: "ark" | "ask" | "asvk") => {
    try {
      return new x509.X509Certificate(unb64(st.certs[field]));
    } catch {
      throw new RangeError(`simulator: state.certs.${field} is not a DER certificate`);
    }
  };
  const [arkKeys, askKeys, asvkKeys, vlekKeys] = await Promise.all([
    pair("ark", rsa),
    pair("ask", rsa),
    pair("asvk", rsa),
    pair("vlek", ec),
  ]);
  const ark = cert("ark");
  const veks = new Map<string, Promise<{ cert: Uint8Array; key: KeyObject }>>();
  for (const [id, v] of Object.entries(st.veks ?? {})) {
    const key = await subtle.importKey("pkcs8", unb64(v.key), ec, true, ["sign"]).catch(() => {
      throw new RangeError(`simulator: state.veks['${id}'].key is not a P-384 PKCS#8 key`);
    });
    veks.set(id, Promise.resolve({ cert: unb64(v.cert), key: KeyObject.from(key) }));
  }
  return buildSimulator({
    product: st.product,
    chipId: new Uint8Array(Buffer.from(st.chipId, "hex")),
    platformTcb: st.tcb,
    cspId: st.cspId,
    notBefore: ark.notBefore,
    arkKeys,
    askKeys,
    asvkKeys,
    vlekKeys,
    ark,
    ask: cert("ask"),
    asvk: cert("asvk"),
    chipSecretSeed: new Uint8Array(await subtle.exportKey("pkcs8", vlekKeys.privateKey)),
    veks,
  });
}

async function buildSimulator(p: SimulatorParts): Promise<SnpSimulator> {
  const { product, chipId, platformTcb, cspId, notBefore, arkKeys, askKeys, asvkKeys, vlekKeys, ark, ask, asvk } = p;
  const der = (c: x509.X509Certificate) => new Uint8Array(c.rawData);
  const caCerts = { ark: der(ark), ask: der(ask), asvk: der(asvk) };

  const splExtensions = (tcb: TcbVersion) => {
    const e = [
      ext(OID.blSPL, derInt(tcb.bootloader)),
      ext(OID.teeSPL, derInt(tcb.tee)),
      ext(OID.snpSPL, derInt(tcb.snp)),
    ];
    // Milan/Genoa VEKs carry spl4..spl7 (all zero); Turin has no spl4 and adds fmcSPL.
    if (product !== "Turin") e.push(ext(OID.spl4, derInt(0)));
    e.push(
      ext(OID.spl5, derInt(0)),
      ext(OID.spl6, derInt(0)),
      ext(OID.spl7, derInt(0)),
      ext(OID.ucodeSPL, derInt(tcb.microcode)),
    );
    if (product === "Turin") e.push(ext(OID.fmcSPL, derInt(tcb.fmc ?? 0)));
    return e;
  };
  const issueVek = (kind: "vcek" | "vlek", tcb: TcbVersion, publicKey: webcrypto.CryptoKey) =>
    x509.X509CertificateGenerator.create({
      serialNumber: "00",
      subject: `CN=SEV-${kind.toUpperCase()}, ${NAME_TAIL}`,
      issuer: kind === "vcek" ? ask.subject : asvk.subject,
      notBefore,
      notAfter: new Date(notBefore.getTime() + 7 * YEAR_MS),
      publicKey,
      signingKey: kind === "vcek" ? askKeys.privateKey : asvkKeys.privateKey,
      signingAlgorithm: PSS,
      extensions: [
        ext(OID.structVersion, derInt(product === "Turin" ? 1 : 0)),
        ext(OID.productName, derIa5(kind === "vcek" ? VCEK_PRODUCT_NAME[product] : product)),
        ...splExtensions(tcb),
        kind === "vcek"
          ? ext(OID.hwID, product === "Turin" ? chipId.subarray(0, 8) : chipId)
          : ext(OID.cspID, derIa5(cspId)),
      ],
    });

  // One VCEK per TCB (the real chip derives a new key per TCB); VLEKs likewise per TCB, one key.
  const veks = p.veks;
  const vekFor = (kind: "vcek" | "vlek", tcb: TcbVersion) => {
    const id = `${kind}:${Buffer.from(encodeTcb(tcb, product)).toString("hex")}`;
    let p = veks.get(id);
    if (!p) {
      p = (async () => {
        const keys = kind === "vlek" ? vlekKeys : await ecKeys();
        const cert = await issueVek(kind, tcb, keys.publicKey);
        return { cert: der(cert), key: KeyObject.from(keys.privateKey) };
      })();
      veks.set(id, p);
    }
    return p;
  };

  const trustAnchor: SimulatedSnpAnchor = {
    simulated: true,
    product,
    arkSha256: createHash("sha256").update(caCerts.ark).digest("hex"),
    caCerts: [caCerts.ark, caCerts.ask, caCerts.asvk],
  };

  async function report(o: SimulatedReportOptions = {}): Promise<SimulatedReport> {
    const version = o.version ?? (product === "Milan" ? 2 : 3);
    if (![2, 3, 5].includes(version))
      throw new RangeError(`simulator: report version must be 2, 3 or 5, got ${version}`);
    const signer = o.signer ?? "vcek";
    const tcb = o.tcb ?? platformTcb;
    const tcbBytes = encodeTcb(tcb, product);
    const vek = await vekFor(signer, tcb);

    let policy = 0x30000n;
    if (typeof o.policy === "bigint") policy = o.policy;
    else if (o.policy) {
      const p = o.policy;
      const set = (bit: number, on: boolean | undefined) => {
        if (on === undefined) return;
        policy = on ? policy | (1n << BigInt(bit)) : policy & ~(1n << BigInt(bit));
      };
      set(16, p.smt);
      set(18, p.migrateMa);
      set(19, p.debug);
      set(20, p.singleSocket);
      if (p.abiMinor !== undefined) policy = (policy & ~0xffn) | BigInt(p.abiMinor & 0xff);
      if (p.abiMajor !== undefined) policy = (policy & ~0xff00n) | (BigInt(p.abiMajor & 0xff) << 8n);
    }

    const b = new Uint8Array(REPORT_SIZE);
    const dv = new DataView(b.buffer);
    dv.setUint32(0x000, version, true);
    dv.setUint32(0x004, o.guestSvn ?? 0, true);
    dv.setBigUint64(0x008, policy, true);
    b.set(toBytes(o.familyId, 16, "familyId"), 0x010);
    b.set(toBytes(o.imageId, 16, "imageId"), 0x020);
    dv.setUint32(0x030, o.vmpl ?? 0, true);
    dv.setUint32(0x034, 1, true);
    b.set(tcbBytes, 0x038);
    dv.setBigUint64(0x040, o.platformInfo ?? 0x3n, true);
    const authorKeyEn = o.authorKeyDigest !== undefined;
    dv.setUint32(0x048, (authorKeyEn ? 1 : 0) | (o.maskChipId ? 2 : 0) | ((signer === "vlek" ? 1 : 0) << 2), true);
    b.set(toBytes(o.reportData, 64, "reportData"), 0x050);
    b.set(toBytes(o.measurement, 48, "measurement"), 0x090);
    b.set(toBytes(o.hostData, 32, "hostData"), 0x0c0);
    b.set(toBytes(o.idKeyDigest, 48, "idKeyDigest"), 0x0e0);
    b.set(toBytes(o.authorKeyDigest, 48, "authorKeyDigest"), 0x110);
    b.set(randomBytes(32), 0x140);
    b.fill(0xff, 0x160, 0x180);
    b.set(tcbBytes, 0x180);
    if (version >= 3) b.set(o.cpuid ?? CPUID[product], 0x188);
    if (!o.maskChipId) b.set(chipId, 0x1a0);
    b.set(o.committedTcb ? encodeTcb(o.committedTcb, product) : tcbBytes, 0x1e0);
    b.set([5, 55, 1], 0x1e8); // CURRENT build, minor, major = 1.55.5
    b.set([5, 55, 1], 0x1ec);
    b.set(encodeTcb(o.launchTcb ?? tcb, product), 0x1f0);
    if (version >= 5) {
      dv.setBigUint64(0x1f8, 0x3n, true);
      dv.setBigUint64(0x200, 0x3n, true);
    }
    const sig = sign("sha384", b.subarray(0, SIGNED_LENGTH), { key: vek.key, dsaEncoding: "ieee-p1363" });
    for (let i = 0; i < 48; i++) {
      b[0x2a0 + i] = sig[47 - i];
      b[0x2e8 + i] = sig[95 - i];
    }
    const certTable = buildCertTable([
      { guid: signer === "vlek" ? CERT_GUID.vlek : CERT_GUID.vcek, data: vek.cert },
      { guid: CERT_GUID.ask, data: signer === "vlek" ? caCerts.asvk : caCerts.ask },
      { guid: CERT_GUID.ark, data: caCerts.ark },
    ]);
    return { report: b, certTable, vek: vek.cert };
  }

  async function crl(o: { revoke?: Array<"ask" | "asvk">; nextUpdate?: Date } = {}): Promise<Uint8Array> {
    const serials = { ask: ask.serialNumber, asvk: asvk.serialNumber };
    const c = await x509.X509CrlGenerator.create({
      issuer: ark.subject,
      thisUpdate: new Date(Date.now() - 3600 * 1000),
      nextUpdate: o.nextUpdate ?? new Date(Date.now() + 7 * 24 * 3600 * 1000),
      entries: (o.revoke ?? []).map((r) => ({
        serialNumber: serials[r],
        revocationDate: new Date(Date.now() - 60_000),
      })),
      signingKey: arkKeys.privateKey,
      signingAlgorithm: PSS,
    });
    return new Uint8Array(c.rawData);
  }

  async function exportState(): Promise<SnpSimulatorState> {
    const pkcs8 = async (k: webcrypto.CryptoKey) => b64(await subtle.exportKey("pkcs8", k));
    const vekOut: SnpSimulatorState["veks"] = {};
    for (const [id, v] of veks) {
      const { cert, key } = await v;
      vekOut[id] = { cert: b64(cert), key: b64(key.export({ type: "pkcs8", format: "der" })) };
    }
    return {
      format: "buckypaper-snp-simulator/1",
      product,
      chipId: Buffer.from(chipId).toString("hex"),
      tcb: platformTcb,
      cspId,
      keys: {
        ark: await pkcs8(arkKeys.privateKey),
        ask: await pkcs8(askKeys.privateKey),
        asvk: await pkcs8(asvkKeys.privateKey),
        vlek: await pkcs8(vlekKeys.privateKey),
      },
      certs: { ark: b64(caCerts.ark), ask: b64(caCerts.ask), asvk: b64(caCerts.asvk) },
      veks: vekOut,
    };
  }

  // The per-chip secret the real PSP fuses in. Derived from this platform's private VLEK (so a saved
  // state carries it and another simulated platform has another); never leaves the simulator.
  const chipSecret = createHash("sha256")
    .update("bk-sim-snp-chip-secret\0")
    .update(Buffer.from(chipId))
    .update(p.chipSecretSeed)
    .digest();

  function deriveKey(request: Uint8Array, guest: SimulatedGuestContext): Uint8Array {
    const r = decodeKeyRequest(request);
    const ownVmpl = guest.vmpl ?? 0;
    if (r.vmpl < ownVmpl)
      throw new RangeError(`simulator: key request VMPL ${r.vmpl} is more privileged than the guest's ${ownVmpl}`);
    if (r.guestSvn > (guest.guestSvn ?? 0))
      throw new RangeError("simulator: key request GUEST_SVN exceeds the guest's SVN");
    if (guest.measurement.length !== 48) throw new RangeError("simulator: guest measurement must be 48 bytes");
    // Stricter than a real PSP on purpose: a key "bound to the measurement" of a launch whose measurement
    // leaves out the kernel, initrd and command line (and so the root filesystem) opens for whatever is
    // booted with that firmware — sealing to it would promise what it does not keep.
    if (guest.kernelMeasured === false)
      throw new RangeError(
        "simulator: MSG_KEY_REQ refused: the launch is not kernel-measured (the firmware has no SNP kernel-hashes table), so MEASUREMENT does not cover the kernel, initrd, command line or root filesystem; boot a kernel-hashes (AmdSev) firmware",
      );
    // VMRK: a per-VM root the migration agent would carry; the simulator has no migration, so it is
    // bound to the measurement and chip as a stand-in (never equal to the VCEK root).
    const root = createHmac("sha256", chipSecret)
      .update(r.rootKey === "vcek" ? "root:vcek" : "root:vmrk")
      .update(r.rootKey === "vmrk" ? Buffer.from(guest.measurement) : Buffer.alloc(0))
      .digest();
    const h = createHmac("sha256", root).update(Buffer.from(request));
    const mix = (bit: bigint, label: string, v: Uint8Array) => {
      if (r.fieldSelect & bit) h.update(label).update(Buffer.from(v));
    };
    const u64 = (n: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt.asUintN(64, n));
      return b;
    };
    mix(FIELD.policy, "policy", u64(guest.policy));
    mix(FIELD.imageId, "image_id", guest.imageId ?? new Uint8Array(16));
    mix(FIELD.familyId, "family_id", guest.familyId ?? new Uint8Array(16));
    mix(FIELD.measurement, "measurement", guest.measurement);
    mix(FIELD.guestSvn, "guest_svn", u64(BigInt(r.guestSvn)));
    mix(FIELD.tcbVersion, "tcb", r.tcb);
    return new Uint8Array(h.digest());
  }

  return { product, chipId, trustAnchor, caCerts, report, crl, exportState, deriveKey };
}
