// Guest vCPU identity for the VMSA's RDX (CPUID Fn0000_0001_EAX at reset) under QEMU/KVM.
import { MeasurementInputError } from "./errors.js";

export interface CpuModel {
  family: number;
  model: number;
  stepping: number;
}

/**
 * QEMU named AMD models (target/i386/cpu.c builtin_x86_defs). Versioned names (-vN) change only CPUID
 * feature bits, never family/model/stepping, so every version of a model has the base model's signature.
 * The list is the reference tool's (sev-snp-measure 0.0.13) plus EPYC-Genoa-v2 (sev-snp-measure-go) and
 * EPYC-Turin-v1 (the base definition's version alias).
 */
export const VCPU_TYPES: Readonly<Record<string, CpuModel>> = Object.freeze({
  EPYC: { family: 23, model: 1, stepping: 2 },
  "EPYC-v1": { family: 23, model: 1, stepping: 2 },
  "EPYC-v2": { family: 23, model: 1, stepping: 2 },
  "EPYC-IBPB": { family: 23, model: 1, stepping: 2 },
  "EPYC-v3": { family: 23, model: 1, stepping: 2 },
  "EPYC-v4": { family: 23, model: 1, stepping: 2 },
  "EPYC-Rome": { family: 23, model: 49, stepping: 0 },
  "EPYC-Rome-v1": { family: 23, model: 49, stepping: 0 },
  "EPYC-Rome-v2": { family: 23, model: 49, stepping: 0 },
  "EPYC-Rome-v3": { family: 23, model: 49, stepping: 0 },
  "EPYC-Milan": { family: 25, model: 1, stepping: 1 },
  "EPYC-Milan-v1": { family: 25, model: 1, stepping: 1 },
  "EPYC-Milan-v2": { family: 25, model: 1, stepping: 1 },
  "EPYC-Genoa": { family: 25, model: 17, stepping: 0 },
  "EPYC-Genoa-v1": { family: 25, model: 17, stepping: 0 },
  "EPYC-Genoa-v2": { family: 25, model: 17, stepping: 0 },
  "EPYC-Turin": { family: 26, model: 0, stepping: 0 },
  "EPYC-Turin-v1": { family: 26, model: 0, stepping: 0 },
});

/**
 * CPUID Fn0000_0001_EAX from family/model/stepping (AMD CPUID spec #25481): extended family
 * above 0xF, extended model in bits 19:16.
 */
export function vcpuSignature(family: number, model: number, stepping: number): number {
  for (const [name, v, max] of [
    ["family", family, 0xff + 0xf],
    ["model", model, 0xff],
    ["stepping", stepping, 0xf],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > max)
      throw new MeasurementInputError(`vcpu.${name}`, `${v} is out of range 0..${max}`);
  }
  const famLo = Math.min(family, 0xf);
  const famHi = family > 0xf ? family - 0xf : 0;
  return ((famHi << 20) | ((model >> 4) << 16) | (famLo << 8) | ((model & 0xf) << 4) | stepping) >>> 0;
}

/** How a vCPU is named: a QEMU model name, a raw signature, or family/model/stepping. */
export type VcpuSpec = string | number | CpuModel;

export function resolveVcpuSignature(spec: VcpuSpec, field = "vcpu"): number {
  if (typeof spec === "number") {
    if (!Number.isInteger(spec) || spec < 0 || spec > 0xffff_ffff)
      throw new MeasurementInputError(field, `signature ${spec} is not a 32-bit value`);
    return spec;
  }
  if (typeof spec === "string") {
    const m = VCPU_TYPES[spec] ?? Object.entries(VCPU_TYPES).find(([k]) => k.toLowerCase() === spec.toLowerCase())?.[1];
    if (!m)
      throw new MeasurementInputError(
        field,
        `unknown vCPU type '${spec}'; valid types: ${Object.keys(VCPU_TYPES).join(", ")}`,
      );
    return vcpuSignature(m.family, m.model, m.stepping);
  }
  return vcpuSignature(spec.family, spec.model, spec.stepping);
}
