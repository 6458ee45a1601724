// SEV-SNP launch digest (the report's MEASUREMENT): firmware pages, SEV metadata sections, then one
// VMSA per vCPU, all through the PAGE_INFO chain. Pure functions over bytes; no I/O.
import { MeasurementInputError } from "./errors.js";
import { describeOvmf, type FirmwareDescription } from "./firmware-description.js";
import { LaunchDigest, PageType, VMSA_GPA, sha384 } from "./gctx.js";
import { PAGE_SIZE, SectionType, parseOvmf, svsmEntryEip, validateSections, type OvmfImage } from "./ovmf.js";
import { PADDED_TABLE_SIZE, sevHashesTable } from "./sev-hashes.js";
import { resolveVcpuSignature, type VcpuSpec } from "./vcpu.js";
import { BSP_EIP, VMM_TYPES, buildSvsmVmsa, buildVmsa, vmsaVcpuSignature, type VmmType } from "./vmsa.js";

/**
 * Upper bound on vCPUs at launch: KVM_MAX_VCPUS on x86 (4096 with CONFIG_MAXSMP); QEMU's q35 and every
 * cloud shape sold with SEV-SNP stay below it.
 */
export const MAX_VCPUS = 4096;

export interface SnpMeasureInput {
  /** Firmware binary (e.g. OVMF.fd, loaded with -bios) or an image from parseOvmf. */
  ovmf?: Uint8Array | OvmfImage;
  /** Firmware known only by its facts (sev-snp-measure-go JSON), instead of `ovmf`. */
  firmware?: FirmwareDescription;
  /** Precomputed OVMF hash (48 bytes): seeds the chain instead of hashing the firmware's pages. */
  ovmfHash?: Uint8Array;
  vcpus: number;
  /** Needed for vmm "qemu" (RDX = CPUID(1).EAX): a QEMU model name, a signature, or family/model/stepping. */
  vcpu?: VcpuSpec;
  /** Default "qemu". */
  vmm?: VmmType;
  /** VMSA SEV_FEATURES; default 0x1 (SNPActive; Linux >= 6.8 hosts). */
  guestFeatures?: bigint | number;
  /** Measured direct boot (QEMU `kernel-hashes=on`): the file given to -kernel. */
  kernel?: Uint8Array;
  initrd?: Uint8Array;
  append?: string;
  /** Coconut SVSM image loaded in front of OVMF (QEMU only). */
  svsm?: Uint8Array | OvmfImage;
  /** Size of the OVMF vars store placed between the SVSM image and OVMF (bytes). */
  varsSize?: number;
  /**
   * GPA recorded for VMSA pages; default 0xFFFFFFFFF000 (KVM, EC2, and every reference tool).
   * google/gce-tcb-verifier derives it from the product's physical address width instead
   * (Genoa, 52 bits: 0xFFFFFFFFFF000); unverified on GCE Genoa hardware.
   */
  vmsaGpa?: number;
}

/** The SNP launch digest for `input.vcpus` vCPUs. */
export function snpLaunchDigest(input: SnpMeasureInput): Buffer {
  const plan = prepare(input, [input.vcpus]);
  return plan.digests([input.vcpus]).get(input.vcpus)!;
}

/**
 * Digests for several vCPU counts at once: the chain is built once up to the BSP VMSA and then
 * extended one AP at a time, recording the digest at each requested count.
 */
export function snpLaunchDigestTable(
  input: Omit<SnpMeasureInput, "vcpus"> & { vcpus?: number },
  vcpuCounts: readonly number[],
): Map<number, Buffer> {
  if (vcpuCounts.length === 0) throw new MeasurementInputError("vcpus", "no vCPU counts given");
  const plan = prepare({ ...input, vcpus: Math.max(...vcpuCounts) }, vcpuCounts);
  return plan.digests(vcpuCounts);
}

/** The firmware's NORMAL-page part of the chain (sev-snp-measure `snp:ovmf-hash`), reusable as a seed. */
export function snpOvmfHash(ovmf: Uint8Array | OvmfImage): Buffer {
  const img = asImage(ovmf, "ovmf");
  if (!img.sevMetadata) throw noSevMetadata("ovmf");
  return firmwarePagesDigest(img);
}

// Hashing 2 MiB of firmware dominates a digest; callers that reuse one parsed image (a component
// computing several instance shapes) pay for it once. Keyed by the parsed image, which is treated as
// immutable; raw buffers are parsed afresh on every call and never hit the cache.
const ovmfHashCache = new WeakMap<OvmfImage, Buffer>();
function firmwarePagesDigest(img: OvmfImage): Buffer {
  let h = ovmfHashCache.get(img);
  if (!h) {
    const ld = new LaunchDigest();
    ld.normalPages(img.gpa, img.data);
    h = ld.digest();
    ovmfHashCache.set(img, h);
  }
  return Buffer.from(h);
}

export function checkVcpuCount(n: number, field = "vcpus"): void {
  if (!Number.isInteger(n) || n < 1)
    throw new MeasurementInputError(field, `${n} is not a vCPU count (must be an integer >= 1)`);
  if (n > MAX_VCPUS) throw new MeasurementInputError(field, `${n} exceeds the platform maximum of ${MAX_VCPUS} vCPUs`);
}

export function guestFeaturesValue(v: bigint | number | undefined, field = "guestFeatures"): bigint {
  if (v === undefined) return 1n;
  if (typeof v === "number" && !Number.isSafeInteger(v))
    throw new MeasurementInputError(field, `${v} is not an integer`);
  const b = BigInt(v);
  if (b < 0n || b > 0xffff_ffff_ffff_ffffn) throw new MeasurementInputError(field, "must fit in 64 bits");
  return b;
}

function asImage(v: Uint8Array | OvmfImage, field: string, endAt?: number): OvmfImage {
  if (v instanceof Uint8Array) {
    const buf = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    return parseOvmf(buf, { field, endAt });
  }
  return v;
}

function noSevMetadata(field: string): MeasurementInputError {
  return new MeasurementInputError(
    field,
    "firmware has no SEV metadata (no OVMF_SEV_METADATA footer entry); it cannot launch an SEV-SNP guest (e.g. Debian's OVMF_CODE_4M.fd — use an SNP-capable build such as OVMF.fd or AmdSevX64)",
  );
}

interface Plan {
  digests(counts: readonly number[]): Map<number, Buffer>;
}

function prepare(input: SnpMeasureInput, counts: readonly number[]): Plan {
  for (const n of counts) checkVcpuCount(n);
  const gpa = vmsaGpa(input);
  const vmm = input.vmm ?? "qemu";
  if (!VMM_TYPES.includes(vmm))
    throw new MeasurementInputError("vmm", `unknown VMM type '${String(vmm)}'; valid types: ${VMM_TYPES.join(", ")}`);
  const features = guestFeaturesValue(input.guestFeatures);
  if ((features & 1n) === 0n)
    throw new MeasurementInputError("guestFeatures", "bit 0 (SNPActive) must be set in an SEV-SNP guest's VMSA");
  if (input.kernel === undefined) {
    if (input.initrd !== undefined)
      throw new MeasurementInputError("initrd", "an initrd is only measured together with a kernel");
    if (input.append !== undefined)
      throw new MeasurementInputError("append", "a command line is only measured together with a kernel");
  }
  if (input.svsm !== undefined) return prepareSvsm(input, vmm, features, gpa);
  if (input.varsSize !== undefined) throw new MeasurementInputError("varsSize", "only meaningful with an SVSM image");

  const vcpuSig = vmsaVcpuSignature(vmm, input.vcpu);

  const { desc, ld } = firmwareStart(input);
  const hashes =
    input.kernel !== undefined
      ? sevHashesTable({ kernel: input.kernel, initrd: input.initrd, append: input.append })
      : null;
  measureSections(ld, desc, hashes, vmm, input.firmware ? "firmware" : "ovmf");

  const bsp = sha384(buildVmsa({ eip: BSP_EIP, vmm, vcpuSig, sevFeatures: features }));
  const ap = sha384(buildVmsa({ eip: desc.resetEip, vmm, vcpuSig, sevFeatures: features }));
  return { digests: (c) => extendPerVcpu(ld, bsp, ap, c, gpa) };
}

function vmsaGpa(input: SnpMeasureInput): number {
  const g = input.vmsaGpa ?? VMSA_GPA;
  if (!Number.isSafeInteger(g) || g < 0 || g % PAGE_SIZE !== 0 || g >= 2 ** 52)
    throw new MeasurementInputError("vmsaGpa", "must be a 4 KiB aligned guest-physical address below 2^52");
  return g;
}

function firmwareStart(input: SnpMeasureInput): { desc: FirmwareDescription; ld: LaunchDigest } {
  if ((input.ovmf === undefined) === (input.firmware === undefined)) {
    throw new MeasurementInputError(
      "ovmf",
      "give exactly one of a firmware binary (ovmf) or a firmware description (firmware)",
    );
  }
  if (input.ovmfHash !== undefined && input.ovmfHash.length !== 48)
    throw new MeasurementInputError("ovmfHash", `must be 48 bytes, got ${input.ovmfHash.length}`);
  if (input.firmware) {
    // Descriptions built in code (not parsed from JSON) get the same checks as parsed ones.
    const desc = input.firmware;
    validateSections(desc.sections, "firmware");
    if (!Number.isInteger(desc.resetEip) || desc.resetEip < 0 || desc.resetEip > 0xffff_ffff)
      throw new MeasurementInputError("firmware.ResetEIP", "must be a 32-bit address");
    if (desc.ovmfHash !== undefined && desc.ovmfHash.length !== 48)
      throw new MeasurementInputError("firmware.OVMFHash", `must be 48 bytes, got ${desc.ovmfHash.length}`);
    const given = input.ovmfHash ? Buffer.from(input.ovmfHash) : undefined;
    if (given && desc.ovmfHash && !given.equals(desc.ovmfHash))
      throw new MeasurementInputError("ovmfHash", "differs from the OVMFHash in the firmware description");
    const seed = given ?? desc.ovmfHash;
    if (!seed)
      throw new MeasurementInputError(
        "firmware.OVMFHash",
        "a firmware description without OVMFHash needs a precomputed OVMF hash (ovmfHash)",
      );
    return { desc, ld: new LaunchDigest(seed) };
  }
  const img = asImage(input.ovmf!, "ovmf");
  if (!img.sevMetadata) throw noSevMetadata("ovmf");
  const desc = describeOvmf(img, undefined, "ovmf");
  // A given OVMF hash replaces hashing the image (the reference tool's --snp-ovmf-hash): the image then
  // only supplies metadata, so a tail-only copy of a large firmware is enough.
  return { desc, ld: new LaunchDigest(input.ovmfHash ?? firmwarePagesDigest(img)) };
}

/** SEV metadata sections in table order, as QEMU/KVM, EC2 and GCE issue them (docs/measurement.md). */
function measureSections(
  ld: LaunchDigest,
  desc: FirmwareDescription,
  hashes: Buffer | null,
  vmm: VmmType,
  field: string,
): void {
  const hashSections = desc.sections.filter((s) => s.type === SectionType.SNP_KERNEL_HASHES);
  if (hashes) {
    if (hashSections.length === 0)
      throw new MeasurementInputError(
        "kernel",
        `the firmware has no SNP_KERNEL_HASHES metadata section, so it cannot verify a kernel/initrd/cmdline (measured direct boot needs e.g. the OvmfPkg/AmdSev build)`,
      );
    if (desc.hashTableGpa === undefined)
      throw new MeasurementInputError(
        field,
        "firmware has an SNP_KERNEL_HASHES section but no SEV_HASH_TABLE_RV address for the hashes table",
      );
  }
  for (const s of desc.sections) {
    switch (s.type) {
      case SectionType.SNP_SEC_MEM:
        ld.emptyPages(vmm === "gce" ? PageType.UNMEASURED : PageType.ZERO, s.gpa, s.size);
        break;
      case SectionType.SNP_SECRETS:
        ld.secretsPage(s.gpa);
        break;
      case SectionType.CPUID:
        if (vmm !== "ec2" && vmm !== "ec2-legacy") ld.cpuidPage(s.gpa);
        break;
      case SectionType.SVSM_CAA:
        ld.emptyPages(PageType.ZERO, s.gpa, s.size);
        break;
      case SectionType.SNP_KERNEL_HASHES:
        if (hashes) {
          // QEMU zeroes the section and copies the table at the table GPA's offset within the page.
          const offset = desc.hashTableGpa! & (PAGE_SIZE - 1);
          if (offset + PADDED_TABLE_SIZE > s.size)
            throw new MeasurementInputError(
              field,
              `hashes table at offset 0x${offset.toString(16)} does not fit in the SNP_KERNEL_HASHES section`,
            );
          const page = Buffer.alloc(s.size);
          hashes.copy(page, offset);
          ld.normalPages(s.gpa, page);
        } else {
          ld.emptyPages(PageType.ZERO, s.gpa, s.size);
        }
        break;
    }
  }
  // EC2 measures the CPUID page(s) after every other section.
  if (vmm === "ec2" || vmm === "ec2-legacy")
    for (const s of desc.sections) if (s.type === SectionType.CPUID) ld.cpuidPage(s.gpa);
}

function extendPerVcpu(
  base: LaunchDigest,
  bsp: Buffer,
  ap: Buffer,
  counts: readonly number[],
  gpa: number,
): Map<number, Buffer> {
  const wanted = new Set(counts);
  const max = Math.max(...counts);
  const ld = base.clone();
  const out = new Map<number, Buffer>();
  for (let n = 1; n <= max; n++) {
    ld.vmsaPage(n === 1 ? bsp : ap, gpa);
    if (wanted.has(n)) out.set(n, ld.digest());
  }
  return out;
}

/** Coconut-SVSM launch: OVMF, then the SVSM image below OVMF's vars store, the SVSM's own metadata, N SVSM VMSAs. */
function prepareSvsm(input: SnpMeasureInput, vmm: VmmType, features: bigint, gpa: number): Plan {
  if (vmm !== "qemu") throw new MeasurementInputError("vmm", "SVSM launches are only defined for QEMU");
  if (input.ovmf === undefined || input.firmware !== undefined)
    throw new MeasurementInputError("ovmf", "an SVSM launch needs the OVMF binary (not a firmware description)");
  if (input.ovmfHash !== undefined)
    throw new MeasurementInputError("ovmfHash", "a precomputed OVMF hash cannot be combined with an SVSM image");
  if (input.kernel !== undefined)
    throw new MeasurementInputError("kernel", "kernel hashes are not measured in an SVSM launch");
  const varsSize = input.varsSize;
  if (varsSize === undefined || !Number.isInteger(varsSize) || varsSize < 0 || varsSize % PAGE_SIZE !== 0) {
    throw new MeasurementInputError(
      "varsSize",
      `the OVMF vars store size is required with an SVSM image and must be a multiple of 4096 bytes (got ${varsSize})`,
    );
  }
  if (input.vcpu === undefined)
    throw new MeasurementInputError(
      "vcpu",
      "a vCPU type, signature or family/model/stepping is required for an SVSM launch",
    );
  const vcpuSig = resolveVcpuSignature(input.vcpu);
  const ovmf = asImage(input.ovmf, "ovmf");
  const svsmBytes = input.svsm instanceof Uint8Array ? input.svsm : input.svsm!.data;
  if (svsmBytes.length + varsSize > ovmf.gpa)
    throw new MeasurementInputError("varsSize", "the SVSM image and vars store do not fit below the firmware");
  const svsm = asImage(svsmBytes, "svsm", ovmf.gpa - varsSize);
  if (!svsm.sevMetadata)
    throw new MeasurementInputError("svsm", "the SVSM image has no SEV metadata (not a Coconut SVSM image?)");
  const eip = svsmEntryEip(svsm);

  const ld = new LaunchDigest(firmwarePagesDigest(ovmf));
  ld.normalPages(svsm.gpa, svsm.data);
  measureSections(ld, { resetEip: eip, sections: svsm.sevMetadata }, null, "qemu", "svsm");
  const vmsa = sha384(buildSvsmVmsa({ eip, vcpuSig, sevFeatures: features }));
  return { digests: (c) => extendPerVcpu(ld, vmsa, vmsa, c, gpa) };
}
