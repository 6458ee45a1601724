// A file a component input names (firmware, kernel, initrd, UKI, loader, image manifest), read on the machine
// running `pulumi up`: one that cannot be read is a ConfigError naming the field, the path and why.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { ConfigError } from "./errors.js";

export function readInputFile(who: string, field: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new ConfigError(
      who,
      field,
      `'${file}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

/** SHA-256 (hex) of the file `field` names; "" when the input is absent (e.g. no kernel: firmware-only boot). */
export function inputFileSha256(who: string, field: string, file: string | undefined): string {
  if (file === undefined) return "";
  return createHash("sha256")
    .update(readInputFile(who, field, file))
    .digest("hex");
}
