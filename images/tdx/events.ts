// Event digests that OVMF (edk2) extends into the RTMRs, and the register extend itself:
// RTMR_new = SHA384(RTMR_old || digest), starting from 48 zero bytes. Event contents follow
// ../shared/docs/reference/tdx-measurement.md §3 (UEFI 2.10 §38.4.1 PCR→RTMR mapping).
import { createHash } from "node:crypto";
import { guidBytesLe } from "../snp/guid.js";

export const DIGEST_BYTES = 48;

export function sha384(...parts: Uint8Array[]): Buffer {
  const h = createHash("sha384");
  for (const p of parts) h.update(p);
  return h.digest();
}

export interface MeasuredEvent {
  /** What was measured, e.g. "EV_SEPARATOR", "TD HOB", "kernel (Authenticode)". */
  event: string;
  digest: Buffer;
}

/** Replays a list of events into a register value. */
export function replay(events: readonly MeasuredEvent[]): Buffer {
  let rtmr: Buffer = Buffer.alloc(DIGEST_BYTES);
  for (const e of events) rtmr = sha384(rtmr, e.digest);
  return rtmr;
}

export const EFI_GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
export const EFI_IMAGE_SECURITY_DATABASE = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";

/** UEFI_VARIABLE_DATA = GUID | u64 name length (UTF-16 units) | u64 data length | UTF-16LE name | data. */
export function efiVariableEvent(vendorGuid: string, name: string, data: Uint8Array = new Uint8Array()): MeasuredEvent {
  const lens = Buffer.alloc(16);
  lens.writeBigUInt64LE(BigInt(name.length), 0);
  lens.writeBigUInt64LE(BigInt(data.length), 8);
  return {
    event: `EV_EFI_VARIABLE_DRIVER_CONFIG ${name}`,
    digest: sha384(guidBytesLe(vendorGuid), lens, Buffer.from(name, "utf16le"), data),
  };
}

/** The five secure-boot variables OVMF measures, as unprovisioned (absent) variables. */
export function secureBootVariableEvents(): MeasuredEvent[] {
  return [
    efiVariableEvent(EFI_GLOBAL_VARIABLE, "SecureBoot"),
    efiVariableEvent(EFI_GLOBAL_VARIABLE, "PK"),
    efiVariableEvent(EFI_GLOBAL_VARIABLE, "KEK"),
    efiVariableEvent(EFI_IMAGE_SECURITY_DATABASE, "db"),
    efiVariableEvent(EFI_IMAGE_SECURITY_DATABASE, "dbx"),
  ];
}

export function separatorEvent(): MeasuredEvent {
  return { event: "EV_SEPARATOR", digest: sha384(Buffer.alloc(4)) };
}

export function efiActionEvent(action: string): MeasuredEvent {
  return { event: `EV_EFI_ACTION "${action}"`, digest: sha384(Buffer.from(action, "latin1")) };
}

export const EFI_ACTIONS = {
  callingBootOption: "Calling EFI Application from Boot Option",
  exitBootServices: "Exit Boot Services Invocation",
  exitBootServicesOk: "Exit Boot Services Returned with Success",
} as const;

/** BootOrder = [0x0000] (raw variable data, 2 bytes). */
export function bootOrderEvent(): MeasuredEvent {
  return { event: "EV_EFI_VARIABLE_BOOT BootOrder", digest: sha384(Buffer.alloc(2)) };
}

// OVMF's Boot0000 "UiApp": EFI_LOAD_OPTION with a firmware-volume file device path.
const OVMF_FV_NAME = "7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1";
const OVMF_UIAPP_FILE = "462caa21-7614-4503-836e-8ab6f4662331";

export function uiAppBootOptionEvent(): MeasuredEvent {
  const fvNode = Buffer.concat([Buffer.from([0x04, 0x07, 20, 0]), guidBytesLe(OVMF_FV_NAME)]); // MEDIA / PIWG FV
  const fileNode = Buffer.concat([Buffer.from([0x04, 0x06, 20, 0]), guidBytesLe(OVMF_UIAPP_FILE)]); // MEDIA / PIWG FV file
  const end = Buffer.from([0x7f, 0xff, 0x04, 0x00]);
  const paths = Buffer.concat([fvNode, fileNode, end]);
  const head = Buffer.alloc(6);
  head.writeUInt32LE(0x109, 0); // ACTIVE | HIDDEN | CATEGORY_APP
  head.writeUInt16LE(paths.length, 4);
  return {
    event: "EV_EFI_VARIABLE_BOOT Boot0000 (UiApp)",
    digest: sha384(head, Buffer.from("UiApp\0", "utf16le"), paths),
  };
}

/** The kernel command line as OVMF measures it: UTF-16LE with a terminating NUL. */
export function cmdlineEvent(cmdline: string): MeasuredEvent {
  return { event: "kernel command line", digest: sha384(Buffer.from(cmdline + "\0", "utf16le")) };
}
