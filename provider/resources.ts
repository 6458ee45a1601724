// Pulumi resources that register things with the buckypaper runtime: a Nitride Workload (reference
// values + policy), KV v2 Secrets, ACL Policies, PKI/SSH/JWT roles. They are dynamic providers: real
// create/read/update/delete/diff against the runtime's HTTP API, run by the engine in its
// dynamic-provider process. Type tokens: pulumi-nodejs:dynamic/buckypaper:<Type>.
//
// Closure-serialization rules followed here: each provider captures only two strings (the kind and the
// absolute path of provider/handlers.js) and loads the handlers at call time, so no module object,
// secret or client is serialized into the state's `__provider` input. Loading uses `require` (Node >=
// 22.12 loads ES modules with it) rather than `import()`: the serialized code runs as CommonJS in the
// dynamic-provider process, where `require` is the module wrapper's, and bundlers/test runners rewrite
// `import()` into helpers that cannot be serialized.
import type { Policy as AppraisalPolicy } from "../runtime/protocol/policy.js";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { handlerProvider } from "./dynamic.js";
import type { RuntimeAttestation, RuntimeConnection } from "../runtime/client/connection.js";
import type { SshTarget } from "./ssh-target.js";

const HANDLERS_PATH = fileURLToPath(new URL("./handlers.js", import.meta.url));
const SERVICE_PATH = fileURLToPath(new URL("./service.js", import.meta.url));

function makeProvider(kind: string): pulumi.dynamic.ResourceProvider {
  return handlerProvider(HANDLERS_PATH, kind);
}

function makeServiceProvider(): pulumi.dynamic.ResourceProvider {
  const servicePath = SERVICE_PATH;
  return {
    async check(_olds, news) {
      const s = require(servicePath); // eslint-disable-line @typescript-eslint/no-require-imports
      return s.checkService(news);
    },
    async diff(_id, olds, news) {
      const s = require(servicePath); // eslint-disable-line @typescript-eslint/no-require-imports
      return s.diffService(olds, news);
    },
    async create(inputs) {
      const s = require(servicePath); // eslint-disable-line @typescript-eslint/no-require-imports
      const outs = await s.createService(inputs);
      return { id: `${inputs.ssh ? `${inputs.ssh.user}@${inputs.ssh.host}:` : ""}${inputs.stateDir}`, outs };
    },
    async read(id, props) {
      const s = require(servicePath); // eslint-disable-line @typescript-eslint/no-require-imports
      return s.readService(id, props);
    },
    async update(_id, olds, news) {
      const s = require(servicePath); // eslint-disable-line @typescript-eslint/no-require-imports
      return { outs: await s.ensureRunning(olds, news) };
    },
    async delete(_id, props) {
      const s = require(servicePath); // eslint-disable-line @typescript-eslint/no-require-imports
      await s.deleteService(props);
    },
  };
}

// One provider object per kind: Pulumi caches the serialization per object.
const providers = {
  workload: makeProvider("workload"),
  secret: makeProvider("secret"),
  policy: makeProvider("policy"),
  pkiRole: makeProvider("pkiRole"),
  sshRole: makeProvider("sshRole"),
  jwtRole: makeProvider("jwtRole"),
  mount: makeProvider("mount"),
  authMount: makeProvider("authMount"),
  service: makeServiceProvider(),
};

// The Pulumi-input forms below are spelled out (not mapped types): Pulumi's schema analyzer infers the
// other-language SDKs from these declarations and accepts only plain interfaces.

/**
 * How the resources reach the runtime: the one connection type (runtime/client/connection.ts
 * RuntimeConnection) as Pulumi inputs. A `Vhsm` component's outputs fit here.
 */
export interface RuntimeConnectionArgs {
  /** Base URL of the runtime, e.g. https://127.0.0.1:8200. */
  url: pulumi.Input<string>;
  /** An operator token allowed to manage workloads/secrets/roles (stored only encrypted). Or `deployer`. */
  token?: pulumi.Input<string>;
  /** The deployer credential of a `Vhsm` (`vhsm.deployer`): no token in state, a short login per run. */
  deployer?: pulumi.Input<DeployerAuthArgs>;
  /** PEM of the runtime CA for https URLs. */
  caPem?: pulumi.Input<string>;
  /** SHA-256 (hex) of the runtime CA certificate: pins it (with caPem they must match). */
  caFingerprint?: pulumi.Input<string>;
  /**
   * Attested TLS: the runtime must prove (GET /v1/sys/attestation) that it runs one of these measurements and
   * holds the TLS key of the connection; verified before anything is sent (docs/trust-bootstrap.md).
   */
  attestation?: pulumi.Input<RuntimeAttestationArgs>;
}

/** A simulated platform's anchor (anchor.json; LocalPlatform's `anchor` output) as Pulumi inputs. */
export interface SimulatedPlatformAnchorArgs {
  product: pulumi.Input<string>;
  ark_sha256: pulumi.Input<string>;
  ca_certs: pulumi.Input<pulumi.Input<string>[]>;
}

/** runtime/client/connection.ts RuntimeAttestation as Pulumi inputs. */
export interface RuntimeAttestationArgs {
  /** SEV-SNP MEASUREMENT values the runtime may run (48-byte hex). */
  snpMeasurements?: pulumi.Input<pulumi.Input<string>[]>;
  /** TDX MRTD values the runtime may run (48-byte hex). */
  tdxMrTd?: pulumi.Input<pulumi.Input<string>[]>;
  /** SEV-SNP HOST_DATA (32-byte hex) the runtime VM was launched with: binds the instance, not just the image. */
  snpHostData?: pulumi.Input<string>;
  /** Accept any instance of the image (no HOST_DATA): only where the platform cannot set HOST_DATA. */
  allowAnyInstance?: pulumi.Input<boolean>;
  /** The runtime instance id (32-byte hex) learnt at its attested bootstrap: a twin of the runtime is refused. */
  runtimeInstanceId?: pulumi.Input<string>;
  /** Further appraisal policy as JSON. */
  policy?: pulumi.Input<string>;
  /** Simulated SEV-SNP anchors (tests and the local stack only). */
  simulatedAnchors?: pulumi.Input<pulumi.Input<SimulatedPlatformAnchorArgs>[]>;
  /** AMD KDS: "online" (default), "offline" or "off". */
  kds?: pulumi.Input<string>;
  /** Every replica URL; each is verified before anything is sent to any. */
  replicaUrls?: pulumi.Input<pulumi.Input<string>[]>;
}

/** An SSH target (provider/ssh-target.ts SshTarget) as Pulumi inputs. */
export interface SshTargetArgs {
  host: pulumi.Input<string>;
  /** Default 22. */
  port?: pulumi.Input<number>;
  /** Default "root". */
  user?: pulumi.Input<string>;
  /** OpenSSH private key; must be a Pulumi secret, stored only encrypted in state. */
  privateKey: pulumi.Input<string>;
  /**
   * known_hosts line(s) pinning the host key; without it the key is accepted on first use. Refused where
   * the transport cannot pin (@pulumi/command hosts).
   */
  hostKey?: pulumi.Input<string>;
}

/** Compile-time check that the input forms carry exactly the plain types' fields. */
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false;
const inputFormsMatch: [
  SameKeys<RuntimeConnectionArgs, RuntimeConnection>,
  SameKeys<SshTargetArgs, SshTarget>,
  SameKeys<RuntimeAttestationArgs, RuntimeAttestation>,
] = [true, true, true];
void inputFormsMatch;

/** The connection as one secret input: the token must never reach the state file in clear. */
function secretConnection(c: pulumi.Input<RuntimeConnectionArgs>): pulumi.Output<RuntimeConnection> {
  return pulumi.secret(
    pulumi.output(c).apply((v) => {
      const out: RuntimeConnection = { url: v.url };
      if (v.token) out.token = v.token;
      if (v.deployer)
        out.deployer = {
          mount: v.deployer.mount,
          role: v.deployer.role,
          keyFile: v.deployer.keyFile,
          ...(v.deployer.audience ? { audience: v.deployer.audience } : {}),
        };
      if (v.caPem) out.caPem = v.caPem;
      if (v.caFingerprint) out.caFingerprint = v.caFingerprint;
      if (v.attestation) out.attestation = v.attestation as RuntimeAttestation;
      return out;
    }),
  );
}

function withSecretOutputs(
  opts: pulumi.CustomResourceOptions | undefined,
  names: string[],
): pulumi.CustomResourceOptions {
  return { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), ...names] };
}

export interface WorkloadTdxReference {
  /** MRTD, 48 bytes hex. */
  mrtd: pulumi.Input<string>;
  /** RTMR0..3, 48 bytes hex each (all four or none). */
  rtmrs?: pulumi.Input<pulumi.Input<string>[]>;
}

export interface WorkloadPkiArgs {
  /** "<pki mount>/<role>", e.g. "pki/web". */
  role: pulumi.Input<string>;
  commonName: pulumi.Input<string>;
  altNames?: pulumi.Input<pulumi.Input<string>[]>;
  ipSans?: pulumi.Input<pulumi.Input<string>[]>;
  ttl?: pulumi.Input<string>;
}

export interface WorkloadSshArgs {
  /** "<ssh mount>/<role>", e.g. "ssh/host". */
  role: pulumi.Input<string>;
  /** Host names for the host certificate. */
  principals: pulumi.Input<pulumi.Input<string>[]>;
  ttl?: pulumi.Input<string>;
}

export interface WorkloadArgs {
  connection: pulumi.Input<RuntimeConnectionArgs>;
  /** Workload id (1-63 of [A-Za-z0-9._-]); the VM's enclaivelet presents it. */
  workloadId: pulumi.Input<string>;
  description?: pulumi.Input<string>;
  /** Evidence platforms it may attest from: snp, tdx, azure-snp, azure-tdx (empty = any). */
  platforms?: pulumi.Input<pulumi.Input<string>[]>;
  /** Allowed SEV-SNP launch measurements (48 bytes hex). */
  snpMeasurements?: pulumi.Input<pulumi.Input<string>[]>;
  /** Allowed TDX MRTD (+RTMR) combinations. */
  tdx?: pulumi.Input<pulumi.Input<WorkloadTdxReference>[]>;
  /** Azure CVM facts: claim name → expected value. */
  azure?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** SHA-256 (hex) of the user-data the deployment rendered: a guest whose agent measured other user-data
   *  (changed or injected) is refused. Only for images that run the agent before cloud-init (`--user-data`). */
  userDataSha256?: pulumi.Input<string>;
  /** Appraisal policy (runtime/protocol/policy.ts; checked by the runtime's parsePolicy). */
  policy?: pulumi.Input<AppraisalPolicy>;
  /** Full KV v2 paths the workload may read once attested, e.g. "secret/data/web/db". */
  kvSecrets?: pulumi.Input<pulumi.Input<string>[]>;
  /** TLS certificate issued at provisioning. */
  pki?: pulumi.Input<WorkloadPkiArgs>;
  /** SSH host certificate issued at provisioning. */
  ssh?: pulumi.Input<WorkloadSshArgs>;
  /** Release a disk-encryption key after attestation. */
  diskKey?: pulumi.Input<boolean>;
  /** Workload-token lifetime, e.g. "10m". */
  tokenTtl?: pulumi.Input<string>;
  /** Refuse classical-only attestations: released secrets are sealed with hybrid ML-KEM-768 + P-384. */
  requirePqHybrid?: pulumi.Input<boolean>;
  /** This workload's token algorithm: "ES384", "EdDSA" or "ML-DSA-65" (default: the Nitride config's). */
  tokenAlgorithm?: pulumi.Input<string>;
}

/** A Nitride workload definition at /v1/nitride/workloads/:id. */
export class Workload extends pulumi.dynamic.Resource {
  declare readonly workloadId: pulumi.Output<string>;
  declare readonly platforms: pulumi.Output<string[]>;
  declare readonly snpMeasurements: pulumi.Output<string[] | undefined>;
  declare readonly kvSecrets: pulumi.Output<string[] | undefined>;
  /** Definition version the runtime assigned (increments on every write). */
  declare readonly version: pulumi.Output<number>;
  /** SHA-256 over platforms, reference values and policy, as the runtime computes it. */
  declare readonly policyHash: pulumi.Output<string>;
  /** Name of the ACL policy the runtime keeps for this workload (grant it through a JwtRole). */
  declare readonly aclPolicy: pulumi.Output<string>;

  constructor(name: string, args: WorkloadArgs, opts?: pulumi.CustomResourceOptions) {
    const { connection, ...rest } = args;
    super(
      providers.workload,
      name,
      {
        ...rest,
        connection: secretConnection(connection),
        version: undefined,
        policyHash: undefined,
        aclPolicy: undefined,
      },
      withSecretOutputs(opts, ["connection"]),
      "buckypaper",
      "Workload",
    );
  }
}

export interface SecretArgs {
  connection: pulumi.Input<RuntimeConnectionArgs>;
  /** KV v2 mount (default "secret"). */
  mount?: pulumi.Input<string>;
  /** Path under the mount, e.g. "apps/web". */
  path: pulumi.Input<string>;
  /** Key → value. Values must be Pulumi secrets (config.requireSecret / pulumi.secret). */
  data: Record<string, pulumi.Input<string>> | pulumi.Output<Record<string, string>>;
}

/** A KV v2 secret; its values stay Pulumi secrets in the program, in previews and in state. */
export class Secret extends pulumi.dynamic.Resource {
  declare readonly mount: pulumi.Output<string>;
  declare readonly path: pulumi.Output<string>;
  declare readonly data: pulumi.Output<Record<string, string>>;
  /** KV version the runtime stored. */
  declare readonly version: pulumi.Output<number | undefined>;

  constructor(name: string, args: SecretArgs, opts?: pulumi.CustomResourceOptions) {
    if (!pulumi.Output.isInstance(args.data)) {
      for (const [k, v] of Object.entries(args.data ?? {})) {
        if (typeof v === "string") {
          throw new pulumi.ResourceError(
            `Secret ${name}: data.${k} is a plain string; pass a Pulumi secret (pulumi.secret(...) or config.requireSecret(...))`,
            undefined,
          );
        }
      }
    }
    const { connection, data, ...rest } = args;
    super(
      providers.secret,
      name,
      {
        ...rest,
        data: pulumi.secret(pulumi.output(data)),
        connection: secretConnection(connection),
        version: undefined,
      },
      withSecretOutputs(opts, ["connection", "data"]),
      "buckypaper",
      "Secret",
    );
  }
}

export interface PolicyArgs {
  connection: pulumi.Input<RuntimeConnectionArgs>;
  name: pulumi.Input<string>;
  /** ACL policy in HCL. */
  policy: pulumi.Input<string>;
}

/** An ACL policy at /v1/sys/policies/acl/:name. */
export class Policy extends pulumi.dynamic.Resource {
  declare readonly name: pulumi.Output<string>;
  declare readonly policy: pulumi.Output<string>;
  constructor(name: string, args: PolicyArgs, opts?: pulumi.CustomResourceOptions) {
    const { connection, ...rest } = args;
    super(
      providers.policy,
      name,
      { ...rest, connection: secretConnection(connection) },
      withSecretOutputs(opts, ["connection"]),
      "buckypaper",
      "Policy",
    );
  }
}

export interface PkiRoleArgs {
  connection: pulumi.Input<RuntimeConnectionArgs>;
  /** PKI mount (default "pki"). */
  mount?: pulumi.Input<string>;
  name: pulumi.Input<string>;
  allowedDomains?: pulumi.Input<pulumi.Input<string>[]>;
  allowSubdomains?: pulumi.Input<boolean>;
  allowBareDomains?: pulumi.Input<boolean>;
  allowIpSans?: pulumi.Input<boolean>;
  allowLocalhost?: pulumi.Input<boolean>;
  serverFlag?: pulumi.Input<boolean>;
  clientFlag?: pulumi.Input<boolean>;
  keyType?: pulumi.Input<string>;
  keyBits?: pulumi.Input<number>;
  /** Durations as Vault spells them ("72h") or seconds. */
  ttl?: pulumi.Input<string | number>;
  maxTtl?: pulumi.Input<string | number>;
}

/** A PKI role at /v1/<mount>/roles/:name (the TLS certificates a workload may be issued). */
export class PkiRole extends pulumi.dynamic.Resource {
  declare readonly mount: pulumi.Output<string>;
  declare readonly name: pulumi.Output<string>;
  constructor(name: string, args: PkiRoleArgs, opts?: pulumi.CustomResourceOptions) {
    const { connection, ...rest } = args;
    super(
      providers.pkiRole,
      name,
      { ...rest, connection: secretConnection(connection) },
      withSecretOutputs(opts, ["connection"]),
      "buckypaper",
      "PkiRole",
    );
  }
}

export interface SshRoleArgs {
  connection: pulumi.Input<RuntimeConnectionArgs>;
  /** SSH mount (default "ssh"). */
  mount?: pulumi.Input<string>;
  name: pulumi.Input<string>;
  /** Default "ca" (certificate signing). */
  keyType?: pulumi.Input<string>;
  allowUserCertificates?: pulumi.Input<boolean>;
  allowHostCertificates?: pulumi.Input<boolean>;
  /** Comma-separated, as Vault takes it. */
  allowedUsers?: pulumi.Input<string>;
  defaultUser?: pulumi.Input<string>;
  allowedDomains?: pulumi.Input<string>;
  allowSubdomains?: pulumi.Input<boolean>;
  allowBareDomains?: pulumi.Input<boolean>;
  defaultExtensions?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  allowedExtensions?: pulumi.Input<string>;
  ttl?: pulumi.Input<string | number>;
  maxTtl?: pulumi.Input<string | number>;
}

/** An SSH CA role at /v1/<mount>/roles/:name (host/user certificates for the VM). */
export class SshRole extends pulumi.dynamic.Resource {
  declare readonly mount: pulumi.Output<string>;
  declare readonly name: pulumi.Output<string>;
  constructor(name: string, args: SshRoleArgs, opts?: pulumi.CustomResourceOptions) {
    const { connection, ...rest } = args;
    super(
      providers.sshRole,
      name,
      { ...rest, connection: secretConnection(connection) },
      withSecretOutputs(opts, ["connection"]),
      "buckypaper",
      "SshRole",
    );
  }
}

export interface JwtRoleArgs {
  connection: pulumi.Input<RuntimeConnectionArgs>;
  /** JWT auth mount (default "jwt"): the role lives at auth/<mount>/role/<name>. */
  mount?: pulumi.Input<string>;
  name: pulumi.Input<string>;
  roleType?: pulumi.Input<string>;
  boundAudiences?: pulumi.Input<pulumi.Input<string>[]>;
  /** Default "sub" (the Nitride token's subject is the workload id). */
  userClaim?: pulumi.Input<string>;
  boundSubject?: pulumi.Input<string>;
  boundClaims?: pulumi.Input<Record<string, unknown>>;
  boundClaimsType?: pulumi.Input<string>;
  claimMappings?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  tokenPolicies?: pulumi.Input<pulumi.Input<string>[]>;
  tokenTtl?: pulumi.Input<string | number>;
  tokenMaxTtl?: pulumi.Input<string | number>;
}

/** A JWT auth role that turns a Nitride workload token into a runtime token with given policies. */
export class JwtRole extends pulumi.dynamic.Resource {
  declare readonly mount: pulumi.Output<string>;
  declare readonly name: pulumi.Output<string>;
  constructor(name: string, args: JwtRoleArgs, opts?: pulumi.CustomResourceOptions) {
    const { connection, ...rest } = args;
    super(
      providers.jwtRole,
      name,
      { ...rest, connection: secretConnection(connection) },
      withSecretOutputs(opts, ["connection"]),
      "buckypaper",
      "JwtRole",
    );
  }
}

export interface MountArgs {
  connection: pulumi.Input<RuntimeConnectionArgs>;
  /**
   * Mount path without slashes at the ends, e.g. "pki" or "secret". With the deployer credential: one
   * segment, type kv/pki/ssh/transit (auth: jwt), never "nitride" (docs/security.md, bk-deployer policy).
   */
  path: pulumi.Input<string>;
  /** Engine type: kv (version 2), pki, ssh, transit (Mount); jwt (AuthMount). */
  type: pulumi.Input<string>;
  options?: pulumi.Input<Record<string, pulumi.Input<string>>>;
}

/** A secrets engine mounted at /v1/<path> (sys/mounts). Any change replaces it, as in Vault. */
export class Mount extends pulumi.dynamic.Resource {
  declare readonly path: pulumi.Output<string>;
  declare readonly type: pulumi.Output<string>;
  constructor(name: string, args: MountArgs, opts?: pulumi.CustomResourceOptions) {
    const { connection, ...rest } = args;
    super(
      providers.mount,
      name,
      { ...rest, connection: secretConnection(connection) },
      withSecretOutputs(opts, ["connection"]),
      "buckypaper",
      "Mount",
    );
  }
}

/** An auth method enabled at /v1/auth/<path> (sys/auth), e.g. the jwt method Nitride tokens log in with. */
export class AuthMount extends pulumi.dynamic.Resource {
  declare readonly path: pulumi.Output<string>;
  declare readonly type: pulumi.Output<string>;
  constructor(name: string, args: MountArgs, opts?: pulumi.CustomResourceOptions) {
    const { connection, ...rest } = args;
    super(
      providers.authMount,
      name,
      { ...rest, connection: secretConnection(connection) },
      withSecretOutputs(opts, ["connection"]),
      "buckypaper",
      "AuthMount",
    );
  }
}

/** The runtime service's host: the one SSH target type (name kept for the SDKs generated from it). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- its own name keeps the generated SDK type name
export interface RuntimeServiceSshArgs extends SshTargetArgs {}

export interface RuntimeServiceArgs extends RuntimeBootstrapArgs {
  /** Absent: run on this machine. */
  ssh?: pulumi.Input<SshTargetArgs>;
  /** Absolute directory for the runtime's config, data, log and pid file. */
  stateDir: pulumi.Input<string>;
  /** Shell words that start the server; "{config}" becomes the config file path. */
  serverCommand: pulumi.Input<pulumi.Input<string>[]>;
  /** Runtime config file content. */
  config: pulumi.Input<string>;
  /** URL the runtime answers on, as the deploying machine reaches it. */
  url: pulumi.Input<string>;
}

/** How a runtime is bootstrapped at init (key shares, deployer credential, recovery keys, root writes): the same
 * for the runtime service process and the runtime guest (provider/vhsm-guest.ts). */
export interface RuntimeBootstrapArgs {
  keyShares?: pulumi.Input<number>;
  keyThreshold?: pulumi.Input<number>;
  /** Keep the root token and plaintext unseal keys as (secret) outputs, and revoke nothing. Not recommended. */
  insecureKeepRootTokenInState?: pulumi.Input<boolean>;
  /** Absolute path of the deployer's private key file, written 0600 at init. */
  deployerKeyFile?: pulumi.Input<string>;
  /** The deployer's own Ed25519 public key (PEM; private key in BUCKYPAPER_DEPLOYER_KEY): no file is written. */
  deployerPublicKey?: pulumi.Input<string>;
  /** Changing this value rotates the deployer key on the next `pulumi up`. */
  deployerKeyRotation?: pulumi.Input<string>;
  /** Operators' public JWKs (JSON), one per key share. */
  recoveryKeys?: pulumi.Input<pulumi.Input<string>[]>;
  /** Without recoveryKeys: where the generated recovery key (private JWK) is written, 0600. */
  localRecoveryKeyFile?: pulumi.Input<string>;
  /** Writes only root may make, applied at init before the root token is revoked. */
  rootWrites?: pulumi.Input<pulumi.Input<RuntimeRootWriteArgs>[]>;
}

/** One write made with the root token during bootstrap (e.g. Nitride trust configuration). */
export interface RuntimeRootWriteArgs {
  path: pulumi.Input<string>;
  body: pulumi.Input<Record<string, unknown>>;
}

/** Where a deployment finds its deployer credential (runtime/client/deployer.ts DeployerAuth). */
export interface DeployerAuthArgs {
  /** JWT auth mount of the deployer role. */
  mount: pulumi.Input<string>;
  role: pulumi.Input<string>;
  /** Absolute path of the deployer's PEM private key (0600); BUCKYPAPER_DEPLOYER_KEY takes precedence. */
  keyFile: pulumi.Input<string>;
  /** The runtime's deployer JWT audience (`buckypaper-deployer:<cluster id>`); absent: the shared one of runtimes bootstrapped before. */
  audience?: pulumi.Input<string>;
}

/**
 * The runtime server process, started, initialised and unsealed (used by the Vhsm component). By
 * default the root token is revoked after setting up the deployer credential and the key shares are
 * output only encrypted to operator keys; `pulumi refresh` notices a stopped or sealed server and the
 * next `pulumi up` restarts it and unseals it with the recovery keys on this machine (or asks operators).
 */
export class RuntimeService extends pulumi.dynamic.Resource {
  declare readonly url: pulumi.Output<string>;
  declare readonly caPem: pulumi.Output<string>;
  declare readonly caFingerprint: pulumi.Output<string>;
  /** Only with insecureKeepRootTokenInState. */
  declare readonly rootToken: pulumi.Output<string | undefined>;
  /** Only with insecureKeepRootTokenInState. */
  declare readonly unsealKeys: pulumi.Output<string[] | undefined>;
  declare readonly deployer: pulumi.Output<DeployerAuthArgs | undefined>;
  /** What a JWT role binds to admit the runtime's Nitride workload tokens (its per-runtime audience). */
  declare readonly workloadAudience: pulumi.Output<string | undefined>;
  /** Each key share as a JWE to one operator key (ciphertext). */
  declare readonly recoveryShares: pulumi.Output<string[] | undefined>;
  /** Check value of the unseal key recoveryShares are shares of (the runtime's sys/seal-status unseal_key_check). */
  declare readonly unsealKeyCheck: pulumi.Output<string | undefined>;
  /** Shares a rekey replaced (provider/recovery-freshness.ts). Secret: with the opt-out they hold plain keys. */
  declare readonly retiredRecoveryShares: pulumi.Output<unknown[] | undefined>;
  declare readonly running: pulumi.Output<boolean>;

  constructor(name: string, args: RuntimeServiceArgs, opts?: pulumi.CustomResourceOptions) {
    const { ssh, ...rest } = args;
    super(
      providers.service,
      name,
      {
        ...rest,
        ssh: ssh === undefined ? undefined : pulumi.secret(ssh),
        running: true,
        rootToken: undefined,
        unsealKeys: undefined,
        deployer: undefined,
        workloadAudience: undefined,
        recoveryShares: undefined,
        unsealKeyCheck: undefined,
        retiredRecoveryShares: undefined,
        caPem: undefined,
        caFingerprint: undefined,
      },
      withSecretOutputs(opts, ["rootToken", "unsealKeys", "ssh", "retiredRecoveryShares"]),
      "buckypaper",
      "RuntimeService",
    );
  }
}
