// A vTPM provisioned the way GCE provisions a Shielded VM's: Google's AK template in NV 0x01c10003 (ECC) /
// 0x01c10001 (RSA) and the AK certificate (from a simulated Google EK/AK CA) in NV 0x01c10002 / 0x01c10000. The
// certified key is made by a hand-encoded TPM2_CreatePrimary sent with tpm2_send — independent of the agent's
// tpm2_createprimary options — so an agent creating the same key proves it reproduces the template exactly.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import type { KeyObject } from "node:crypto";
import { parseTpmPublic } from "../../runtime/attestation/tpm/abi.js";

/** A TPM driven through tpm2-tools: a SwTpm (swtpm.ts), or an instance's vTPM state before its boot (tpmTools). */
export interface TpmTool {
  tcti: string;
  tool(argv: string[]): SpawnSyncReturns<Buffer>;
}

/** tpm2-tools against `tcti` (e.g. cloud-disk-guest.ts withInstanceTpm's). */
export function tpmTools(tcti: string): TpmTool {
  return {
    tcti,
    tool: (argv) => spawnSync(argv[0], argv.slice(1), { env: { ...process.env, TPM2TOOLS_TCTI: tcti } }),
  };
}

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const t2b = (b: Uint8Array) => Buffer.concat([u16(b.length), b]);
// restricted | sign | fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth: a GCE AK's attributes.
const AK_ATTRS = 0x00050072;

/** A GCE-style ECC P-256 AK template (TPMT_PUBLIC) with a non-empty unique field, as Google's carry one. */
export function eccTemplate(): Buffer {
  return Buffer.concat([
    u16(0x0023),
    u16(0x000b),
    u32(AK_ATTRS),
    t2b(Buffer.alloc(0)),
    u16(0x0010), // symmetric NULL
    u16(0x0018), // ECDSA
    u16(0x000b), // SHA-256
    u16(0x0003), // NIST P-256
    u16(0x0010), // kdf NULL
    t2b(Buffer.alloc(32, 0x5a)),
    t2b(Buffer.alloc(32, 0xa5)),
  ]);
}

/** A GCE-style RSA 2048 AK template (RSASSA-SHA256, default exponent, a 256-byte unique). */
export function rsaTemplate(): Buffer {
  return Buffer.concat([
    u16(0x0001),
    u16(0x000b),
    u32(AK_ATTRS),
    t2b(Buffer.alloc(0)),
    u16(0x0010),
    u16(0x0014), // RSASSA
    u16(0x000b),
    u16(2048),
    u32(0),
    t2b(Buffer.alloc(256, 0x33)),
  ]);
}

/** TPM2_CreatePrimary(TPM_RH_ENDORSEMENT, template), hand-encoded and sent raw: the reference for the AK. */
export function referencePrimary(tpm: TpmTool, template: Buffer): Buffer {
  const pwSession = Buffer.concat([u32(0x40000009), u16(0), Buffer.from([0]), u16(0)]);
  const params = Buffer.concat([
    t2b(Buffer.concat([t2b(Buffer.alloc(0)), t2b(Buffer.alloc(0))])), // inSensitive
    t2b(template), // inPublic
    t2b(Buffer.alloc(0)), // outsideInfo
    u32(0), // creationPCR
  ]);
  const body = Buffer.concat([u32(0x4000000b), u32(pwSession.length), pwSession, params]);
  const cmd = Buffer.concat([u16(0x8002), u32(10 + body.length), u32(0x00000131), body]);
  const r = spawnSync("tpm2_send", [], { input: cmd, env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti } });
  const resp = r.stdout;
  if (r.status !== 0 || resp.readUInt32BE(6) !== 0)
    throw new Error(
      `CreatePrimary failed: ${r.stderr.toString()} rc=${resp.length >= 10 ? resp.readUInt32BE(6) : "?"}`,
    );
  const len = resp.readUInt16BE(18); // header 10, handle 4, parameterSize 4, then TPM2B_PUBLIC outPublic
  const outPublic = resp.subarray(18, 20 + len);
  tpm.tool(["tpm2_flushcontext", "-t"]);
  return Buffer.from(outPublic);
}

export function nvWrite(tpm: TpmTool, index: number, data: Buffer, size = data.length): void {
  const hex = `0x${index.toString(16)}`;
  const d = tpm.tool([
    "tpm2_nvdefine",
    hex,
    "-C",
    "o",
    "-s",
    String(size),
    "-a",
    "ownerread|ownerwrite|authread|authwrite",
  ]);
  if (d.status !== 0) throw new Error(`nvdefine ${hex}: ${d.stderr.toString()}`);
  const w = spawnSync("tpm2_nvwrite", [hex, "-C", "o", "-i", "-"], {
    input: data,
    env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti },
  });
  if (w.status !== 0) throw new Error(`nvwrite ${hex}: ${w.stderr.toString()}`);
}

/**
 * Provisions `tpm` as a GCE vTPM with an ECC AK: Google's template in NV 0x01c10003 and the certificate `issue`
 * makes for the key that template yields in NV 0x01c10002. Returns the AK's TPM2B_PUBLIC.
 */
export async function provisionGoogleEccAk(
  tpm: TpmTool,
  issue: (ak: KeyObject) => Promise<Uint8Array>,
): Promise<Buffer> {
  const template = eccTemplate();
  const akPublic = referencePrimary(tpm, template);
  const cert = Buffer.from(await issue(parseTpmPublic(akPublic).key));
  nvWrite(tpm, 0x01c10003, template);
  nvWrite(tpm, 0x01c10002, cert, cert.length + 16);
  return akPublic;
}
