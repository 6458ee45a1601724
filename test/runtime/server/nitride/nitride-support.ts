// Shared setup for Nitride tests on the real server: a simulated SNP platform, a runtime with Nitride,
// PKI, SSH, transit and JWT auth mounted and configured, two workloads, and an "agent" that does
// what the enclaivelet does (challenge → evidence bound to an ephemeral key → attest → login).
import { spawn } from "node:child_process";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { createSnpSimulator, type SnpSimulator } from "../../../../runtime/sim/snp.js";
import { hybridBindingMaterial, reportDataFor } from "../../../../runtime/attestation/binding.js";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { registerNitrideEngines } from "../../../../runtime/server/nitride/register.js";
import { responseSealer } from "../../../../runtime/server/nitride/seal.js";
import { encodeEvidence } from "../../../../runtime/protocol/evidence.js";
import { startTestRuntime, type TestRuntime } from "../../../support/runtime.js";

export const GOOD_MEASUREMENT = "a1".repeat(48);
export const OTHER_MEASUREMENT = "b2".repeat(48);

export interface NitrideStack {
  rt: TestRuntime;
  sim: SnpSimulator;
}

export async function startNitrideStack(): Promise<NitrideStack> {
  const sim = await createSnpSimulator({ product: "Milan", rsaBits: 2048 });
  const rt = await startTestRuntime({
    register: (r) => registerNitrideEngines(r),
    mounts: { "pki/": { type: "pki" }, "ssh/": { type: "ssh" }, "transit/": { type: "transit" } },
    auth: { "jwt/": { type: "jwt" } },
    core: { responseSealer },
  });
  const ok = async (method: string, path: string, body?: unknown) => {
    const r = await rt.api(method, path, body);
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const a = sim.trustAnchor;
  await ok("PUT", "nitride/config", {
    // The tests built on this support log in through a role bound to one configured audience (nitride-audience
    // tests the per-runtime default).
    audience: "buckypaper",
    kds: "off",
    accept_simulated: true,
    simulated_snp_anchors: [
      {
        product: a.product,
        ark_sha256: a.arkSha256,
        ca_certs: a.caCerts.map((c) => Buffer.from(c).toString("base64")),
      },
    ],
  });
  await ok("PUT", "secret/data/web/db", { data: { password: "web-db-secret" } });
  await ok("PUT", "secret/data/other/db", { data: { password: "other-db-secret" } });
  await ok("POST", "pki/root/generate/internal", {
    common_name: "Buckypaper Test Root",
    key_type: "ec",
    key_bits: 256,
  });
  await ok("POST", "pki/roles/web", { allowed_domains: "example.com", allow_subdomains: true, ttl: "24h" });
  await ok("POST", "ssh/config/ca", { generate_signing_key: true });
  await ok("POST", "ssh/roles/host", {
    key_type: "ca",
    allow_host_certificates: true,
    allowed_domains: "example.com",
    allow_subdomains: true,
    ttl: "24h",
  });
  await ok("PUT", "nitride/workloads/web", {
    description: "web tier",
    platforms: ["snp"],
    reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
    secrets: {
      kv: ["secret/data/web/db"],
      disk_key: true,
      pki: { role: "pki/web", common_name: "web.example.com", alt_names: ["www.example.com"] },
      ssh: { role: "ssh/host", principals: ["web.example.com"] },
    },
  });
  await ok("PUT", "nitride/workloads/other", {
    reference_values: { snp_measurements: [OTHER_MEASUREMENT] },
    secrets: { kv: ["secret/data/other/db"] },
  });
  await ok("POST", "auth/jwt/config", { nitride_mount: "nitride" });
  await ok("POST", "auth/jwt/role/workload", {
    role_type: "jwt",
    bound_audiences: ["buckypaper"],
    user_claim: "sub",
    bound_claims: { platform: "snp" },
    token_policies: ["nitride-workload-{{sub}}"],
    token_policies_template_claims: true,
    token_ttl: "10m",
  });
  return { rt, sim };
}

export interface AttestResult {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API / an untyped CommonJS client
  body: any;
  ephemeral: { privateKey: KeyObject; spki: Buffer; mlkem?: { publicKey: Uint8Array; secretKey: Uint8Array } };
  nonce: string;
  request: Record<string, unknown>;
}

/** challenge → simulated report with REPORT_DATA = binding(nonce, ephemeral key) → attest. */
export async function attestAs(
  s: NitrideStack,
  workloadId: string,
  o: { measurement?: string; bindKey?: Buffer; nonce?: string; debug?: boolean; hybrid?: boolean } = {},
): Promise<AttestResult> {
  let nonce = o.nonce;
  if (!nonce) {
    const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: workloadId }, "");
    if (ch.status !== 200) throw new Error(`challenge: ${ch.status} ${JSON.stringify(ch.body)}`);
    nonce = ch.body.data.nonce as string;
  }
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const spki = publicKey.export({ format: "der", type: "spki" });
  // hybrid: an ML-KEM-768 key too, bound with the P-384 key (unless bindKey overrides what is bound).
  const mlkem = o.hybrid ? ml_kem768.keygen() : undefined;
  const bound = mlkem ? hybridBindingMaterial(spki, mlkem.publicKey) : spki;
  const reportData = reportDataFor(Buffer.from(nonce, "base64url"), o.bindKey ?? bound);
  const ev = await s.sim.report({
    measurement: o.measurement ?? GOOD_MEASUREMENT,
    reportData,
    policy: o.debug ? { debug: true } : undefined,
  });
  const request = {
    workload_id: workloadId,
    nonce,
    ephemeral_public_key: spki.toString("base64"),
    ...(mlkem ? { mlkem_public_key: Buffer.from(mlkem.publicKey).toString("base64") } : {}),
    evidence: encodeEvidence({ kind: "snp", report: ev.report, certTable: ev.certTable }),
  };
  const r = await s.rt.api("POST", "nitride/attest", request, "");
  return {
    status: r.status,
    body: r.body,
    ephemeral: { privateKey, spki, ...(mlkem ? { mlkem } : {}) },
    nonce,
    request,
  };
}

export async function login(s: NitrideStack, jwt: string, role = "workload") {
  return s.rt.api("POST", "auth/jwt/login", { role, jwt }, "");
}

/** Runs a command without blocking the event loop (the server under test runs on it). */
export function runAsync(
  cmd: string,
  args: string[],
  cwd?: string,
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd });
    let out = "",
      err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("close", (code) => resolve({ code, out, err }));
  });
}
