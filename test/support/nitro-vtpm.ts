// A NitroTPM for tests: a software TPM stands in for the instance's vTPM, and `nitro-tpm-attest` is answered by a
// simulated Nitro PKI (runtime/sim/nitrotpm.ts) with a document over that TPM's SHA-384 PCRs echoing the
// requester's nonce and public key — what the tool does on EC2.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { spawnRunner, type CommandRunner } from "../../runtime/guest/exec.js";
import type { SimulatedNitroPki } from "../../runtime/sim/nitrotpm.js";
import type { SwTpm } from "./swtpm.js";

/** SHA-384 PCRs 0..23 of a TPM, as the NitroTPM puts them in its document. */
export function sha384Pcrs(tpm: SwTpm): Record<number, Buffer> {
  const out: Record<number, Buffer> = {};
  for (const group of [
    [0, 1, 2, 3, 4, 5, 6, 7],
    [8, 9, 10, 11, 12, 13, 14, 15],
    [16, 17, 18, 19, 20, 21, 22, 23],
  ]) {
    const dir = mkdtempSync(path.join(tmpdir(), "bp-pcr-"));
    const f = path.join(dir, "v");
    const r = tpm.tool(["tpm2_pcrread", `sha384:${group.join(",")}`, "-o", f]);
    if (r.status !== 0) throw new Error(r.stderr.toString());
    const raw = readFileSync(f);
    group.forEach((p, i) => (out[p] = raw.subarray(i * 48, i * 48 + 48)));
  }
  return out;
}

/**
 * What `nitro-tpm-attest --nonce F --public-key F` does on EC2, for a simulated instance: a document over the
 * SHA-384 PCRs of `nitroTpm` (the instance's real vTPM) echoing the requester's nonce and public key.
 */
export function nitroRunner(
  pki: SimulatedNitroPki,
  nitroTpm: () => SwTpm,
  instance = "i-0123456789abcdef0",
): CommandRunner {
  return {
    async run(argv, opts) {
      if (argv[0] !== "nitro-tpm-attest") return spawnRunner.run(argv, opts);
      const arg = (k: string) => readFileSync(argv[argv.indexOf(k) + 1]);
      const doc = pki.document({
        moduleId: `${instance}-tpm0123456789abcdef`,
        pcrs: sha384Pcrs(nitroTpm()),
        nonce: arg("--nonce"),
        publicKey: arg("--public-key"),
      });
      return { code: 0, stdout: doc, stderr: Buffer.alloc(0) };
    },
  };
}
