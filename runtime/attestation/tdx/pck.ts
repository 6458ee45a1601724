// The PCK certificate chain carried in a quote: PEM splitting, and Intel's SGX extension
// (OID 1.2.840.113741.1.13.1) that names the platform (PPID, FMSPC, PCEID) and its TCB (SVNs).
import { EvidenceFormatError } from "../types.js";
import { pemDecode } from "../pem.js";
import { children, decodeOid, decodeUint, readTlv } from "./der.js";

const SGX_EXTENSION_OID = "1.2.840.113741.1.13.1";

export interface PckExtension {
  /**
   * PPID (hex, 16 bytes): the Platform Provisioning ID Intel registered the platform under — one per platform (a
   * single-package platform: its CPU), the same for every TCB level's PCK certificate. Optional in the parse
   * (Intel's PCK certificates carry it; a verifier that needs it refuses its absence by name).
   */
  ppid?: string;
  fmspc: string;
  pceId: string;
  pceSvn: number;
  cpuSvn: Uint8Array;
  /** SGX TCB component SVNs 1..16. */
  sgxTcbComponents: number[];
}

/** Splits PEM text into DER certificates, in order. */
export function pemCertificates(pem: string, field = "pck_cert_chain"): Uint8Array[] {
  return pemDecode(pem, "CERTIFICATE", field);
}

/** Finds an extension's extnValue contents in a certificate's DER. */
export function findExtension(certDer: Uint8Array, oid: string): Uint8Array | undefined {
  const cert = readTlv(certDer, 0, "certificate");
  const tbs = readTlv(cert.value, 0, "certificate.tbs");
  for (const t of children(tbs.value, "certificate.tbs")) {
    if (t.tag !== 0xa3) continue;
    const exts = readTlv(t.value, 0, "certificate.extensions");
    for (const ext of children(exts.value, "certificate.extensions")) {
      const parts = children(ext.value, "certificate.extension");
      if (parts.length < 2 || parts[0].tag !== 0x06) continue;
      if (decodeOid(parts[0].value) === oid) return parts[parts.length - 1].value;
    }
  }
  return undefined;
}

export function parsePckExtension(certDer: Uint8Array): PckExtension {
  const raw = findExtension(certDer, SGX_EXTENSION_OID);
  if (!raw)
    throw new EvidenceFormatError("pck certificate: no SGX extension (1.2.840.113741.1.13.1)", "pck.sgx_extension");
  const f = "pck.sgx_extension";
  const top = readTlv(raw, 0, f);
  const byOid = new Map<string, Uint8Array>();
  for (const item of children(top.value, f)) {
    const [id, val] = children(item.value, f);
    if (!id || !val || id.tag !== 0x06) throw new EvidenceFormatError(`${f}: malformed entry`, f);
    byOid.set(decodeOid(id.value), val.value);
  }
  const need = (suffix: string, name: string) => {
    const v = byOid.get(`${SGX_EXTENSION_OID}.${suffix}`);
    if (!v) throw new EvidenceFormatError(`${f}: missing ${name}`, `${f}.${name}`);
    return v;
  };
  const fmspc = need("4", "fmspc");
  const pceId = need("3", "pceid");
  if (fmspc.length !== 6) throw new EvidenceFormatError(`${f}.fmspc: ${fmspc.length} bytes, expected 6`, `${f}.fmspc`);
  if (pceId.length !== 2) throw new EvidenceFormatError(`${f}.pceid: ${pceId.length} bytes, expected 2`, `${f}.pceid`);
  const ppid = byOid.get(`${SGX_EXTENSION_OID}.1`);
  if (ppid && ppid.length !== 16)
    throw new EvidenceFormatError(`${f}.ppid: ${ppid.length} bytes, expected 16`, `${f}.ppid`);
  const tcbSeq = byOid.get(`${SGX_EXTENSION_OID}.2`);
  if (!tcbSeq) throw new EvidenceFormatError(`${f}: missing tcb`, `${f}.tcb`);
  const comps: number[] = new Array(16).fill(-1);
  let pceSvn = -1;
  let cpuSvn: Uint8Array | undefined;
  for (const item of children(tcbSeq, `${f}.tcb`)) {
    const [id, val] = children(item.value, `${f}.tcb`);
    if (!id || !val || id.tag !== 0x06) throw new EvidenceFormatError(`${f}.tcb: malformed entry`, `${f}.tcb`);
    const sub = decodeOid(id.value).slice(SGX_EXTENSION_OID.length + 3);
    const n = Number(sub);
    if (n >= 1 && n <= 16) comps[n - 1] = decodeUint(val.value, `${f}.tcb.comp${n}`);
    else if (n === 17) pceSvn = decodeUint(val.value, `${f}.tcb.pcesvn`);
    else if (n === 18) cpuSvn = val.value;
  }
  if (comps.includes(-1) || pceSvn < 0 || !cpuSvn || cpuSvn.length !== 16) {
    throw new EvidenceFormatError(
      `${f}.tcb: incomplete (16 component SVNs, PCESVN and a 16-byte CPUSVN are required)`,
      `${f}.tcb`,
    );
  }
  return {
    ...(ppid ? { ppid: Buffer.from(ppid).toString("hex") } : {}),
    fmspc: Buffer.from(fmspc).toString("hex"),
    pceId: Buffer.from(pceId).toString("hex"),
    pceSvn,
    cpuSvn,
    sgxTcbComponents: comps,
  };
}

/** The CN of a distinguished name as node prints it ("CN=...\nO=..."). */
export function commonName(dn: string): string {
  const m = /(?:^|\n)CN=([^\n]*)/.exec(dn);
  return m ? m[1] : "";
}
