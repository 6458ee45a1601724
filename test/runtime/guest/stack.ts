// A real runtime over HTTPS (fresh runtime CA) with Nitride, PKI, SSH CA and JWT auth, trusting a
// simulated SNP platform, plus one workload "web" — what an enclaivelet meets at boot.
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import { registerNitrideEngines, responseSealer } from "../../../runtime/server/nitride/register.js";
import { RuntimeClient } from "../../../runtime/guest/client.js";
import type { EvidenceProvider } from "../../../runtime/guest/evidence/types.js";
import type { VtpmEvidence } from "../../../runtime/guest/evidence/vtpm.js";
import { startTestRuntime, type TestRuntime } from "../../support/runtime.js";

export const GOOD_MEASUREMENT = "c3".repeat(48);
export const WRONG_MEASUREMENT = "d4".repeat(48);

export interface EnclaiveletStack {
  rt: TestRuntime;
  sim: SnpSimulator;
  /** Root-token client over the pinned CA (the test helper's api() is HTTP-only). */
  admin: (method: string, path: string, body?: unknown) => Promise<unknown>;
  client: RuntimeClient;
  caSha256: string;
}

export async function startEnclaiveletStack(
  o: { sim?: SnpSimulator; tlsHosts?: string[]; webMeasurement?: string } = {},
): Promise<EnclaiveletStack> {
  const sim = o.sim ?? (await createSnpSimulator({ product: "Genoa", rsaBits: 2048 }));
  const rt = await startTestRuntime({
    tls: true,
    tlsHosts: o.tlsHosts,
    register: (r) => registerNitrideEngines(r),
    core: { responseSealer },
  });
  const caSha256 = rt.caFingerprint!;
  const client = new RuntimeClient(rt.url, caSha256);
  const admin = async (method: string, path: string, body?: unknown) =>
    (await client.request(method, path, { token: rt.rootToken, body })).body;
  // Mounted here: the helper's mounts/auth options speak plain HTTP only.
  await admin("POST", "sys/mounts/pki", { type: "pki" });
  await admin("POST", "sys/mounts/ssh", { type: "ssh" });
  await admin("POST", "sys/auth/jwt", { type: "jwt" });
  const a = sim.trustAnchor;
  await admin("PUT", "nitride/config", {
    audience: "buckypaper", // the workload role binds it (the default is per runtime)
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
  await admin("PUT", "secret/data/web/db", { data: { password: "web-db-s3cret", user: "web" } });
  await admin("PUT", "secret/data/web/api", { data: { key: 'api-k3y-with-"quote"' } });
  await admin("PUT", "secret/data/other/db", { data: { password: "other-db-s3cret" } });
  await admin("POST", "pki/root/generate/internal", {
    common_name: "Buckypaper Test Root",
    key_type: "ec",
    key_bits: 256,
  });
  await admin("POST", "pki/roles/web", { allowed_domains: "example.com", allow_subdomains: true, ttl: "24h" });
  await admin("POST", "ssh/config/ca", { generate_signing_key: true });
  await admin("POST", "ssh/roles/host", {
    key_type: "ca",
    allow_host_certificates: true,
    allowed_domains: "example.com",
    allow_subdomains: true,
    ttl: "24h",
  });
  await admin("PUT", "nitride/workloads/web", {
    description: "web tier",
    platforms: ["snp"],
    reference_values: { snp_measurements: [o.webMeasurement ?? GOOD_MEASUREMENT] },
    secrets: {
      kv: ["secret/data/web/db", "secret/data/web/api"],
      disk_key: true,
      pki: { role: "pki/web", common_name: "web.example.com", alt_names: ["www.example.com"] },
      ssh: { role: "ssh/host", principals: ["web.example.com"] },
    },
  });
  await admin("PUT", "nitride/workloads/other", {
    reference_values: { snp_measurements: [WRONG_MEASUREMENT] },
    secrets: { kv: ["secret/data/other/db"] },
  });
  await admin("POST", "auth/jwt/config", { nitride_mount: "nitride" });
  await admin("POST", "auth/jwt/role/workload", {
    role_type: "jwt",
    bound_audiences: ["buckypaper"],
    user_claim: "sub",
    bound_claims: { platform: "snp" },
    token_policies: ["nitride-workload-{{sub}}"],
    token_policies_template_claims: true,
    token_ttl: "10m",
  });
  return { rt, sim, admin, client, caSha256 };
}

/** The stack's simulated SNP platform as a guest's evidence provider: reports of a guest measured `measurement`. */
export function simulatedSnpProvider(stack: EnclaiveletStack, measurement = GOOD_MEASUREMENT): EvidenceProvider {
  return {
    name: "simulator",
    available: async () => true,
    collect: async (reportData) => {
      const r = await stack.sim.report({ measurement, reportData });
      return {
        kind: "snp",
        report: Buffer.from(r.report).toString("base64"),
        cert_table: Buffer.from(r.certTable).toString("base64"),
      };
    },
  };
}

/** A fresh challenge nonce (base64url) for `workloadId`, as a hand-built (hostile) client asks for it. */
export async function challengeNonce(stack: EnclaiveletStack, workloadId: string): Promise<string> {
  const r = await stack.client.request("POST", "nitride/challenge", { body: { workload_id: workloadId } });
  return (r.body as { data: { nonce: string } }).data.nonce;
}

/** POST nitride/attest with a hand-built body: the status and body, whether accepted or refused. */
export function postAttest(stack: EnclaiveletStack, body: unknown): Promise<{ status: number; body: unknown }> {
  return stack.client.request("POST", "nitride/attest", { body }).then(
    (r) => ({ status: r.status, body: r.body }),
    (e: { status: number; body: unknown }) => ({ status: e.status, body: e.body }),
  );
}

/** A vTPM quote as a hand-built client sends it beside its SNP report (evidence.vtpm: AK, quote, log, SHA-256 PCRs). */
export function wireVtpm(q: VtpmEvidence) {
  const b = (x: Uint8Array) => Buffer.from(x).toString("base64");
  return {
    ak_public: b(q.akPublic),
    quote: b(q.quote),
    signature: b(q.signature),
    event_log: b(q.eventLog),
    pcrs: { sha256: Object.fromEntries(Object.entries(q.pcrs).map(([k, v]) => [k, b(v)])) },
  };
}

/** The ids of the checks a verdict failed, in the runtime's order. */
export function failedChecks(body: unknown): string[] {
  return ((body as { data?: { verdict?: { checks: { id: string; ok: boolean }[] } } }).data?.verdict?.checks ?? [])
    .filter((c) => !c.ok)
    .map((c) => c.id);
}
