// Guest RAM size as QEMU's -m takes it ("2G", "4096M", "4096" = MiB) and the q35 low/high RAM split.
import { TdxInputError } from "./errors.js";

const MIB = 1024 * 1024;
const UNITS: Record<string, number> = { "": MIB, K: 1024, M: MIB, G: 1024 * MIB, T: 1024 * 1024 * MIB };
/** Upper bound: q35 guests are far below 16 TiB; anything larger is a typo. */
export const MAX_MEMORY = 16 * 1024 * 1024 * MIB;
/** The TDVF TEMP_MEM/TD_HOB sections sit at 8 MiB: less RAM cannot hold them. */
export const MIN_MEMORY = 32 * MIB;

/** Checks a RAM size given in bytes (library callers); returns it. */
export function checkMemoryBytes(bytes: number, field = "memory"): number {
  if (!Number.isSafeInteger(bytes) || bytes % MIB !== 0)
    throw new TdxInputError(field, `${bytes} bytes is not a whole number of MiB`);
  if (bytes < MIN_MEMORY || bytes > MAX_MEMORY)
    throw new TdxInputError(
      field,
      `${bytes} bytes is outside ${MIN_MEMORY / MIB} MiB .. ${MAX_MEMORY / 1024 / 1024 / MIB} TiB`,
    );
  return bytes;
}

/** Parses a memory size; bare numbers are MiB like QEMU's -m. Throws TdxInputError("memory"). */
export function parseMemorySize(text: string, field = "memory"): number {
  const m = /^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) throw new TdxInputError(field, `'${text}' is not a size (examples: 2G, 4096M, 8GiB; a bare number is MiB)`);
  const bytes = Number(m[1]) * UNITS[m[2].toUpperCase()];
  if (!Number.isSafeInteger(bytes) || bytes % MIB !== 0)
    throw new TdxInputError(field, `'${text}' must be a whole number of MiB`);
  if (bytes < MIN_MEMORY || bytes > MAX_MEMORY)
    throw new TdxInputError(
      field,
      `'${text}' is outside ${MIN_MEMORY / MIB} MiB .. ${MAX_MEMORY / 1024 / 1024 / MIB} TiB`,
    );
  return bytes;
}

/**
 * QEMU q35 RAM split (hw/i386/pc_q35.c): with ≥ 0xB0000000 of RAM only 2 GiB stay below 4 GiB,
 * otherwise up to 0xB0000000 does; the rest is mapped from 4 GiB up.
 */
export function q35RamSplit(memory: number): { below4g: number; above4g: number } {
  const lowmem = memory >= 0xb000_0000 ? 0x8000_0000 : 0xb000_0000;
  const below4g = Math.min(memory, lowmem);
  return { below4g, above4g: memory - below4g };
}
