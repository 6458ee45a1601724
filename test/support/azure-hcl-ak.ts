// The Azure paravisor's attestation key in a software TPM: what the HCL provisions before the guest runs, so both the
// workload (enclaivelet) and the runtime (attested TLS) tests quote with a key at the handle Azure uses.
import { createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { AZURE_AK_HANDLE } from "../../runtime/guest/evidence/azure.js";
import type { SwTpm } from "./swtpm.js";

/** Runs a tpm2-tools command against `tpm`, throwing with its stderr when it fails. */
export function tpmTool(tpm: SwTpm) {
  return (argv: string[]) => {
    const r = tpm.tool(argv);
    if (r.status !== 0) throw new Error(`${argv[0]}: ${r.stderr.toString()}`);
    return r;
  };
}

/** Creates the HCL's AK (RSA-2048, restricted RSASSA-SHA256), persists it at AZURE_AK_HANDLE and returns its public key. */
export function persistHclAk(tpm: SwTpm, dir: string): KeyObject {
  const tool = tpmTool(tpm);
  tool([
    "tpm2_createprimary",
    "-C",
    "o",
    "-G",
    "rsa2048:rsassa-sha256:null",
    "-a",
    "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda",
    "-c",
    path.join(dir, "ak.ctx"),
  ]);
  tool(["tpm2_evictcontrol", "-C", "o", "-c", path.join(dir, "ak.ctx"), AZURE_AK_HANDLE]);
  tool(["tpm2_readpublic", "-c", AZURE_AK_HANDLE, "-f", "pem", "-o", path.join(dir, "ak.pem")]);
  return createPublicKey(readFileSync(path.join(dir, "ak.pem")));
}
