// The trust bootstrap of a new runtime, run once by the RuntimeService right after init while the root
// token exists (docs/security.md "Deployer credential"): enable the deployer's JWT auth mount bound to
// one Ed25519 public key, write the least-privilege `bk-deployer` policy, apply the few settings only
// root may make (Nitride trust configuration), prove the deployer can log in, then revoke the root token.
// Afterwards `pulumi up` holds no standing credential: every run signs a one-minute JWT and gets a
// fifteen-minute token that can register things but cannot read them back, issue certificates or
// change its own rights.
import { rmSync } from "node:fs";
import { runtimeRequest, RuntimeApiError, type RuntimeConnection } from "./client.js";
import type { RuntimeAttestation } from "../runtime/client/connection.js";
import {
  DEPLOYER_MOUNT,
  DEPLOYER_POLICY,
  DEPLOYER_ROLE,
  DEPLOYER_SUBJECT,
  deployerAudience,
  forgetDeployerTokens,
  generateDeployerKey,
  writePrivateFile,
  type DeployerAuth,
} from "../runtime/client/deployer.js";

/**
 * What the components register, and nothing else. Every path not named is denied — in particular:
 * reading KV secret data (`+/data/*` is create/update/soft-delete only), deleting KV metadata or
 * destroying versions, PKI/SSH issue and sign, exporting a PKI root, importing a CA key, sys/policies (no
 * self-promotion), token creation (no child or root tokens), Nitride config (trust anchors, simulated
 * evidence) and key rotation, disabling or tuning the nitride mount or its own auth mount, mount tuning,
 * JWT key sources other than this runtime's Nitride, sys/remount and audit. Each rule has a hostile
 * test in test/provider/deployer-credential.test.ts.
 */
export const DEPLOYER_POLICY_HCL = `# bk-deployer: what \`pulumi up\` may do after bootstrap (docs/security.md)
# Secrets engines and auth methods the components mount: one path segment, the engine types the components
# use, no lease settings (sudo is Vault's requirement for sys/auth). Tune paths (sys/mounts/<p>/tune,
# sys/auth/<p>/tune, sys/mounts/auth/<p>/tune) have more segments and match nothing here.
path "sys/mounts" { capabilities = ["read"] }
path "sys/mounts/+" {
  capabilities = ["create", "read", "update", "delete"]
  allowed_parameters = {
    "type" = ["kv", "kv-v2", "pki", "ssh", "transit"]
    "options" = []
    "description" = []
  }
}
path "sys/auth" { capabilities = ["read"] }
path "sys/auth/+" {
  capabilities = ["create", "read", "update", "delete", "sudo"]
  allowed_parameters = {
    "type" = ["jwt"]
    "options" = []
    "description" = []
  }
}
# The runtime's own attestation service and the deployer's own login are not the deployer's to disable.
path "sys/mounts/nitride" { capabilities = ["deny"] }
path "sys/auth/${DEPLOYER_MOUNT}" { capabilities = ["deny"] }

# KV v2: write secret values and soft-delete the current version (an operator can undelete it); read
# metadata (the version); never read a value back, never destroy versions or delete metadata.
path "+/data/*" { capabilities = ["create", "update", "delete"] }
path "+/metadata/*" { capabilities = ["read", "list"] }

# PKI and SSH: roles, and CAs whose private key is generated inside and never leaves.
path "+/roles" { capabilities = ["list"] }
path "+/roles/*" { capabilities = ["create", "read", "update", "delete"] }
path "+/root/generate/internal" { capabilities = ["create", "update"] }
path "+/config/ca" {
  capabilities = ["create", "read", "update"]
  allowed_parameters = {
    "generate_signing_key" = [true]
    "key_type" = []
    "key_bits" = []
  }
}

# JWT auth: a mount's key source may only be this runtime's Nitride (never a key, JWKS or issuer the
# deployer chooses), and roles' tokens carry only attestation-managed workload policies (the runtime
# grants those only to an attested login of that very workload).
path "auth/+/config" {
  capabilities = ["create", "read", "update"]
  allowed_parameters = {
    "nitride_mount" = ["nitride"]
  }
}
path "auth/+/role/*" {
  capabilities = ["create", "read", "update", "delete"]
  allowed_parameters = {
    "token_policies" = ["nitride-workload-*", "default"]
    "*" = []
  }
  denied_parameters = {
    "policies" = []
  }
}

# Its own login: the Ed25519 key may be rotated (config: public keys, EdDSA only), the role (audience,
# policy, TTLs) not changed.
path "auth/${DEPLOYER_MOUNT}/config" {
  capabilities = ["read", "update"]
  allowed_parameters = {
    "jwt_validation_pubkeys" = []
    "jwt_supported_algs" = ["EdDSA"]
  }
}
path "auth/${DEPLOYER_MOUNT}/role/*" { capabilities = ["read"] }

# Nitride workloads: reference values, policy and which secrets an attested VM receives. Nitride lets a
# registrar give a workload only what it holds itself; the deployer holds these "delegate" grants
# instead of read/issue/sign: KV values, certificates from PKI roles, SSH host certificates and disk
# keys reach only a VM that attests with the registered measurement, never the deployer.
path "nitride/workloads" { capabilities = ["list"] }
path "nitride/workloads/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "nitride/delegate/+/data/*" { capabilities = ["update"] }
path "nitride/delegate/+/issue/*" { capabilities = ["update"] }
path "nitride/delegate/+/sign/*" { capabilities = ["update"] }
path "nitride/disk-keys/*" { capabilities = ["update"] }
`;

export interface BootstrapOptions {
  /** Root token from sys/init; revoked at the end. */
  rootToken: string;
  url: string;
  caPem?: string;
  /** Attested TLS expectations (a runtime in a confidential VM): every request of the bootstrap is sent only
   *  over a connection whose key the runtime's evidence binds (runtime/client/attested-tls.ts). */
  attestation?: RuntimeAttestation;
  /** Where the deployer's private key goes (written 0600), unless `publicPem` is given. */
  keyFile: string;
  /** The deployer's own public key (its private key is BUCKYPAPER_DEPLOYER_KEY): no file is written. */
  publicPem?: string;
  /** Writes only root may make, applied before the root token goes (e.g. nitride/config). */
  rootWrites?: { path: string; body: Record<string, unknown> }[];
  /** Token TTL / max TTL of a deployer login. */
  tokenTtl?: string;
  tokenMaxTtl?: string;
  /** Called with the root connection after the root writes, before the root token is revoked. */
  beforeRevoke?: (root: RuntimeConnection) => Promise<void>;
}

/**
 * The `aud` a JWT role of this runtime binds to admit its Nitride's workload tokens: the configured audience, or
 * the runtime's own default (`buckypaper-nitride:<mount uuid>`; its tokens carry that and that + ':<workload>').
 * Read with root during the bootstrap (the deployer credential may not read nitride/). Undefined for a runtime
 * without Nitride or too old to say.
 */
export async function readWorkloadAudience(root: RuntimeConnection): Promise<string | undefined> {
  const r = await runtimeRequest(root, "GET", "nitride/config").catch((e: unknown) => {
    if (e instanceof RuntimeApiError && e.status === 404) return undefined;
    throw e;
  });
  const d = (r?.body as { data?: { audience?: unknown; default_audience?: unknown } } | undefined)?.data;
  if (typeof d?.audience === "string" && d.audience) return d.audience;
  return typeof d?.default_audience === "string" && d.default_audience ? d.default_audience : undefined;
}

/** Settings of the deployer role (a key change rewrites only the auth mount's config). */
function roleBody(o: Pick<BootstrapOptions, "tokenTtl" | "tokenMaxTtl">, audience: string): Record<string, unknown> {
  return {
    role_type: "jwt",
    bound_audiences: [audience],
    bound_subject: DEPLOYER_SUBJECT,
    user_claim: "sub",
    token_policies: [DEPLOYER_POLICY],
    token_ttl: o.tokenTtl ?? "15m",
    token_max_ttl: o.tokenMaxTtl ?? "1h",
    // The JWT must carry exp; a missing one is not stretched by a default leeway.
    expiration_leeway: -1,
    // Each one-minute JWT logs in once (a copy seen on the wire or in a log cannot be used again).
    single_use_jti: true,
  };
}

function configBody(publicPem: string): Record<string, unknown> {
  return { jwt_validation_pubkeys: [publicPem], jwt_supported_algs: ["EdDSA"] };
}

/** Runs the bootstrap; returns where the deployer credential is. The root token is revoked on success. */
export async function bootstrapDeployer(o: BootstrapOptions): Promise<DeployerAuth> {
  const trust = { ...(o.caPem ? { caPem: o.caPem } : {}), ...(o.attestation ? { attestation: o.attestation } : {}) };
  const root: RuntimeConnection = { url: o.url, token: o.rootToken, ...trust };
  let publicPem = o.publicPem;
  if (!publicPem) {
    const k = generateDeployerKey();
    writePrivateFile(o.keyFile, k.privatePem);
    publicPem = k.publicPem;
  }
  await runtimeRequest(root, "POST", `sys/auth/${DEPLOYER_MOUNT}`, {
    type: "jwt",
    description: "buckypaper deployer (pulumi up)",
  });
  await runtimeRequest(root, "POST", `auth/${DEPLOYER_MOUNT}/config`, configBody(publicPem));
  await runtimeRequest(root, "PUT", `sys/policies/acl/${DEPLOYER_POLICY}`, { policy: DEPLOYER_POLICY_HCL });
  // The audience names this runtime (its cluster id), so a JWT for it is refused by any other runtime the
  // same key may be trusted by (one BUCKYPAPER_DEPLOYER_KEY for several stacks).
  const seal = (await runtimeRequest(root, "GET", "sys/seal-status")).body as { cluster_id?: unknown };
  if (typeof seal?.cluster_id !== "string" || !/^[0-9a-f]{16,64}$/.test(seal.cluster_id))
    throw new Error(`runtime at ${o.url}: sys/seal-status has no cluster_id`);
  const audience = deployerAudience(seal.cluster_id);
  await runtimeRequest(root, "POST", `auth/${DEPLOYER_MOUNT}/role/${DEPLOYER_ROLE}`, roleBody(o, audience));
  for (const w of o.rootWrites ?? []) await runtimeRequest(root, "POST", w.path, w.body);
  await o.beforeRevoke?.(root);
  const auth: DeployerAuth = { mount: DEPLOYER_MOUNT, role: DEPLOYER_ROLE, keyFile: o.keyFile, audience };
  // Prove the credential works before giving up root (a typo here would lock the deployment out).
  const probe = { url: o.url, deployer: auth, ...trust };
  forgetDeployerTokens();
  await runtimeRequest(probe, "GET", "auth/token/lookup-self");
  await revokeRoot(root);
  return auth;
}

/** Revokes the root token and checks that it is gone (a 403 on its own lookup). */
export async function revokeRoot(root: RuntimeConnection): Promise<void> {
  await runtimeRequest(root, "POST", "auth/token/revoke-self", {});
  try {
    await runtimeRequest(root, "GET", "auth/token/lookup-self");
  } catch (e) {
    if (e instanceof RuntimeApiError && e.status === 403) return;
    throw e;
  }
  throw new Error("the root token still works after revoke-self");
}

/**
 * Rotates the deployer key with the current credential: a new pair, the new public key replaces the old
 * one in the auth mount's config, then the new private key replaces the file (the old key stops working
 * at once; tokens already issued run out within their TTL).
 */
export async function rotateDeployerKey(c: RuntimeConnection & { deployer: DeployerAuth }): Promise<void> {
  const k = generateDeployerKey();
  const staged = `${c.deployer.keyFile}.next`;
  writePrivateFile(staged, k.privatePem);
  await runtimeRequest(c, "POST", `auth/${c.deployer.mount}/config`, configBody(k.publicPem));
  writePrivateFile(c.deployer.keyFile, k.privatePem);
  rmSync(staged, { force: true });
  forgetDeployerTokens();
  await runtimeRequest(c, "GET", "auth/token/lookup-self");
}
