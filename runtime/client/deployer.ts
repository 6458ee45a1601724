// The deployer credential: how `pulumi up` (and the CLI) authenticate to a runtime whose root token was
// revoked after bootstrap. Vault's idiom for machine credentials that never travel: a JWT auth role
// bound to one Ed25519 public key. The private key stays outside Pulumi state — a 0600 file under the
// user's config directory, or the BUCKYPAPER_DEPLOYER_KEY variable (a CI secret) — and each run signs a
// one-minute JWT, logs in and gets a short-lived token limited by the `bk-deployer` policy. Nothing
// long-lived is ever sent over the wire or stored: the JWT expires in a minute, the token in minutes.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomUUID,
  type KeyObject,
} from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { SignJWT } from "jose";

/** Where a deployment finds its deployer credential (no secret: a mount, a role and a file name). */
export interface DeployerAuth {
  /** JWT auth mount of the deployer role (default "bk-deployer"). */
  mount: string;
  /** Role to log in with (default "deployer"). */
  role: string;
  /** Absolute path of the PEM private key (0600). BUCKYPAPER_DEPLOYER_KEY, when set, is used instead. */
  keyFile: string;
  /**
   * The JWT's aud: this runtime's own (`buckypaper-deployer:<cluster id>`, bound by its deployer role at
   * bootstrap), so a JWT signed for one runtime is refused by every other one using the same key.
   * Absent for runtimes bootstrapped before per-runtime audiences: DEPLOYER_AUDIENCE.
   */
  audience?: string;
}

export const DEPLOYER_MOUNT = "bk-deployer";
export const DEPLOYER_ROLE = "deployer";
export const DEPLOYER_POLICY = "bk-deployer";
/** The JWT's sub, and the prefix of its aud (`buckypaper-deployer:<cluster id>`): the deployer role binds both. */
export const DEPLOYER_AUDIENCE = "buckypaper-deployer";

/** The deployer audience of the runtime with this cluster id. */
export function deployerAudience(clusterId: string): string {
  return `${DEPLOYER_AUDIENCE}:${clusterId}`;
}
export const DEPLOYER_SUBJECT = "deployer";
/** Environment variable holding the deployer's PEM private key (takes precedence over keyFile). */
export const DEPLOYER_KEY_ENV = "BUCKYPAPER_DEPLOYER_KEY";
/** Lifetime of the JWT a run signs (seconds): only long enough for the login call. */
const JWT_LIFETIME = 60;

export class DeployerCredentialError extends Error {
  override name = "DeployerCredentialError";
}

/** ${XDG_CONFIG_HOME:-~/.config}/buckypaper: where the kit keeps per-user key files (0700). */
export function userConfigDir(): string {
  const base = process.env.XDG_CONFIG_HOME || path.join(homedir(), ".config");
  return path.join(base, "buckypaper");
}

/** A fresh Ed25519 key pair: PKCS#8 PEM private key and SPKI PEM public key. */
export function generateDeployerKey(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

/** The public PEM of a private PEM (for BUCKYPAPER_DEPLOYER_KEY given by the user). */
export function publicPemOf(privatePem: string): string {
  return createPublicKey(parsePrivate(privatePem, DEPLOYER_KEY_ENV)).export({ type: "spki", format: "pem" }).toString();
}

/** SHA-256 (hex, first 16 bytes) of the SPKI public key: names a key in messages and caches. */
export function keyId(publicPem: string): string {
  return createHash("sha256")
    .update(createPublicKey(publicPem).export({ type: "spki", format: "der" }))
    .digest("hex")
    .slice(0, 32);
}

function parsePrivate(pem: string, where: string): KeyObject {
  let k: KeyObject;
  try {
    k = createPrivateKey(pem);
  } catch {
    throw new DeployerCredentialError(`${where}: not a PEM private key`);
  }
  if (k.asymmetricKeyType !== "ed25519") throw new DeployerCredentialError(`${where}: must be an Ed25519 key`);
  return k;
}

/**
 * Writes a private key file atomically with mode 0600 in a 0700 directory (a half-written or briefly
 * world-readable key is never on disk).
 */
export function writePrivateFile(file: string, content: string): void {
  if (!path.isAbsolute(file)) throw new DeployerCredentialError(`key file '${file}' must be an absolute path`);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode: 0o600, flag: "wx" });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/** Reads a private key file, refusing one that group or others can read (as OpenSSH does). */
export function readPrivateFile(file: string, what: string): string {
  let st;
  try {
    st = statSync(file);
  } catch {
    throw new DeployerCredentialError(`${what} '${file}' does not exist on this machine`);
  }
  if ((st.mode & 0o077) !== 0)
    throw new DeployerCredentialError(
      `${what} '${file}' is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
    );
  return readFileSync(file, "utf8");
}

/** The deployer's private key: BUCKYPAPER_DEPLOYER_KEY if set, else the key file. */
export function loadDeployerKey(auth: DeployerAuth): KeyObject {
  const env = process.env[DEPLOYER_KEY_ENV];
  if (env && env.trim() !== "") return parsePrivate(env, DEPLOYER_KEY_ENV);
  return parsePrivate(
    readPrivateFile(auth.keyFile, `deployer key file (or set ${DEPLOYER_KEY_ENV})`),
    `deployer key file ${auth.keyFile}`,
  );
}

/** A one-minute JWT for the deployer role of the runtime whose audience this is. */
export async function signDeployerJwt(
  key: KeyObject,
  now = Math.floor(Date.now() / 1000),
  audience = DEPLOYER_AUDIENCE,
): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: "EdDSA", typ: "JWT" })
    .setSubject(DEPLOYER_SUBJECT)
    .setAudience(audience)
    .setIssuedAt(now)
    .setNotBefore(now - 5)
    .setExpirationTime(now + JWT_LIFETIME)
    .setJti(randomUUID())
    .sign(key);
}

/** Performs the HTTP login: POST auth/<mount>/login {role, jwt} → client token and its TTL (seconds). */
export type LoginCall = (
  path: string,
  body: { role: string; jwt: string },
) => Promise<{ client_token?: string; lease_duration?: number } | undefined>;

const cache = new Map<string, { token: string; until: number }>();

/**
 * A deployer token for this runtime, logging in when there is none or it has less than two minutes left.
 * Cached per process (one `pulumi up` runs its dynamic providers in one process: one login per run).
 */
export async function deployerToken(url: string, auth: DeployerAuth, login: LoginCall): Promise<string> {
  const key = loadDeployerKey(auth);
  const id = `${url}|${auth.mount}|${auth.role}|${keyId(createPublicKey(key).export({ type: "spki", format: "pem" }).toString())}`;
  const hit = cache.get(id);
  if (hit && hit.until - Date.now() > 120_000) return hit.token;
  const jwt = await signDeployerJwt(key, undefined, auth.audience ?? DEPLOYER_AUDIENCE);
  const r = await login(`auth/${auth.mount}/login`, { role: auth.role, jwt });
  if (!r?.client_token) throw new DeployerCredentialError(`deployer login at ${url} returned no token`);
  cache.set(id, { token: r.client_token, until: Date.now() + (r.lease_duration ?? 60) * 1000 });
  return r.client_token;
}

/** Drops cached tokens (after a key rotation, or in tests). */
export function forgetDeployerTokens(): void {
  cache.clear();
}
