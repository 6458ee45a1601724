// Linux configfs-tsm (kernel ≥ 6.7): one report entry per request under /sys/kernel/config/tsm/report.
//   mkdir <root>/<entry>; write 64 bytes to inblob; read outblob (+ auxblob, the SNP certificate
//   table); `generation` counts writes, so an unchanged value around our reads proves nobody else
//   wrote the entry meanwhile. `provider` says which TEE answered (sev_guest | tdx_guest).
// The root is configurable so tests can point it at a directory shaped like configfs.
import { mkdir, readFile, writeFile, rmdir, rm, stat, access } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { EvidenceError, b64, type EvidenceProvider, type WireEvidence } from "./types.js";

const NAME = "configfs-tsm";

export interface ConfigfsTsmOptions {
  root: string;
  /** How long to wait for the entry's attributes to appear after mkdir (configfs creates them
   *  synchronously; emulations may lag). */
  attributeWaitMs?: number;
  /** Re-reads when `generation` moved under us. */
  maxRaces?: number;
}

export function configfsTsmProvider(o: ConfigfsTsmOptions): EvidenceProvider {
  const attributeWaitMs = o.attributeWaitMs ?? 5000;
  const maxRaces = o.maxRaces ?? 3;
  return {
    name: NAME,
    async available() {
      try {
        return (await stat(o.root)).isDirectory();
      } catch {
        return false;
      }
    },
    async collect(reportData) {
      if (reportData.length !== 64)
        throw new EvidenceError(NAME, "inblob", `REPORT_DATA must be 64 bytes, got ${reportData.length}`);
      const entry = path.join(o.root, `enclaivelet-${process.pid}-${randomBytes(4).toString("hex")}`);
      await step("mkdir", () => mkdir(entry));
      try {
        await waitForAttributes(entry, attributeWaitMs);
        for (let race = 0; race <= maxRaces; race++) {
          const before = parseGeneration(await readText(entry, "generation"));
          await step("inblob", () => writeFile(path.join(entry, "inblob"), reportData));
          const outblob = await step("outblob", () => readFile(path.join(entry, "outblob")));
          const auxblob = await readOptional(entry, "auxblob");
          const provider = (await readText(entry, "provider")).trim();
          const after = parseGeneration(await readText(entry, "generation"));
          // Our write is exactly one generation; more means another writer raced us: ask again.
          if (after !== before + 1) continue;
          if (outblob.length === 0) throw new EvidenceError(NAME, "outblob", "empty report");
          return toWire(provider, outblob, auxblob);
        }
        throw new EvidenceError(NAME, "generation", `entry kept changing under us (${maxRaces + 1} attempts)`);
      } finally {
        await removeEntry(entry);
      }
    },
  };
}

function toWire(provider: string, outblob: Buffer, auxblob: Buffer | undefined): WireEvidence {
  if (provider === "sev_guest") {
    return {
      kind: "snp",
      report: b64(outblob),
      ...(auxblob && auxblob.length > 0 ? { cert_table: b64(auxblob) } : {}),
    };
  }
  if (provider === "tdx_guest") return { kind: "tdx", quote: b64(outblob) };
  throw new EvidenceError(NAME, "provider", `unsupported TSM provider '${provider}' (expected sev_guest or tdx_guest)`);
}

async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof EvidenceError) throw e;
    const err = e as NodeJS.ErrnoException;
    const hint =
      err.code === "EFBIG"
        ? " (report larger than the kernel's TSM_OUTBLOB_MAX)"
        : err.code === "ENXIO" || err.code === "EIO"
          ? " (no TEE guest driver answered)"
          : "";
    throw new EvidenceError(NAME, what, `${err.code ?? err.message}${hint}`);
  }
}

function parseGeneration(text: string): number {
  const n = Number.parseInt(text.trim(), 10);
  if (!Number.isSafeInteger(n))
    throw new EvidenceError(NAME, "generation", `not a number: '${text.trim().slice(0, 20)}'`);
  return n;
}

async function readText(entry: string, attr: string): Promise<string> {
  return step(attr, () => readFile(path.join(entry, attr), "utf8"));
}

async function readOptional(entry: string, attr: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path.join(entry, attr));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENODATA" || code === "EOPNOTSUPP") return undefined;
    throw new EvidenceError(NAME, attr, code ?? (e as Error).message);
  }
}

async function waitForAttributes(entry: string, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await access(path.join(entry, "provider"));
      return;
    } catch {
      if (Date.now() > deadline)
        throw new EvidenceError(
          NAME,
          "mkdir",
          `entry ${path.basename(entry)} has no 'provider' attribute (is this configfs-tsm?)`,
        );
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function removeEntry(entry: string): Promise<void> {
  try {
    await rmdir(entry); // configfs: rmdir releases the report entry
  } catch (e) {
    // A plain directory (emulation) is not empty after use: remove it as a tree.
    if ((e as NodeJS.ErrnoException).code === "ENOTEMPTY") await rm(entry, { recursive: true, force: true });
  }
}
