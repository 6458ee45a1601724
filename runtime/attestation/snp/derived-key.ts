// SEV-SNP MSG_KEY_REQ (SNP firmware ABI, "Key Request Message"), the request a guest sends to the
// security processor through /dev/sev-guest SNP_GET_DERIVED_KEY to obtain a 32-byte key derived from a
// chip secret (the VCEK root, or the VM root key VMRK) mixed with the guest fields it selects. Only
// the 32-byte request layout; the transport (ioctl or the simulator) is elsewhere.
import { encodeTcb, type SnpProduct, type TcbVersion } from "./abi.js";

export const KEY_REQUEST_SIZE = 32;

/** GUEST_FIELD_SELECT bits: which launch fields the PSP mixes into the derived key. */
export const FIELD = {
  policy: 1n << 0n,
  imageId: 1n << 1n,
  familyId: 1n << 2n,
  measurement: 1n << 3n,
  guestSvn: 1n << 4n,
  tcbVersion: 1n << 5n,
} as const;
export type DerivedKeyField = keyof typeof FIELD;

export interface DerivedKeyRequest {
  /** ROOT_KEY_SELECT: "vcek" = the chip's VCEK root (chip- and TCB-bound); "vmrk" = the VM root key (migration agent). */
  rootKey: "vcek" | "vmrk";
  /** Guest fields mixed in (GUEST_FIELD_SELECT). */
  fields: DerivedKeyField[];
  vmpl: number;
  /** GUEST_SVN to mix (must not exceed the guest's own SVN). */
  guestSvn: number;
  /** TCB_VERSION to mix (must not exceed the platform's committed TCB). */
  tcb?: TcbVersion;
}

export class DerivedKeyRequestError extends RangeError {
  override name = "DerivedKeyRequestError";
}

export function encodeKeyRequest(r: DerivedKeyRequest, product: SnpProduct): Uint8Array {
  if (r.rootKey !== "vcek" && r.rootKey !== "vmrk")
    throw new DerivedKeyRequestError(`rootKey: must be "vcek" or "vmrk", got ${JSON.stringify(r.rootKey)}`);
  if (!Number.isInteger(r.vmpl) || r.vmpl < 0 || r.vmpl > 3)
    throw new DerivedKeyRequestError(`vmpl: must be an integer 0..3, got ${r.vmpl}`);
  if (!Number.isInteger(r.guestSvn) || r.guestSvn < 0 || r.guestSvn > 0xffffffff)
    throw new DerivedKeyRequestError(`guestSvn: must be a u32, got ${r.guestSvn}`);
  let select = 0n;
  for (const f of r.fields) {
    if (!(f in FIELD))
      throw new DerivedKeyRequestError(
        `fields: unknown field ${JSON.stringify(f)} (allowed: ${Object.keys(FIELD).join(", ")})`,
      );
    select |= FIELD[f];
  }
  const b = Buffer.alloc(KEY_REQUEST_SIZE);
  b.writeUInt32LE(r.rootKey === "vmrk" ? 1 : 0, 0x00);
  b.writeBigUInt64LE(select, 0x08);
  b.writeUInt32LE(r.vmpl, 0x10);
  b.writeUInt32LE(r.guestSvn, 0x14);
  if (r.tcb) Buffer.from(encodeTcb(r.tcb, product)).copy(b, 0x18);
  return new Uint8Array(b);
}

export interface DecodedKeyRequest {
  rootKey: "vcek" | "vmrk";
  fieldSelect: bigint;
  vmpl: number;
  guestSvn: number;
  tcb: Uint8Array;
}

export function decodeKeyRequest(bytes: Uint8Array): DecodedKeyRequest {
  if (bytes.length !== KEY_REQUEST_SIZE)
    throw new DerivedKeyRequestError(`key request: expected ${KEY_REQUEST_SIZE} bytes, got ${bytes.length}`);
  const b = Buffer.from(bytes);
  const sel = b.readUInt32LE(0);
  if (sel & ~1) throw new DerivedKeyRequestError("key request: reserved ROOT_KEY_SELECT bits are set");
  if (b.readUInt32LE(4) !== 0) throw new DerivedKeyRequestError("key request: reserved bytes 0x04..0x07 are not zero");
  const fieldSelect = b.readBigUInt64LE(8);
  if (fieldSelect >> 6n) throw new DerivedKeyRequestError("key request: unsupported GUEST_FIELD_SELECT bits are set");
  return {
    rootKey: sel & 1 ? "vmrk" : "vcek",
    fieldSelect,
    vmpl: b.readUInt32LE(0x10),
    guestSvn: b.readUInt32LE(0x14),
    tcb: new Uint8Array(b.subarray(0x18, 0x20)),
  };
}

/**
 * The binding the runtime's auto-unseal uses: the VCEK root (this chip, at this TCB) mixed with the
 * launch MEASUREMENT and the guest POLICY. Measurement: a changed image/kernel/cmdline derives another
 * key, so a tampered image cannot unseal. Policy: a relaxed policy (debug on, migration agent allowed)
 * is a different key, so the host cannot relaunch the same image debuggable and read the key. VCEK root:
 * a copied disk on another chip derives another key. Image/family ids and guest SVN are not mixed: the
 * kit does not sign ID blocks today, so they add nothing an attacker cannot choose. TCB version is not
 * selected, so a firmware update alone is not meant to lock the data away; whatever the hardware does
 * across updates, a chip replacement or an image change needs the Shamir recovery shares.
 */
export const AUTO_UNSEAL_KEY_REQUEST: DerivedKeyRequest = {
  rootKey: "vcek",
  fields: ["measurement", "policy"],
  vmpl: 0,
  guestSvn: 0,
};
