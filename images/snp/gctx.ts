// The SNP launch digest chain (the PSP's guest context): for every page given to SNP_LAUNCH_UPDATE,
// LD = SHA-384(PAGE_INFO), PAGE_INFO = LD | contents digest | u16 0x70 | page type | imi | vmpl perms | GPA.
// (SEV-SNP ABI spec, "PAGE_INFO"; all VMPL permissions and IMI are zero in every launch flow here.)
import { hash } from "node:crypto";
import { PAGE_SIZE } from "./ovmf.js";

export const LD_SIZE = 48;

export const PageType = {
  NORMAL: 1,
  VMSA: 2,
  ZERO: 3,
  UNMEASURED: 4,
  SECRETS: 5,
  CPUID: 6,
} as const;

/** VMSA pages are recorded at GPA (u64)-1, page aligned, bits above 47 cleared (KVM's INITIAL_VMSA_GPA). */
export const VMSA_GPA = 0xffff_ffff_f000;

const ZERO_DIGEST = Buffer.alloc(LD_SIZE);

export function sha384(data: Uint8Array): Buffer {
  return hash("sha384", data, "buffer");
}

export class LaunchDigest {
  // PAGE_INFO is rebuilt in place: bytes 0..47 hold the running digest.
  private readonly info = Buffer.alloc(0x70);

  constructor(seed?: Uint8Array) {
    if (seed) {
      if (seed.length !== LD_SIZE) throw new RangeError(`launch digest seed must be ${LD_SIZE} bytes`);
      this.info.set(seed, 0);
    }
    this.info.writeUInt16LE(0x70, 0x60);
  }

  /** The current digest (a copy). */
  digest(): Buffer {
    return Buffer.from(this.info.subarray(0, LD_SIZE));
  }

  clone(): LaunchDigest {
    return new LaunchDigest(this.info.subarray(0, LD_SIZE));
  }

  update(pageType: number, gpa: number, contents: Uint8Array): void {
    const info = this.info;
    info.set(contents, LD_SIZE);
    info[0x62] = pageType;
    writeU64(info, 0x68, gpa);
    info.set(sha384(info), 0);
  }

  normalPages(gpa: number, data: Uint8Array): void {
    if (data.length % PAGE_SIZE !== 0) throw new RangeError("NORMAL data must be whole 4 KiB pages");
    for (let off = 0; off < data.length; off += PAGE_SIZE) {
      this.update(PageType.NORMAL, gpa + off, sha384(data.subarray(off, off + PAGE_SIZE)));
    }
  }

  /** ZERO or UNMEASURED pages: no contents digest. */
  emptyPages(pageType: number, gpa: number, length: number): void {
    if (length % PAGE_SIZE !== 0) throw new RangeError("page range must be whole 4 KiB pages");
    for (let off = 0; off < length; off += PAGE_SIZE) this.update(pageType, gpa + off, ZERO_DIGEST);
  }

  secretsPage(gpa: number): void {
    this.update(PageType.SECRETS, gpa, ZERO_DIGEST);
  }

  cpuidPage(gpa: number): void {
    this.update(PageType.CPUID, gpa, ZERO_DIGEST);
  }

  /** A VMSA page by the SHA-384 of its 4 KiB contents (hash it once, reuse it for every AP). */
  vmsaPage(vmsaDigest: Uint8Array, gpa = VMSA_GPA): void {
    this.update(PageType.VMSA, gpa, vmsaDigest);
  }
}

// GPAs exceed 2^32 but stay far below 2^53, so plain numbers are exact.
function writeU64(buf: Buffer, off: number, v: number): void {
  buf.writeUInt32LE(v % 0x1_0000_0000, off);
  buf.writeUInt32LE(Math.floor(v / 0x1_0000_0000), off + 4);
}
