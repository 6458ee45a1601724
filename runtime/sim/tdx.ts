// A simulated Intel TDX DCAP stack for tests and the local stack: a fake Intel SGX Root CA, PCK Platform
// CA, PCK certificate (with the real SGX extension layout), Quoting Enclave and attestation key, all made
// at run time. It signs correctly formatted v4 and v5 quotes for the given MRTD/RTMRs/REPORTDATA, and the
// matching collateral (TCB info, QE identity). Its root is NOT Intel's: a verifier accepts its quotes only
// when the root fingerprint is passed in `simulatedRoots`, and every verdict then says simulated.
import "reflect-metadata"; // @peculiar/x509 needs it loaded first
import * as px509 from "@peculiar/x509";
import { KeyObject, createHash, randomBytes, sign as cryptoSign, webcrypto } from "node:crypto";
import {
  BODY_TYPE_TDX10,
  BODY_TYPE_TDX15,
  CERT_DATA_PCK_CHAIN,
  CERT_DATA_QE_REPORT,
  INTEL_QE_VENDOR_ID,
  TD_REPORT_BODY_10_SIZE,
  TD_REPORT_BODY_15_SIZE,
} from "../attestation/tdx/abi.js";
import { derOctets, derOid, derSeq, derUint } from "../attestation/tdx/der.js";
import type { TdxCollateral } from "../attestation/tdx/collateral.js";
import { INTEL_TD_QE_MRSIGNER } from "../attestation/tdx/verify.js";
import { pemEncode } from "../attestation/pem.js";

const SGX_EXT = "1.2.840.113741.1.13.1";
const ALG = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIG_ALG = { name: "ECDSA", hash: "SHA-256" } as const;
const SIM_ORG = "SIMULATED - not Intel (buckypaper test hierarchy)";
// The QE MRSIGNER is a public value the verifier expects; the simulated hierarchy, not the QE, marks it simulated.
const SIM_QE_MRSIGNER = Buffer.from(INTEL_TD_QE_MRSIGNER, "hex");

export interface SimulatedTdxQuoteInput {
  /** 4 (default) or 5. */
  version?: 4 | 5;
  /** v5 only: 2 = TD report 1.0, 3 = TD report 1.5 (default). */
  bodyType?: 2 | 3;
  mrTd?: Uint8Array;
  rtmrs?: Uint8Array[];
  reportData?: Uint8Array;
  /** 8 bytes; bit 0 = DEBUG. Default: SEPT_VE_DISABLE only. */
  tdAttributes?: Uint8Array;
  xfam?: Uint8Array;
  mrConfigId?: Uint8Array;
  mrOwner?: Uint8Array;
  mrOwnerConfig?: Uint8Array;
  mrSeam?: Uint8Array;
  /** 16 bytes; byte 1 > 0 = TDX 1.5 module. */
  teeTcbSvn?: Uint8Array;
  mrServiceTd?: Uint8Array;
  /** Negative testing: a QE report from another enclave (still signed by the PCK key). */
  qeMrSigner?: Uint8Array;
}

const pem = (der: ArrayBuffer | Uint8Array): string =>
  pemEncode("CERTIFICATE", der instanceof Uint8Array ? der : new Uint8Array(der));

function name(cn: string): string {
  return `CN=${cn}, O=${SIM_ORG}, L=Santa Clara, ST=CA, C=US`;
}

function fixed(b: Uint8Array | undefined, len: number, field: string, fill = 0): Buffer {
  if (b === undefined) return Buffer.alloc(len, fill);
  if (b.length !== len) throw new Error(`simulated quote ${field}: ${b.length} bytes, expected ${len}`);
  return Buffer.from(b);
}

/** The PCK certificate's SGX extension (go-tdx-guest pcs.go layout). */
function sgxExtension(ppid: Buffer, fmspc: Buffer, comps: number[], pceSvn: number, cpuSvn: Buffer): Uint8Array {
  const tcb = comps.map((svn, i) => derSeq(derOid(`${SGX_EXT}.2.${i + 1}`), derUint(svn)));
  tcb.push(derSeq(derOid(`${SGX_EXT}.2.17`), derUint(pceSvn)), derSeq(derOid(`${SGX_EXT}.2.18`), derOctets(cpuSvn)));
  return derSeq(
    derSeq(derOid(`${SGX_EXT}.1`), derOctets(ppid)),
    derSeq(derOid(`${SGX_EXT}.2`), derSeq(...tcb)),
    derSeq(derOid(`${SGX_EXT}.3`), derOctets(Buffer.alloc(2))),
    derSeq(derOid(`${SGX_EXT}.4`), derOctets(fmspc)),
    derSeq(derOid(`${SGX_EXT}.5`), derUint(0, 0x0a)),
  );
}

/** One simulated platform: its PCK certificate (own PPID and key) under the PCK CA, and its attestation key. */
async function issuePlatform(
  caName: string,
  caKey: webcrypto.CryptoKey,
  fmspc: Buffer,
  notBefore: Date,
  notAfter: Date,
) {
  const crypto = webcrypto;
  const gen = () => crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as Promise<webcrypto.CryptoKeyPair>;
  const [pck, attest] = await Promise.all([gen(), gen()]);
  const pckSerial = "01" + randomBytes(15).toString("hex");
  const ppid = randomBytes(16);
  const pckCert = await px509.X509CertificateGenerator.create(
    {
      serialNumber: pckSerial,
      subject: name("Intel SGX PCK Certificate"),
      issuer: caName,
      notBefore,
      notAfter,
      signingAlgorithm: SIG_ALG,
      publicKey: pck.publicKey,
      signingKey: caKey,
      extensions: [
        new px509.BasicConstraintsExtension(false, undefined, true),
        new px509.Extension(SGX_EXT, false, sgxExtension(ppid, fmspc, new Array(16).fill(2), 11, Buffer.alloc(16, 2))),
      ],
    },
    crypto as never,
  );
  const attestJwk = await crypto.subtle.exportKey("jwk", attest.publicKey);
  return {
    pckDer: new Uint8Array(pckCert.rawData),
    pckSerial,
    ppid: ppid.toString("hex"),
    pckKey: KeyObject.from(pck.privateKey),
    attestKey: KeyObject.from(attest.privateKey),
    attestPub: Buffer.concat([Buffer.from(attestJwk.x!, "base64url"), Buffer.from(attestJwk.y!, "base64url")]),
  };
}

interface SimCa {
  name: string;
  key: webcrypto.CryptoKey;
  serial: string;
}

export class TdxSimulator {
  readonly simulated = true;
  /** SHA-256 (hex) of the simulated root: pass it in `simulatedRoots` to trust this simulator. */
  readonly rootFingerprint: string;
  readonly fmspc: string;
  private constructor(
    private readonly chainPem: string,
    private readonly pckKey: KeyObject,
    private readonly attestKey: KeyObject,
    private readonly attestPub: Buffer,
    private readonly tcbSigningKey: KeyObject,
    readonly rootDer: Uint8Array,
    readonly tcbSigningDer: Uint8Array,
    fmspc: string,
    private readonly crlIssuers: { root: SimCa; ca: SimCa; pckSerial: string },
    /** This platform's PPID (hex), in its PCK certificate's SGX extension. */
    readonly ppid: string,
    private readonly validity: { notBefore: Date; notAfter: Date },
  ) {
    this.rootFingerprint = createHash("sha256").update(rootDer).digest("hex");
    this.fmspc = fmspc;
  }

  /** Generates a fresh hierarchy (root, PCK CA, PCK, TCB signing cert, attestation key). */
  static async create(opts: { fmspc?: string; validDays?: number } = {}): Promise<TdxSimulator> {
    const crypto = webcrypto;
    px509.cryptoProvider.set(crypto as never);
    const gen = () => crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as Promise<webcrypto.CryptoKeyPair>;
    const [root, ca, tcbSigner] = await Promise.all([gen(), gen(), gen()]);
    const notBefore = new Date(Date.now() - 86_400_000);
    const notAfter = new Date(Date.now() + (opts.validDays ?? 3650) * 86_400_000);
    const serial = () => "01" + randomBytes(15).toString("hex");
    const caExt = [
      new px509.BasicConstraintsExtension(true, undefined, true),
      new px509.KeyUsagesExtension(px509.KeyUsageFlags.keyCertSign | px509.KeyUsageFlags.cRLSign, true),
    ];
    const rootCert = await px509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: serial(),
        name: name("Intel SGX Root CA"),
        keys: root,
        signingAlgorithm: SIG_ALG,
        notBefore,
        notAfter,
        extensions: caExt,
      },
      crypto as never,
    );
    const issue = (cn: string, key: webcrypto.CryptoKeyPair, extensions: px509.Extension[]) =>
      px509.X509CertificateGenerator.create(
        {
          serialNumber: serial(),
          subject: name(cn),
          issuer: rootCert.subject,
          notBefore,
          notAfter,
          signingAlgorithm: SIG_ALG,
          publicKey: key.publicKey,
          signingKey: root.privateKey,
          extensions,
        },
        crypto as never,
      );
    const caCert = await issue("Intel SGX PCK Platform CA", ca, caExt);
    const tcbCert = await issue("Intel SGX TCB Signing", tcbSigner, [
      new px509.BasicConstraintsExtension(false, undefined, true),
    ]);
    const fmspc = Buffer.from(opts.fmspc ?? "00906ed50000", "hex");
    const platform = await issuePlatform(caCert.subject, ca.privateKey, fmspc, notBefore, notAfter);
    return new TdxSimulator(
      pem(platform.pckDer) + pem(caCert.rawData) + pem(rootCert.rawData),
      platform.pckKey,
      platform.attestKey,
      platform.attestPub,
      KeyObject.from(tcbSigner.privateKey),
      new Uint8Array(rootCert.rawData),
      new Uint8Array(tcbCert.rawData),
      fmspc.toString("hex"),
      {
        root: { name: rootCert.subject, key: root.privateKey, serial: rootCert.serialNumber },
        ca: { name: caCert.subject, key: ca.privateKey, serial: caCert.serialNumber },
        pckSerial: platform.pckSerial,
      },
      platform.ppid,
      { notBefore, notAfter },
    );
  }

  /**
   * Another platform (machine) under the same simulated Intel hierarchy — same root, PCK CA and TCB signing key,
   * so the same `rootFingerprint` trusts it — with its own PCK certificate (another PPID, another PCK key) and
   * its own attestation key.
   */
  async otherPlatform(): Promise<TdxSimulator> {
    const p = await issuePlatform(
      this.crlIssuers.ca.name,
      this.crlIssuers.ca.key,
      Buffer.from(this.fmspc, "hex"),
      this.validity.notBefore,
      this.validity.notAfter,
    );
    // The chain after the leaf (PCK CA, root) is this platform's.
    const rest = this.chainPem.slice(this.chainPem.indexOf("-----END CERTIFICATE-----") + 25).replace(/^\s+/, "");
    return new TdxSimulator(
      pem(p.pckDer) + rest,
      p.pckKey,
      p.attestKey,
      p.attestPub,
      this.tcbSigningKey,
      this.rootDer,
      this.tcbSigningDer,
      this.fmspc,
      { ...this.crlIssuers, pckSerial: p.pckSerial },
      p.ppid,
      this.validity,
    );
  }

  /** Signed CRLs: the PCK Platform CA's (optionally revoking the PCK) and the root's (optionally revoking the CA). */
  async crls(opts: { revokePck?: boolean; revokeCa?: boolean; now?: Date } = {}): Promise<Uint8Array[]> {
    const now = opts.now ?? new Date();
    const make = async (issuer: SimCa, revoked: string | undefined) => {
      const crl = await px509.X509CrlGenerator.create(
        {
          issuer: issuer.name,
          thisUpdate: new Date(now.getTime() - 3_600_000),
          nextUpdate: new Date(now.getTime() + 30 * 86_400_000),
          signingAlgorithm: SIG_ALG,
          signingKey: issuer.key as never,
          entries: revoked ? [{ serialNumber: revoked, revocationDate: new Date(now.getTime() - 7_200_000) }] : [],
        },
        webcrypto as never,
      );
      return new Uint8Array(crl.rawData);
    };
    return [
      await make(this.crlIssuers.ca, opts.revokePck ? this.crlIssuers.pckSerial : undefined),
      await make(this.crlIssuers.root, opts.revokeCa ? this.crlIssuers.ca.serial : undefined),
    ];
  }

  /** A TD report body (584 or 648 bytes). */
  private body(q: SimulatedTdxQuoteInput, size: number): Buffer {
    const body = Buffer.alloc(size);
    fixed(q.teeTcbSvn, 16, "teeTcbSvn").copy(body, 0);
    fixed(q.mrSeam, 48, "mrSeam", 0x11).copy(body, 16);
    fixed(q.tdAttributes, 8, "tdAttributes").copy(body, 120);
    if (!q.tdAttributes) body[120 + 3] = 0x10; // SEPT_VE_DISABLE (bit 28)
    fixed(q.xfam, 8, "xfam").copy(body, 128);
    if (!q.xfam) Buffer.from("e702060000000000", "hex").copy(body, 128);
    fixed(q.mrTd, 48, "mrTd").copy(body, 136);
    fixed(q.mrConfigId, 48, "mrConfigId").copy(body, 184);
    fixed(q.mrOwner, 48, "mrOwner").copy(body, 232);
    fixed(q.mrOwnerConfig, 48, "mrOwnerConfig").copy(body, 280);
    const rtmrs = q.rtmrs ?? [];
    if (rtmrs.length > 4) throw new Error("simulated quote rtmrs: at most 4");
    for (let i = 0; i < 4; i++) fixed(rtmrs[i], 48, `rtmr${i}`).copy(body, 328 + 48 * i);
    fixed(q.reportData, 64, "reportData").copy(body, 520);
    if (size === TD_REPORT_BODY_15_SIZE) fixed(q.mrServiceTd, 48, "mrServiceTd").copy(body, 600);
    return body;
  }

  /** Signs a correctly formatted DCAP quote. */
  quote(q: SimulatedTdxQuoteInput = {}): Uint8Array {
    const version = q.version ?? 4;
    const header = Buffer.alloc(48);
    header.writeUInt16LE(version, 0);
    header.writeUInt16LE(2, 2);
    header.writeUInt32LE(0x81, 4);
    Buffer.from(INTEL_QE_VENDOR_ID, "hex").copy(header, 12);
    let signed: Buffer;
    if (version === 4) {
      signed = Buffer.concat([header, this.body(q, TD_REPORT_BODY_10_SIZE)]);
    } else {
      const type = q.bodyType ?? BODY_TYPE_TDX15;
      const size = type === BODY_TYPE_TDX10 ? TD_REPORT_BODY_10_SIZE : TD_REPORT_BODY_15_SIZE;
      const desc = Buffer.alloc(6);
      desc.writeUInt16LE(type, 0);
      desc.writeUInt32LE(size, 2);
      signed = Buffer.concat([header, desc, this.body(q, size)]);
    }
    const signature = cryptoSign("sha256", signed, { key: this.attestKey, dsaEncoding: "ieee-p1363" });

    const authData = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    const qe = Buffer.alloc(384);
    Buffer.alloc(16, 2).copy(qe, 0); // CPUSVN
    Buffer.from("11000000000000000000000000000000", "hex").copy(qe, 48); // ATTRIBUTES: INIT | MODE64BIT
    createHash("sha256").update("simulated TD QE").digest().copy(qe, 64); // MRENCLAVE
    fixed(q.qeMrSigner, 32, "qeMrSigner").copy(qe, 128);
    if (!q.qeMrSigner) SIM_QE_MRSIGNER.copy(qe, 128);
    qe.writeUInt16LE(2, 256); // ISVPRODID (TD QE)
    qe.writeUInt16LE(4, 258); // ISVSVN
    createHash("sha256").update(this.attestPub).update(authData).digest().copy(qe, 320);
    const qeSig = cryptoSign("sha256", qe, { key: this.pckKey, dsaEncoding: "ieee-p1363" });

    const chain = Buffer.from(this.chainPem, "latin1");
    const u16 = (n: number) => Buffer.from([n & 0xff, n >> 8]);
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(n);
      return b;
    };
    const inner = Buffer.concat([u16(CERT_DATA_PCK_CHAIN), u32(chain.length), chain]);
    const outer = Buffer.concat([qe, qeSig, u16(authData.length), authData, inner]);
    const sigData = Buffer.concat([signature, this.attestPub, u16(CERT_DATA_QE_REPORT), u32(outer.length), outer]);
    return Buffer.concat([signed, u32(sigData.length), sigData]);
  }

  /**
   * Collateral signed by the simulated TCB signing key: TCB info for this FMSPC with one level
   * (status `status`, all SVNs 0) and, for TDX 1.5 modules, identities TDX_01..TDX_03; and the QE identity.
   */
  collateral(opts: { status?: string; qeStatus?: string; now?: Date } = {}): TdxCollateral {
    const now = opts.now ?? new Date();
    const issueDate = new Date(now.getTime() - 86_400_000).toISOString().replace(/\.\d+Z$/, "Z");
    const nextUpdate = new Date(now.getTime() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, "Z");
    const zeros = (n: number) => Array.from({ length: n }, () => ({ svn: 0 }));
    const mod = { mrsigner: "00".repeat(48), attributes: "0000000000000000", attributesMask: "FFFFFFFFFFFFFFFF" };
    const tcbInfo = JSON.stringify({
      id: "TDX",
      version: 3,
      issueDate,
      nextUpdate,
      fmspc: this.fmspc,
      pceId: "0000",
      tcbType: 0,
      tcbEvaluationDataNumber: 1,
      tdxModule: mod,
      tdxModuleIdentities: ["TDX_01", "TDX_02", "TDX_03"].map((id) => ({
        id,
        ...mod,
        tcbLevels: [{ tcb: { isvsvn: 0 }, tcbDate: issueDate, tcbStatus: "UpToDate" }],
      })),
      tcbLevels: [
        {
          tcb: { sgxtcbcomponents: zeros(16), pcesvn: 0, tdxtcbcomponents: zeros(16) },
          tcbDate: issueDate,
          tcbStatus: opts.status ?? "UpToDate",
        },
      ],
    });
    const qeIdentity = JSON.stringify({
      id: "TD_QE",
      version: 2,
      issueDate,
      nextUpdate,
      tcbEvaluationDataNumber: 1,
      miscselect: "00000000",
      miscselectMask: "FFFFFFFF",
      attributes: "11000000000000000000000000000000",
      attributesMask: "FBFFFFFFFFFFFFFF0000000000000000",
      mrsigner: SIM_QE_MRSIGNER.toString("hex").toUpperCase(),
      isvprodid: 2,
      tcbLevels: [{ tcb: { isvsvn: 4 }, tcbDate: issueDate, tcbStatus: opts.qeStatus ?? "UpToDate" }],
    });
    const signJson = (member: string, raw: string) =>
      `{"${member}":${raw},"signature":"${cryptoSign("sha256", Buffer.from(raw), { key: this.tcbSigningKey, dsaEncoding: "ieee-p1363" }).toString("hex")}"}`;
    return {
      tcbInfos: [signJson("tcbInfo", tcbInfo)],
      qeIdentities: [signJson("enclaveIdentity", qeIdentity)],
      certificates: [this.tcbSigningDer, this.rootDer],
      crls: [],
    };
  }
}
