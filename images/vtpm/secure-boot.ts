// Secure Boot under the customer's own keys, predicted (PCR 7). UEFI firmware with Secure Boot measures, in PCR 7
// (TCG PC Client PFP §3.3.4.8, EDK2 Tcg2Dxe / DxeImageVerificationLib):
//   EV_EFI_VARIABLE_DRIVER_CONFIG  SecureBoot, PK, KEK, db, dbx — each UEFI_VARIABLE_DATA (GUID, name, value),
//                                  digest = H(the whole structure); an absent variable is measured with no value
//   EV_SEPARATOR                   00000000 (at ReadyToBoot, before the boot option is loaded)
//   EV_EFI_VARIABLE_AUTHORITY      once per distinct db entry that verified an image: UEFI_VARIABLE_DATA of db
//                                  with the matching EFI_SIGNATURE_DATA (owner GUID + the DER certificate)
// The policy registered is over events (boot-policy.ts secureBoot.authorities: the db certificate's SHA-256), so
// cloud firmware that adds its own events still passes; the exact PCR 7 value is predicted too for a firmware
// whose variables are known byte for byte (the boot test's OVMF vars).
import { createHash, X509Certificate } from "node:crypto";
import type { MeasuredBootPolicy } from "../../runtime/attestation/tpm/boot-policy.js";
import {
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  EV,
  encodeUefiVariableData,
} from "../../runtime/attestation/tpm/eventlog.js";
import { BootPredictionError } from "./errors.js";

export const EFI_CERT_X509_GUID = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072";

/** A GUID in the UEFI byte order (the first three fields little-endian). */
export function guidBytes(guid: string): Buffer {
  const g = guid.replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(g)) throw new BootPredictionError("guid", `'${guid}' is not a GUID`);
  const b = Buffer.alloc(16);
  b.writeUInt32LE(parseInt(g.slice(0, 8), 16), 0);
  b.writeUInt16LE(parseInt(g.slice(8, 12), 16), 4);
  b.writeUInt16LE(parseInt(g.slice(12, 16), 16), 6);
  Buffer.from(g.slice(16), "hex").copy(b, 8);
  return b;
}

/** A certificate as DER, from PEM or DER bytes; refuses anything that is not one X.509 certificate. */
export function certificateDer(cert: Buffer | string, field = "certificate"): Buffer {
  try {
    return Buffer.from(new X509Certificate(cert).raw);
  } catch (e) {
    throw new BootPredictionError(field, `not an X.509 certificate (${(e as Error).message})`);
  }
}

/** SHA-256 (hex) of a certificate's DER: what secureBoot.authorities lists. */
export const certificateSha256 = (cert: Buffer | string, field?: string) =>
  createHash("sha256").update(certificateDer(cert, field)).digest("hex");

/** EFI_SIGNATURE_DATA: SignatureOwner GUID + the DER certificate (what an authority event carries). */
export function signatureData(certDer: Buffer, owner: string): Buffer {
  return Buffer.concat([guidBytes(owner), certDer]);
}

/** An EFI_SIGNATURE_LIST of one X.509 certificate (EFI_CERT_X509_GUID, no header): a PK/KEK/db entry. */
export function x509SignatureList(certDer: Buffer, owner: string): Buffer {
  const data = signatureData(certDer, owner);
  const head = Buffer.alloc(28);
  guidBytes(EFI_CERT_X509_GUID).copy(head, 0);
  head.writeUInt32LE(28 + data.length, 16); // SignatureListSize
  head.writeUInt32LE(0, 20); // SignatureHeaderSize
  head.writeUInt32LE(data.length, 24); // SignatureSize
  return Buffer.concat([head, data]);
}

export interface SecureBootVariables {
  /** The variables' values as the firmware holds them (EFI_SIGNATURE_LISTs); an absent one as undefined. */
  PK?: Buffer;
  KEK?: Buffer;
  db?: Buffer;
  dbx?: Buffer;
}

/** The EV_EFI_VARIABLE_DRIVER_CONFIG / separator / authority events of PCR 7, as (type, data) pairs in order. */
export function secureBootEvents(
  vars: SecureBootVariables,
  authority: { certDer: Buffer; owner: string },
): { type: number; data: Buffer }[] {
  const cfg = (guid: string, name: string, value: Buffer | undefined) => ({
    type: EV.EFI_VARIABLE_DRIVER_CONFIG,
    data: encodeUefiVariableData(guid, name, value ?? Buffer.alloc(0)),
  });
  return [
    cfg(EFI_GLOBAL_VARIABLE, "SecureBoot", Buffer.from([1])),
    cfg(EFI_GLOBAL_VARIABLE, "PK", vars.PK),
    cfg(EFI_GLOBAL_VARIABLE, "KEK", vars.KEK),
    cfg(EFI_IMAGE_SECURITY_DATABASE, "db", vars.db),
    cfg(EFI_IMAGE_SECURITY_DATABASE, "dbx", vars.dbx),
    { type: EV.SEPARATOR, data: Buffer.alloc(4) },
    {
      type: EV.EFI_VARIABLE_AUTHORITY,
      data: encodeUefiVariableData(
        EFI_IMAGE_SECURITY_DATABASE,
        "db",
        signatureData(authority.certDer, authority.owner),
      ),
    },
  ];
}

/** PCR 7 after a Secure Boot firmware with these variables verified the boot application by `authority`. */
export function predictSecureBootPcr7(
  vars: SecureBootVariables,
  authority: { certDer: Buffer; owner: string },
  bank: "sha1" | "sha256" | "sha384" | "sha512" = "sha256",
): Buffer {
  let pcr = Buffer.alloc(createHash(bank).digest().length);
  for (const e of secureBootEvents(vars, authority))
    pcr = createHash(bank).update(pcr).update(createHash(bank).update(e.data).digest()).digest();
  return pcr;
}

/**
 * The secureBoot section of a measured-boot policy: Secure Boot on and the boot verified by one of these db
 * certificates (PEM or DER); with `vars`, the digests of the key databases as enrolled are required too.
 */
export function secureBootPolicy(
  dbCertificates: (Buffer | string)[],
  bank: "sha256" | "sha384" = "sha256",
  vars?: SecureBootVariables,
): NonNullable<MeasuredBootPolicy["secureBoot"]> {
  if (dbCertificates.length === 0)
    throw new BootPredictionError("secureBoot.dbCertificates", "at least the certificate the UKI is signed with");
  const out: NonNullable<MeasuredBootPolicy["secureBoot"]> = {
    enabled: true,
    authorities: [...new Set(dbCertificates.map((c, i) => certificateSha256(c, `secureBoot.dbCertificates[${i}]`)))],
  };
  for (const k of ["PK", "KEK", "db", "dbx"] as const)
    if (vars?.[k]) out[k] = createHash(bank).update(vars[k]).digest("hex");
  return out;
}
