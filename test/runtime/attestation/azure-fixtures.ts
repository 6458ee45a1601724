// Builds self-consistent Azure TDX CVM evidence around the TDX simulator: an HCL report with a TDREPORT
// and runtime claims, a vTPM AK (RSA-2048) in those claims, a TPM2 quote signed by it, and a simulated TD
// quote whose REPORTDATA is SHA-256(runtime claims) ‖ 0^32. Test-only: nothing here is trusted by default.
import { createHash, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import type { TdxSimulator } from "../../../runtime/sim/tdx.js";
import type { SnpSimulator } from "../../../runtime/sim/snp.js";
import type { AzureEvidence } from "../../../runtime/attestation/azure/index.js";

export interface AzureTdxFixture {
  evidence: Extract<AzureEvidence, { kind: "azure-tdx" }>;
  akPrivate: KeyObject;
  nonce: Buffer;
}

let ak: { publicKey: KeyObject; privateKey: KeyObject } | undefined;

export function tpmQuoteMessage(nonce: Uint8Array, pcrs: Buffer[]): Buffer {
  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
  const signer = Buffer.concat([u16(0x000b), Buffer.alloc(32, 0x42)]);
  const digest = createHash("sha256").update(Buffer.concat(pcrs)).digest();
  return Buffer.concat([
    Buffer.from("ff544347", "hex"),
    u16(0x8018),
    u16(signer.length),
    signer,
    u16(nonce.length),
    Buffer.from(nonce),
    Buffer.alloc(17, 1),
    Buffer.alloc(8, 2),
    Buffer.from([0, 0, 0, 1]),
    u16(0x000b),
    Buffer.from([3, 0xff, 0xff, 0xff]),
    u16(digest.length),
    digest,
  ]);
}

const HASHES = { 1: ["sha256", 32], 2: ["sha384", 48], 3: ["sha512", 64] } as const;

/** Runtime claims JSON with the fixture AK, and the REPORT_DATA that binds it. */
function runtimeClaims(userData: string | undefined, hashType: 1 | 2 | 3): { json: Buffer; reportData: Buffer } {
  ak ??= generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = ak.publicKey.export({ format: "jwk" });
  const claims = {
    keys: [{ kid: "HCLAkPub", key_ops: ["sign"], kty: "RSA", e: jwk.e, n: jwk.n }],
    "vm-configuration": {
      "console-enabled": false,
      "secure-boot": true,
      "tpm-enabled": true,
      vmUniqueId: "00000000-0000-0000-0000-000000000001",
    },
    "user-data": userData ?? "00".repeat(64),
  };
  const json = Buffer.from(JSON.stringify(claims));
  const [alg, n] = HASHES[hashType];
  return { json, reportData: Buffer.concat([createHash(alg).update(json).digest(), Buffer.alloc(64 - n)]) };
}

/** An HCL report (layout in ../shared/docs/reference/azure-gcp-evidence.md) around a hardware report and runtime claims JSON. */
export function hclReport(hw: Uint8Array, reportType: 2 | 4, json: Buffer, hashType: 1 | 2 | 3): Buffer {
  const hcl = Buffer.alloc(0x4d4 + json.length);
  hcl.write("HCLA", 0, "latin1");
  hcl.writeUInt32LE(reportType === 2 ? 1 : 2, 4);
  hcl.writeUInt32LE(hcl.length, 8);
  hcl.writeUInt32LE(2, 12);
  Buffer.from(hw).copy(hcl, 0x20);
  hcl.writeUInt32LE(json.length + 20, 0x4c0);
  hcl.writeUInt32LE(1, 0x4c4);
  hcl.writeUInt32LE(reportType, 0x4c8);
  hcl.writeUInt32LE(hashType, 0x4cc);
  hcl.writeUInt32LE(json.length, 0x4d0);
  json.copy(hcl, 0x4d4);
  return hcl;
}

/** A quote over PCRs 0-23 by the fixture AK; `values` default to stand-ins, or a boot's (azure-boot-log.ts). */
export function tpmQuote(nonce: Buffer, values?: Buffer[]) {
  const pcrs = values ?? Array.from({ length: 24 }, (_, i) => createHash("sha256").update(`pcr${i}`).digest());
  const message = tpmQuoteMessage(nonce, pcrs);
  const signature = sign("sha256", message, ak!.privateKey);
  return { message, signature, pcrs: Object.fromEntries(pcrs.map((p, i) => [i, p])) as Record<number, Uint8Array> };
}

const pem = (der: Uint8Array) =>
  `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString("base64")}\n-----END CERTIFICATE-----\n`;

/** Azure SNP evidence around the SEV-SNP simulator (trust it with trust.snp.simulated = [sim.trustAnchor]). */
export async function buildAzureSnpEvidence(
  sim: SnpSimulator,
  opts: { nonce?: Buffer; hashType?: 1 | 2 | 3; userData?: string; pcrs?: Buffer[]; eventLog?: Buffer } = {},
): Promise<Extract<AzureEvidence, { kind: "azure-snp" }>> {
  const { json, reportData } = runtimeClaims(opts.userData, opts.hashType ?? 1);
  const r = await sim.report({ reportData, vmpl: 0, policy: { smt: true } });
  return {
    kind: "azure-snp",
    hclReport: hclReport(r.report, 2, json, opts.hashType ?? 1),
    tpmQuote: tpmQuote(opts.nonce ?? Buffer.from("fixture-nonce"), opts.pcrs),
    vcekChainPem: pem(r.vek) + pem(sim.caCerts.ask) + pem(sim.caCerts.ark),
    ...(opts.eventLog ? { eventLog: opts.eventLog } : {}),
  };
}

export function buildAzureTdxEvidence(
  sim: TdxSimulator,
  opts: { nonce?: Buffer; userData?: string; hashType?: 1 | 2 | 3; pcrs?: Buffer[]; eventLog?: Buffer } = {},
): AzureTdxFixture {
  const hashType = opts.hashType ?? 1;
  const { json, reportData } = runtimeClaims(opts.userData, hashType);
  const mrTd = Buffer.alloc(48, 0x3d);
  const rtmrs = [1, 2, 3, 4].map((i) => Buffer.alloc(48, i));
  const tdAttributes = Buffer.from("0000001000000000", "hex");
  const xfam = Buffer.from("e702060000000000", "hex");
  const tdQuote = sim.quote({ version: 4, mrTd, rtmrs, reportData, tdAttributes, xfam });

  const tdReport = Buffer.alloc(1024);
  tdReport[0] = 0x81;
  reportData.copy(tdReport, 0x80);
  tdAttributes.copy(tdReport, 512);
  xfam.copy(tdReport, 520);
  mrTd.copy(tdReport, 528);
  rtmrs.forEach((r, i) => r.copy(tdReport, 512 + 208 + 48 * i));

  const hcl = hclReport(tdReport, 4, json, hashType);
  const nonce = opts.nonce ?? Buffer.from("fixture-nonce");
  return {
    evidence: {
      kind: "azure-tdx",
      hclReport: hcl,
      tdQuote,
      tpmQuote: tpmQuote(nonce, opts.pcrs),
      ...(opts.eventLog ? { eventLog: opts.eventLog } : {}),
    },
    akPrivate: ak!.privateKey,
    nonce,
  };
}
