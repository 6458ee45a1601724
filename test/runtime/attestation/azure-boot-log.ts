// A measured boot as an Azure confidential VM's UEFI (Hyper-V firmware behind the paravisor) logs it for a kit UKI
// under the customer's Secure Boot keys: firmware events Azure does not let us predict (PCR 0, 1, 5), the Secure
// Boot variables and the db entry that verified the UKI (PCR 7, EDK2's layout: images/vtpm/secure-boot.ts
// secureBootEvents), the UKI's Authenticode digest (PCR 4) and systemd-stub's section measurements (PCR 11). Returns
// the log, the (PCR, SHA-256) extends a TPM must see, and the 24 SHA-256 PCR values a fresh TPM then holds.
import { createHash } from "node:crypto";
import {
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  EV,
  encodeEvent2,
  encodeSpecIdHeader,
  encodeUefiVariableData,
} from "../../../runtime/attestation/tpm/index.js";
import { signatureData, x509SignatureList } from "../../../images/vtpm/secure-boot.js";

export const DB_OWNER = "77fa9abd-0359-4d32-bd60-28f4e78f784b"; // Microsoft's owner GUID, as Azure's db entries carry

export interface AzureBootSpec {
  /** SHA-256 Authenticode digest (hex) of the UKI the firmware starts. */
  uki: string;
  /** The db certificate (DER) enrolled in the image (listed in db). */
  dbCert: Buffer;
  /** The db certificate that verified the UKI (EV_EFI_VARIABLE_AUTHORITY); default dbCert. */
  authority?: Buffer;
  /** SecureBoot variable value; default 1 (on). */
  secureBoot?: number;
  /** Data systemd-stub measured into PCR 11 (each event's digest is the hash of the data). */
  pcr11?: Buffer[];
}

export interface AzureBoot {
  log: Buffer;
  extends: [number, Buffer][];
  /** PCR 0..23 (SHA-256) of a TPM that saw exactly `extends` after startup (17-22 at their reset value, all ones). */
  pcrs: Buffer[];
}

const sha = (h: "sha1" | "sha256", b: Buffer | string) => createHash(h).update(b).digest();

export function azureBootLog(s: AzureBootSpec): AzureBoot {
  const parts = [encodeSpecIdHeader(["sha1", "sha256"])];
  const ext: [number, Buffer][] = [];
  const add = (pcr: number, type: number, data: Buffer, content: Buffer | { sha256: Buffer; sha1: Buffer } = data) => {
    const d = Buffer.isBuffer(content) ? { sha1: sha("sha1", content), sha256: sha("sha256", content) } : content;
    parts.push(
      encodeEvent2(
        pcr,
        type,
        [
          ["sha1", d.sha1],
          ["sha256", d.sha256],
        ],
        data,
      ),
    );
    ext.push([pcr, d.sha256]);
  };
  const opaque = (label: string) => ({ sha1: sha("sha1", label), sha256: sha("sha256", label) });
  add(0, EV.S_CRTM_VERSION, Buffer.from("Hyper-V UEFI Release v4.1\0", "utf16le"));
  add(0, EV.EFI_PLATFORM_FIRMWARE_BLOB, Buffer.alloc(16), opaque("Hyper-V firmware volume"));
  const cfg = (guid: string, name: string, v: Buffer) =>
    add(7, EV.EFI_VARIABLE_DRIVER_CONFIG, encodeUefiVariableData(guid, name, v));
  cfg(EFI_GLOBAL_VARIABLE, "SecureBoot", Buffer.from([s.secureBoot ?? 1]));
  cfg(EFI_GLOBAL_VARIABLE, "PK", Buffer.from("Microsoft Hyper-V PK list"));
  cfg(EFI_GLOBAL_VARIABLE, "KEK", Buffer.from("Microsoft KEK list"));
  cfg(EFI_IMAGE_SECURITY_DATABASE, "db", x509SignatureList(s.dbCert, DB_OWNER));
  cfg(EFI_IMAGE_SECURITY_DATABASE, "dbx", Buffer.from("dbx list"));
  add(1, EV.EFI_VARIABLE_BOOT, Buffer.from("BootOrder"), opaque("boot order"));
  add(4, EV.EFI_ACTION, Buffer.from("Calling EFI Application from Boot Option"));
  for (let pcr = 0; pcr <= 7; pcr++) add(pcr, EV.SEPARATOR, Buffer.alloc(4));
  if ((s.secureBoot ?? 1) === 1)
    add(
      7,
      EV.EFI_VARIABLE_AUTHORITY,
      encodeUefiVariableData(EFI_IMAGE_SECURITY_DATABASE, "db", signatureData(s.authority ?? s.dbCert, DB_OWNER)),
    );
  add(4, EV.EFI_BOOT_SERVICES_APPLICATION, Buffer.alloc(32, 0xaa), {
    sha256: Buffer.from(s.uki, "hex"),
    sha1: sha("sha1", s.uki),
  });
  for (const m of s.pcr11 ?? []) add(11, EV.IPL, Buffer.from("systemd-stub section\0"), m);
  add(5, EV.EFI_ACTION, Buffer.from("Exit Boot Services Invocation"));
  add(5, EV.EFI_ACTION, Buffer.from("Exit Boot Services Returned with Success"));
  const pcrs = Array.from({ length: 24 }, (_, i) => Buffer.alloc(32, i >= 17 && i <= 22 ? 0xff : 0));
  for (const [i, d] of ext) pcrs[i] = sha("sha256", Buffer.concat([pcrs[i], d]));
  return { log: Buffer.concat(parts), extends: ext, pcrs };
}
