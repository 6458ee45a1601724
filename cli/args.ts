// Flag parsing on node:util parseArgs, turning its errors into UsageError (exit 2).
import { parseArgs, type ParseArgsConfig } from "node:util";
import { readFileSync } from "node:fs";
import { UsageError } from "./io.js";

export type Options = NonNullable<ParseArgsConfig["options"]>;

export function parseFlags<T extends Options>(argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Reads a file named by a flag; a missing or unreadable file is a usage error naming the flag. */
export function readFlagFile(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new UsageError(`${flag} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Parses a hex flag value (optional 0x prefix) of an exact byte length when given. */
export function parseHexFlag(flag: string, value: string, bytes?: number): Buffer {
  const hex = value.startsWith("0x") || value.startsWith("0X") ? value.slice(2) : value;
  if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length % 2 !== 0) throw new UsageError(`${flag}: '${value}' is not hex`);
  const buf = Buffer.from(hex, "hex");
  if (bytes !== undefined && buf.length !== bytes)
    throw new UsageError(`${flag}: expected ${bytes} bytes (${bytes * 2} hex digits), got ${buf.length}`);
  return buf;
}

/** Parses a date flag such as --at 2025-06-01T00:00:00Z (verification time); undefined when absent. */
export function parseDateFlag(flag: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new UsageError(`${flag}: '${value}' is not a date`);
  return d;
}
