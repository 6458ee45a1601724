// Nitride acts for the operator who registers a workload: it writes the workload's ACL policy
// through a trusted internal request and later hands the attested VM its secrets. So registering
// (or changing) a workload must not let the caller delegate more than it holds itself (a confused
// deputy): every KV path, PKI/SSH role and the disk key it names is checked against the caller's
// own ACL, with the parameters the workload will use. And the policy Nitride writes is one it
// created: a policy of that name made by someone else is never overwritten or deleted.
import { createHash } from "node:crypto";
import { LogicalError, type LogicalRequest, type Operation } from "../vault/backend.js";
import type { Storage } from "../storage/types.js";
import { splitMountRole, workloadAclPolicy, type WorkloadDefinition } from "./workloads.js";

/** The ACL path a caller needs `update` on to give a workload a disk key (no engine serves it). */
export const diskKeyAclPath = (nitrideMount: string, id: string) => `${nitrideMount}disk-keys/${id}`;

/** The requests a workload definition lets an attested VM make, as the caller would have to make them. */
function delegatedRequests(
  nitrideMount: string,
  id: string,
  d: WorkloadDefinition,
): Array<{ field: string; operation: Operation; path: string; data: Record<string, unknown> }> {
  const out: Array<{ field: string; operation: Operation; path: string; data: Record<string, unknown> }> = [];
  d.secrets.kv.forEach((path, i) => out.push({ field: `secrets.kv[${i}]`, operation: "read", path, data: {} }));
  if (d.secrets.pki) {
    const { mount, role } = splitMountRole(d.secrets.pki.role);
    out.push({
      field: "secrets.pki",
      operation: "update",
      path: `${mount}/issue/${role}`,
      data: {
        common_name: d.secrets.pki.common_name,
        ...(d.secrets.pki.alt_names.length ? { alt_names: d.secrets.pki.alt_names.join(",") } : {}),
        ...(d.secrets.pki.ip_sans.length ? { ip_sans: d.secrets.pki.ip_sans.join(",") } : {}),
      },
    });
  }
  if (d.secrets.ssh) {
    const { mount, role } = splitMountRole(d.secrets.ssh.role);
    out.push({
      field: "secrets.ssh",
      operation: "update",
      path: `${mount}/sign/${role}`,
      data: { cert_type: "host", valid_principals: d.secrets.ssh.principals.join(",") },
    });
  }
  if (d.secrets.disk_key)
    out.push({ field: "secrets.disk_key", operation: "update", path: diskKeyAclPath(nitrideMount, id), data: {} });
  return out;
}

/**
 * The ACL path that lets a caller hand `path` to attested workloads without using it itself: `update` on
 * <nitride mount>delegate/<path> (no engine serves it), judged with the same request parameters. The
 * deployer credential holds these instead of read/issue/sign (docs/security.md "Deployer credential").
 */
export const delegateAclPath = (nitrideMount: string, path: string) => `${nitrideMount}delegate/${path}`;

/** Refuses (403, naming the field and path) a definition delegating anything the caller does not hold. */
export async function assertCallerHolds(req: LogicalRequest, id: string, d: WorkloadDefinition): Promise<void> {
  const policies = req.auth?.policies ?? [];
  for (const r of delegatedRequests(req.mountPoint, id, d)) {
    const holds =
      (await req.system.authorized(policies, r.operation, r.path, r.data)) ||
      (await req.system.authorized(policies, "update", delegateAclPath(req.mountPoint, r.path), r.data));
    if (!holds)
      throw new LogicalError(
        403,
        `permission denied: ${r.field}: the caller may not ${r.operation} ${r.path} itself, so it cannot give it to a workload`,
      );
  }
}

const ownedKey = (id: string) => `acl-policies/${id}`;
const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

async function currentPolicyText(req: LogicalRequest, name: string): Promise<string | undefined> {
  const r = await req.system.internalRequest("read", `sys/policies/acl/${name}`);
  return typeof r?.data?.policy === "string" ? r.data.policy : undefined;
}

/**
 * Whether Nitride may write (or delete) the workload's policy `name`: it does not exist, or Nitride
 * created it (its mark in Nitride's storage; or, for a runtime older than the mark, the stored text
 * is exactly what Nitride generates for the current definition).
 */
export async function nitrideOwnsPolicy(
  req: LogicalRequest,
  id: string,
  name: string,
  prev: WorkloadDefinition | undefined,
): Promise<boolean> {
  const text = await currentPolicyText(req, name);
  if (text === undefined) return true;
  if (await req.storage.get(ownedKey(id))) return true;
  return prev !== undefined && text === workloadAclPolicy(req.mountPoint, prev);
}

export async function markPolicyOwned(storage: Storage, id: string, text: string): Promise<void> {
  await storage.put(ownedKey(id), Buffer.from(sha256(text), "utf8"));
}

export async function forgetPolicyOwned(storage: Storage, id: string): Promise<void> {
  await storage.delete(ownedKey(id));
}
