// A persistent simulated SEV-SNP platform for the local stack. The runtime process and each local VM are
// separate processes, so the simulated AMD hierarchy (ARK → ASK → VCEK) lives in a directory:
//   platform.json  the keys and certificates (private: mode 0600, directory 0700) — the "chip"
//   anchor.json    the public trust anchor only, in the runtime's nitride/config shape
// A runtime trusts this platform only when its nitride config lists the anchor and accept_simulated is
// on; every verdict is then marked simulated.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createSnpSimulator, type SnpSimulator, type SnpSimulatorState } from "../snp.js";
import type { SnpProduct } from "../../attestation/snp/abi.js";
import { LocalVmError } from "./errors.js";

/** The anchor as `PUT /v1/nitride/config` takes it (`simulated_snp_anchors[]`). */
export interface PlatformAnchor {
  product: SnpProduct;
  ark_sha256: string;
  /** ARK, ASK, ASVK (DER, base64). */
  ca_certs: string[];
}

export const PLATFORM_FILE = "platform.json";
export const ANCHOR_FILE = "anchor.json";

function anchorOf(sim: SnpSimulator): PlatformAnchor {
  const a = sim.trustAnchor;
  return {
    product: a.product,
    ark_sha256: a.arkSha256,
    ca_certs: a.caCerts.map((c) => Buffer.from(c).toString("base64")),
  };
}

/** Creates the platform in `dir` unless one is there already (then it is kept); returns its anchor. */
export async function initPlatform(
  dir: string,
  opts: { product?: SnpProduct } = {},
): Promise<{ anchor: PlatformAnchor; created: boolean }> {
  if (!path.isAbsolute(dir)) throw new LocalVmError("dir", `'${dir}' must be an absolute path`);
  if (existsSync(path.join(dir, PLATFORM_FILE))) {
    const sim = await loadPlatform(dir);
    const anchor = anchorOf(sim);
    writeFileSync(path.join(dir, ANCHOR_FILE), `${JSON.stringify(anchor, null, 2)}\n`, { mode: 0o644 });
    return { anchor, created: false };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const sim = await createSnpSimulator({ product: opts.product ?? "Genoa", rsaBits: 2048 });
  await sim.report(); // issues the VCEK for the platform TCB, so every process signs with the same chip key
  writeFileSync(path.join(dir, PLATFORM_FILE), `${JSON.stringify(await sim.exportState())}\n`, { mode: 0o600 });
  const anchor = anchorOf(sim);
  writeFileSync(path.join(dir, ANCHOR_FILE), `${JSON.stringify(anchor, null, 2)}\n`, { mode: 0o644 });
  return { anchor, created: true };
}

/** The simulator of the platform in `dir` (same chip, same keys, in any process). */
export async function loadPlatform(dir: string): Promise<SnpSimulator> {
  const file = path.join(dir, PLATFORM_FILE);
  let state: SnpSimulatorState;
  try {
    state = JSON.parse(readFileSync(file, "utf8")) as SnpSimulatorState;
  } catch (e) {
    throw new LocalVmError(
      "platform",
      `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? "not JSON"}); run 'buckypaper simulate platform init --dir ${dir}'`,
    );
  }
  try {
    return await createSnpSimulator({ state });
  } catch (e) {
    throw new LocalVmError("platform", `${file}: ${(e as Error).message}`);
  }
}

export function readAnchor(dir: string): PlatformAnchor {
  const file = path.join(dir, ANCHOR_FILE);
  try {
    return JSON.parse(readFileSync(file, "utf8")) as PlatformAnchor;
  } catch (e) {
    throw new LocalVmError("platform", `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? "not JSON"})`);
  }
}
