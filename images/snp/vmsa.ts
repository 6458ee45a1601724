// Initial VMSA pages (struct sev_es_save_area, AMD APM vol 2 table B-4) as each VMM builds them.
// Only the non-zero fields are written; the rest of the 4 KiB page is zero.
import { MeasurementInputError } from "./errors.js";
import { resolveVcpuSignature, type VcpuSpec } from "./vcpu.js";

export type VmmType = "qemu" | "ec2" | "ec2-legacy" | "gce";
export const VMM_TYPES: readonly VmmType[] = ["qemu", "ec2", "ec2-legacy", "gce"];

/** Reset vector of the bootstrap processor. */
export const BSP_EIP = 0xffff_fff0;

// Field offsets in the save area.
const OFF = {
  es: 0x00,
  cs: 0x10,
  ss: 0x20,
  ds: 0x30,
  fs: 0x40,
  gs: 0x50,
  gdtr: 0x60,
  ldtr: 0x70,
  idtr: 0x80,
  tr: 0x90,
  efer: 0xd0,
  cr4: 0x148,
  cr0: 0x158,
  dr7: 0x160,
  dr6: 0x168,
  rflags: 0x170,
  rip: 0x178,
  gPat: 0x268,
  rdx: 0x310,
  sevFeatures: 0x3b0,
  xcr0: 0x3e8,
  mxcsr: 0x408,
  x87Fcw: 0x410,
} as const;

const DEFAULT_G_PAT = 0x0007_0406_0007_0406n; // PAT MSR reset value (APM vol 2 §A.3)

interface VmmRegisterState {
  csFlags: number;
  ssFlags: number;
  trFlags: number;
  /** undefined = the vCPU signature (QEMU/KVM puts CPUID(1).EAX in RDX at reset). */
  rdx?: number;
  mxcsr: number;
  fcw: number;
  gPat: bigint;
}

/**
 * Register-state differences between VMMs (docs/measurement.md has the sources):
 * - QEMU/KVM with KVM_SEV_INIT2 (Linux >= 6.10, QEMU >= 9.1) sets MXCSR/FCW to their reset values.
 * - EC2 (Nitro) uses non-accessed segment types, RDX 0x600 since 2026 (older hosts: RDX 0 = "ec2-legacy").
 * - GCE uses RDX 0x600 and its own G_PAT.
 */
function registerState(vmm: VmmType, eip: number): VmmRegisterState {
  switch (vmm) {
    case "qemu":
      return { csFlags: 0x9b, ssFlags: 0x93, trFlags: 0x8b, mxcsr: 0x1f80, fcw: 0x37f, gPat: DEFAULT_G_PAT };
    case "ec2":
    case "ec2-legacy":
      return {
        csFlags: eip === BSP_EIP ? 0x9a : 0x9b,
        ssFlags: 0x92,
        trFlags: 0x83,
        rdx: vmm === "ec2" ? 0x600 : 0,
        mxcsr: 0,
        fcw: 0,
        gPat: DEFAULT_G_PAT,
      };
    case "gce":
      return { csFlags: 0x9b, ssFlags: 0x93, trFlags: 0x8b, rdx: 0x600, mxcsr: 0, fcw: 0, gPat: 0x0007_0106n };
    default:
      throw new MeasurementInputError("vmm", `unknown VMM type '${String(vmm)}'; valid types: ${VMM_TYPES.join(", ")}`);
  }
}

export function vmmNeedsVcpuSignature(vmm: VmmType): boolean {
  return vmm === "qemu";
}

/** The vCPU signature `vmm` writes into every VMSA (RDX): required for qemu, 0 where the VMM writes none. */
export function vmsaVcpuSignature(vmm: VmmType, vcpu: VcpuSpec | undefined): number {
  if (!vmmNeedsVcpuSignature(vmm)) return 0;
  if (vcpu === undefined)
    throw new MeasurementInputError(
      "vcpu",
      "a vCPU type, signature or family/model/stepping is required for vmm 'qemu'",
    );
  return resolveVcpuSignature(vcpu);
}

function seg(p: Buffer, off: number, selector: number, attrib: number, limit: number, base: number): void {
  p.writeUInt16LE(selector, off);
  p.writeUInt16LE(attrib, off + 2);
  p.writeUInt32LE(limit, off + 4);
  p.writeBigUInt64LE(BigInt(base), off + 8);
}

function commonControlState(p: Buffer): void {
  p.writeBigUInt64LE(0x1000n, OFF.efer); // KVM sets EFER.SVME
  p.writeBigUInt64LE(0x40n, OFF.cr4); // KVM sets CR4.MCE
  p.writeBigUInt64LE(0x400n, OFF.dr7);
  p.writeBigUInt64LE(0xffff0ff0n, OFF.dr6);
  p.writeBigUInt64LE(0x2n, OFF.rflags);
  p.writeBigUInt64LE(0x1n, OFF.xcr0);
}

/** A vCPU's initial VMSA page in real mode at `eip` (BSP: 0xfffffff0; APs: the SEV-ES reset block EIP). */
export function buildVmsa(opts: { eip: number; vmm: VmmType; vcpuSig: number; sevFeatures: bigint }): Buffer {
  const r = registerState(opts.vmm, opts.eip);
  const p = Buffer.alloc(4096);
  seg(p, OFF.es, 0, 0x93, 0xffff, 0);
  seg(p, OFF.cs, 0xf000, r.csFlags, 0xffff, (opts.eip & 0xffff0000) >>> 0); // >>> 0: JS bit operations are signed
  seg(p, OFF.ss, 0, r.ssFlags, 0xffff, 0);
  seg(p, OFF.ds, 0, 0x93, 0xffff, 0);
  seg(p, OFF.fs, 0, 0x93, 0xffff, 0);
  seg(p, OFF.gs, 0, 0x93, 0xffff, 0);
  seg(p, OFF.gdtr, 0, 0, 0xffff, 0);
  seg(p, OFF.ldtr, 0, 0x82, 0xffff, 0);
  seg(p, OFF.idtr, 0, 0, 0xffff, 0);
  seg(p, OFF.tr, 0, r.trFlags, 0xffff, 0);
  commonControlState(p);
  p.writeBigUInt64LE(0x10n, OFF.cr0);
  p.writeBigUInt64LE(BigInt(opts.eip & 0xffff), OFF.rip);
  p.writeBigUInt64LE(r.gPat, OFF.gPat);
  p.writeBigUInt64LE(BigInt(r.rdx ?? opts.vcpuSig), OFF.rdx);
  p.writeBigUInt64LE(opts.sevFeatures, OFF.sevFeatures);
  p.writeUInt32LE(r.mxcsr, OFF.mxcsr);
  p.writeUInt16LE(r.fcw, OFF.x87Fcw);
  return p;
}

/**
 * The VMSA QEMU builds for every vCPU of a Coconut-SVSM guest: flat 32-bit protected mode entering the
 * SVSM at `eip`. x87 FCW stays 0: the reference tool (whose SVSM vectors were taken on hardware) never
 * sets it, unlike sev-snp-measure-go.
 */
export function buildSvsmVmsa(opts: { eip: number; vcpuSig: number; sevFeatures: bigint }): Buffer {
  const p = Buffer.alloc(4096);
  for (const off of [OFF.es, OFF.ss, OFF.ds, OFF.fs]) seg(p, off, 16, 0xc93, 0xffffffff, 0);
  seg(p, OFF.cs, 8, 0xc9b, 0xffffffff, 0);
  seg(p, OFF.gs, 0, 0x93, 0xffff, 0);
  seg(p, OFF.gdtr, 0, 0, 0xffff, 0);
  seg(p, OFF.ldtr, 0, 0x82, 0xffff, 0);
  seg(p, OFF.idtr, 0, 0, 0xffff, 0);
  seg(p, OFF.tr, 0, 0x8b, 0xffff, 0);
  commonControlState(p);
  p.writeBigUInt64LE(0x11n, OFF.cr0); // protected mode
  p.writeBigUInt64LE(BigInt(opts.eip), OFF.rip);
  p.writeBigUInt64LE(DEFAULT_G_PAT, OFF.gPat);
  p.writeBigUInt64LE(BigInt(opts.vcpuSig), OFF.rdx);
  p.writeBigUInt64LE(opts.sevFeatures, OFF.sevFeatures);
  p.writeUInt32LE(0x1f80, OFF.mxcsr);
  return p;
}
