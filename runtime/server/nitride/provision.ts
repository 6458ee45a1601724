// The provisioning bundle (its wire shape is runtime/protocol/bundle.ts): everything one attested workload is entitled to, fetched through trusted
// in-process calls, and nothing else: its KV secrets, a TLS certificate from its PKI role, SSH host
// certificates for its host keys (submitted or generated) and its disk key (generated once, kept in
// Nitride's barrier-encrypted storage).
import { randomBytes } from "node:crypto";
import { LogicalError, type LogicalRequest, type LogicalResponse } from "../vault/backend.js";
import { optList } from "../vault/fields.js";
import { diskKeyStorageKey, policyHash, readWorkload, splitMountRole } from "./workloads.js";
import { issuerFor } from "./token.js";
import type { WireBundle, WireBundleSsh, WireBundleTls, WireHostCertificate } from "../../protocol/bundle.js";
import { hybridKeyOf } from "./seal.js";
import { SEAL_HEADER, SEAL_MODE } from "../../protocol/seal.js";
import { ATTESTED_BY_NITRIDE, ATTESTED_META, ATTESTED_MOUNT_META } from "../vault/auth-jwt.js";

export async function provisionBundle(req: LogicalRequest): Promise<LogicalResponse> {
  const meta = req.auth?.metadata ?? {};
  const workloadId = meta.workload_id;
  // Only a login whose JWT the auth method verified against this Nitride mount's own key ring counts
  // (recorded in the token's metadata by the auth method; claims alone can be forged by any signer).
  const claims = req.auth?.claims;
  if (
    meta[ATTESTED_META] !== ATTESTED_BY_NITRIDE ||
    meta[ATTESTED_MOUNT_META] !== req.mountPoint.replace(/\/+$/, "") ||
    !workloadId ||
    claims?.sub !== workloadId ||
    claims?.iss !== issuerFor(req.system.apiAddr(), req.mountPoint)
  ) {
    throw new LogicalError(
      403,
      "permission denied: the provisioning bundle needs a token from an attested login (auth/jwt with a Nitride token)",
    );
  }
  const rec = await readWorkload(req.storage, workloadId);
  if (!rec) throw new LogicalError(404, `workload not found: ${workloadId}`);
  const d = rec.definition;
  // Evidence was appraised against reference values that have since changed (e.g. an image revoked):
  // the bundle needs a fresh attestation against the current ones.
  if (claims.policy_hash !== policyHash(d)) {
    throw new LogicalError(
      403,
      "permission denied: the workload's reference values or policy changed since this attestation; attest again",
    );
  }
  // require_pq_hybrid holds for the bundle itself, not only at attest: a login from before the switch (or
  // one replayed without the seal header by whoever saw its token) never gets the bundle classical or clear.
  if (d.require_pq_hybrid) {
    if (!hybridKeyOf(req.auth))
      throw new LogicalError(
        403,
        "permission denied: the workload requires hybrid post-quantum sealing (require_pq_hybrid) and this login " +
          "bound no ML-KEM-768 key; attest again with one",
      );
    if (req.headers[SEAL_HEADER] !== SEAL_MODE)
      throw new LogicalError(
        403,
        `permission denied: the workload requires hybrid post-quantum sealing (require_pq_hybrid); ask for a sealed answer (${SEAL_HEADER}: ${SEAL_MODE})`,
      );
  }
  const sys = req.system;

  const kv: WireBundle["kv"] = {};
  for (const path of d.secrets.kv) {
    const r = await sys.internalRequest("read", path).catch((e: unknown) => {
      if (e instanceof LogicalError && e.status === 404) return undefined;
      throw e;
    });
    const inner = (r?.data as { data?: unknown } | undefined)?.data;
    if (inner === undefined)
      throw new LogicalError(500, `provisioning: KV secret ${path} of this workload does not exist`);
    kv[path] = inner as Record<string, unknown>;
  }

  let tls: WireBundleTls | undefined;
  if (d.secrets.pki) {
    const { mount, role } = splitMountRole(d.secrets.pki.role);
    const r = await sys.internalRequest("update", `${mount}/issue/${role}`, {
      common_name: d.secrets.pki.common_name,
      alt_names: d.secrets.pki.alt_names.join(","),
      ip_sans: d.secrets.pki.ip_sans.join(","),
      ...(d.secrets.pki.ttl ? { ttl: d.secrets.pki.ttl } : {}),
    });
    if (!r?.data) throw new LogicalError(500, `provisioning: PKI role ${d.secrets.pki.role} is not available`);
    tls = {
      certificate: r.data.certificate as string,
      private_key: r.data.private_key as string,
      private_key_type: r.data.private_key_type as string,
      ca_chain: r.data.ca_chain as string[],
      serial_number: r.data.serial_number as string,
      expiration: r.data.expiration as number,
    };
  }

  let ssh: WireBundleSsh | undefined;
  if (d.secrets.ssh) {
    const { mount, role } = splitMountRole(d.secrets.ssh.role);
    const base = {
      cert_type: "host",
      valid_principals: d.secrets.ssh.principals.join(","),
      ...(d.secrets.ssh.ttl ? { ttl: d.secrets.ssh.ttl } : {}),
    };
    const hostKeys = optList(req.data, "host_keys");
    if (hostKeys.length > 8) throw new LogicalError(400, "host_keys: at most 8 keys");
    const certs: WireHostCertificate[] = [];
    if (hostKeys.length) {
      for (const k of hostKeys) {
        const r = await sys.internalRequest("update", `${mount}/sign/${role}`, { ...base, public_key: k });
        certs.push({
          public_key: k,
          signed_key: r?.data?.signed_key as string,
          serial_number: r?.data?.serial_number as string,
        });
      }
    } else {
      const r = await sys.internalRequest("update", `${mount}/issue/${role}`, base);
      certs.push({
        private_key: r?.data?.private_key as string,
        signed_key: r?.data?.signed_key as string,
        serial_number: r?.data?.serial_number as string,
      });
    }
    const ca = await sys.internalRequest("read", `${mount}/config/ca`);
    ssh = {
      host_certificates: certs,
      ca_public_key: ca?.data?.public_key as string,
      principals: d.secrets.ssh.principals,
    };
  }

  let diskKey: string | undefined;
  if (d.secrets.disk_key) {
    const key = diskKeyStorageKey(rec);
    diskKey = await req.storage.transaction(async (tx) => {
      const have = await tx.get(key);
      if (have) return have.toString("utf8");
      const k = randomBytes(32).toString("base64");
      await tx.put(key, Buffer.from(k, "utf8"));
      return k;
    });
  }

  const data: WireBundle = { workload_id: workloadId, version: rec.version, kv };
  const secretKeys = ["kv"];
  if (tls) {
    data.tls = tls;
    secretKeys.push("tls");
  }
  if (ssh) {
    data.ssh = ssh;
    secretKeys.push("ssh");
  }
  if (diskKey) {
    data.disk_key = diskKey;
    secretKeys.push("disk_key");
  }
  return { data: { ...data }, secretKeys };
}
