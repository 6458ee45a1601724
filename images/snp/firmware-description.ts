// Firmware known only by its facts, not its bytes: the JSON "MetadataWrapper" of
// virtee/sev-snp-measure-go (`OVMFHash`, `ResetEIP`, `MetadataItems[{GPA, Size, SectionTypeInt}]`),
// which clouds and verifiers (Constellation, cocos) publish instead of the binary.
// One optional extension, `SevHashTableGPA`, carries the kernel-hashes table address so measured
// direct boot works from a description too; the Go reader ignores unknown keys.
import { MeasurementInputError } from "./errors.js";
import { validateSections, type OvmfImage, type SevMetadataSection } from "./ovmf.js";

export interface FirmwareDescription {
  /** SNP OVMF hash: the launch digest after the firmware's NORMAL pages (the chain seed). */
  ovmfHash?: Buffer;
  resetEip: number;
  sections: SevMetadataSection[];
  /** GPA of the kernel-hashes table (SEV_HASH_TABLE_RV), only needed with a kernel. */
  hashTableGpa?: number;
}

/** Parses the JSON text (or an already parsed value) of a firmware description. */
export function parseFirmwareDescription(input: string | unknown, field = "firmware"): FirmwareDescription {
  let doc: unknown = input;
  if (typeof input === "string") {
    try {
      doc = JSON.parse(input);
    } catch (e) {
      throw new MeasurementInputError(field, `not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isObject(doc)) throw new MeasurementInputError(field, "expected a JSON object with MetadataItems and ResetEIP");
  const items = doc.MetadataItems;
  if (!Array.isArray(items)) throw new MeasurementInputError(`${field}.MetadataItems`, "missing or not an array");
  const sections = items.map((it, i): SevMetadataSection => {
    const f = `${field}.MetadataItems[${i}]`;
    if (!isObject(it)) throw new MeasurementInputError(f, "expected an object with GPA, Size and SectionTypeInt");
    return {
      gpa: u32(it.GPA, `${f}.GPA`),
      size: u32(it.Size, `${f}.Size`),
      type: u32(it.SectionTypeInt, `${f}.SectionTypeInt`),
    };
  });
  if (sections.length === 0)
    throw new MeasurementInputError(
      `${field}.MetadataItems`,
      "is empty: SEV-SNP firmware always has SEV metadata sections",
    );
  validateSections(sections, field);
  const desc: FirmwareDescription = { resetEip: u32(doc.ResetEIP, `${field}.ResetEIP`), sections };
  if (doc.OVMFHash !== undefined && doc.OVMFHash !== null && doc.OVMFHash !== "")
    desc.ovmfHash = hashHex(doc.OVMFHash, `${field}.OVMFHash`);
  if (doc.SevHashTableGPA !== undefined) {
    const gpa = u32(doc.SevHashTableGPA, `${field}.SevHashTableGPA`);
    if (gpa !== 0) desc.hashTableGpa = gpa;
  }
  return desc;
}

/** The description of a parsed image, in the sev-snp-measure-go JSON shape (plus SevHashTableGPA when present). */
export function firmwareDescriptionJson(desc: FirmwareDescription): Record<string, unknown> {
  const hex = (n: number) => `0x${n.toString(16)}`;
  const out: Record<string, unknown> = {
    MetadataItems: desc.sections.map((s) => ({ GPA: hex(s.gpa), Size: hex(s.size), SectionTypeInt: s.type })),
    ResetEIP: hex(desc.resetEip),
  };
  if (desc.ovmfHash) out.OVMFHash = desc.ovmfHash.toString("hex");
  if (desc.hashTableGpa !== undefined) out.SevHashTableGPA = hex(desc.hashTableGpa);
  return out;
}

/** Extracts the measurement-relevant facts of an SNP-capable image. */
export function describeOvmf(img: OvmfImage, ovmfHash?: Buffer, field = "ovmf"): FirmwareDescription {
  if (!img.sevMetadata)
    throw new MeasurementInputError(
      field,
      "firmware has no SEV metadata (OVMF_SEV_METADATA); it cannot launch an SEV-SNP guest",
    );
  if (img.resetEip === null)
    throw new MeasurementInputError(field, "firmware has no SEV-ES reset block (SEV_ES_RESET_BLOCK)");
  const d: FirmwareDescription = { resetEip: img.resetEip, sections: img.sevMetadata };
  if (ovmfHash) d.ovmfHash = ovmfHash;
  if (img.hashTableGpa !== null) d.hashTableGpa = img.hashTableGpa;
  return d;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// Go writes these as "0x…" strings; plain JSON integers are accepted too.
function u32(v: unknown, field: string): number {
  let n: number;
  if (typeof v === "number") n = v;
  else if (typeof v === "string" && /^0[xX][0-9a-fA-F]{1,8}$/.test(v)) n = parseInt(v.slice(2), 16);
  else
    throw new MeasurementInputError(
      field,
      `expected a 0x-prefixed hex string or an integer, got ${JSON.stringify(v)?.slice(0, 40)}`,
    );
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff)
    throw new MeasurementInputError(field, `${n} is not a 32-bit unsigned integer`);
  return n;
}

export function hashHex(v: unknown, field: string): Buffer {
  if (typeof v !== "string") throw new MeasurementInputError(field, "expected a hex string");
  const hex = v.startsWith("0x") || v.startsWith("0X") ? v.slice(2) : v;
  if (!/^[0-9a-fA-F]{96}$/.test(hex))
    throw new MeasurementInputError(field, `expected 48 bytes (96 hex digits), got ${JSON.stringify(v.slice(0, 100))}`);
  return Buffer.from(hex, "hex");
}
