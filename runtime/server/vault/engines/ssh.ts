// SSH CA secret engine (Vault's "ssh" engine, CA mode only): an Ed25519 CA key, roles that bound who
// may get which certificates, and sign/issue of OpenSSH user and host certificates.
import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "../backend.js";
import { jsonBytes, optBool, optList, optString, optStringMap, readJson } from "../fields.js";
import { FieldData, PathRouter, segment, type FieldSchemas, type TableBackend } from "../framework.js";
import { parseOptionalDuration as parseDuration } from "../duration.js";
import {
  ed25519PublicBlob,
  generateEd25519,
  loadEd25519,
  parsePublicKeyLine,
  publicKeyLine,
  signCertificate,
  SshFormatError,
  type SshPublicKey,
} from "./ssh-wire.js";

interface CaConfig {
  private_key: string;
  public_key: string;
}
interface SshRole {
  key_type: "ca";
  allow_user_certificates: boolean;
  allow_host_certificates: boolean;
  allowed_users: string[];
  default_user: string;
  allowed_domains: string[];
  allow_subdomains: boolean;
  allow_bare_domains: boolean;
  allowed_extensions: string[];
  default_extensions: Record<string, string>;
  allowed_critical_options: string[];
  default_critical_options: Record<string, string>;
  allow_user_key_ids: boolean;
  ttl: number;
  max_ttl: number;
}

/** Vault backdates certificates so small clock skew does not reject them. */
const NOT_BEFORE_SKEW_S = 30;
const ROLE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function roleName(f: FieldData): string {
  const name = f.string("name")!;
  if (!ROLE_RE.test(name)) throw new LogicalError(400, "name: invalid role name");
  return name;
}

async function listRoles(req: LogicalRequest): Promise<LogicalResponse> {
  const keys = await req.storage.list("roles/");
  if (keys.length === 0) throw new LogicalError(404, "no roles");
  return { data: { keys } };
}

const unsupported = async (_?: unknown): Promise<never> => {
  throw new LogicalError(405, "unsupported operation");
};

const ROLE_FIELDS: FieldSchemas = {
  name: { type: "string", description: "role name" },
  key_type: { type: "string", default: "ca", description: 'only "ca"' },
  allow_user_certificates: { type: "bool", default: false, description: "may sign user certificates" },
  allow_host_certificates: { type: "bool", default: false, description: "may sign host certificates" },
  allowed_users: { type: "comma-string-slice", description: 'user principals allowed ("*": any)' },
  default_user: { type: "string", description: "principal when the request names none" },
  allowed_domains: { type: "comma-string-slice", description: "host principals allowed" },
  allow_subdomains: { type: "bool", default: false, description: "subdomains of allowed_domains" },
  allow_bare_domains: { type: "bool", default: false, description: "allowed_domains themselves" },
  allowed_extensions: { type: "comma-string-slice", description: 'extensions a request may set ("*": any)' },
  default_extensions: { type: "kv-pairs", description: "extensions when the request sets none" },
  allowed_critical_options: { type: "comma-string-slice", description: "critical options a request may set" },
  default_critical_options: { type: "kv-pairs", description: "critical options when the request sets none" },
  allow_user_key_ids: { type: "bool", default: false, description: "requests may set key_id" },
  ttl: { type: "duration", description: "default certificate lifetime" },
  max_ttl: { type: "duration", description: "longest certificate lifetime" },
};

const SIGN_FIELDS: FieldSchemas = {
  role: { type: "string", description: "role name" },
  cert_type: { type: "string", default: "user", description: '"user" or "host"' },
  valid_principals: { type: "comma-string-slice", description: "principals of the certificate" },
  ttl: { type: "duration", description: "certificate lifetime" },
  extensions: { type: "kv-pairs", description: "extensions (user certificates)" },
  critical_options: { type: "kv-pairs", description: "critical options" },
  key_id: { type: "string", description: "key id (if the role allows it)" },
};

function roleFrom(f: FieldData): SshRole {
  const data = f.values;
  const keyType = optString(data, "key_type") ?? "ca";
  if (keyType !== "ca") throw new LogicalError(400, `key_type: only "ca" is supported`);
  return {
    key_type: "ca",
    allow_user_certificates: optBool(data, "allow_user_certificates", false),
    allow_host_certificates: optBool(data, "allow_host_certificates", false),
    allowed_users: optList(data, "allowed_users"),
    default_user: optString(data, "default_user") ?? "",
    allowed_domains: optList(data, "allowed_domains"),
    allow_subdomains: optBool(data, "allow_subdomains", false),
    allow_bare_domains: optBool(data, "allow_bare_domains", false),
    allowed_extensions: optList(data, "allowed_extensions"),
    default_extensions: optStringMap(data, "default_extensions"),
    allowed_critical_options: optList(data, "allowed_critical_options"),
    default_critical_options: optStringMap(data, "default_critical_options"),
    allow_user_key_ids: optBool(data, "allow_user_key_ids", false),
    ttl: parseDuration(data.ttl, "ttl") ?? 0,
    max_ttl: parseDuration(data.max_ttl, "max_ttl") ?? 0,
  };
}

function hostAllowed(role: SshRole, host: string): boolean {
  return role.allowed_domains.some(
    (d) =>
      d === "*" ||
      (role.allow_bare_domains && host === d) ||
      (role.allow_subdomains && host.endsWith(`.${d}`) && host.length > d.length + 1),
  );
}

function checkOptions(
  requested: Record<string, string>,
  allowed: string[],
  defaults: Record<string, string>,
  field: string,
): Record<string, string> {
  if (Object.keys(requested).length === 0) return { ...defaults };
  for (const k of Object.keys(requested)) {
    if (!allowed.includes("*") && !allowed.includes(k))
      throw new LogicalError(400, `${field}: "${k}" is not allowed by the role`);
  }
  return requested;
}

export class SshBackend implements LogicalBackend, TableBackend {
  readonly type = "ssh";
  readonly unauthenticatedPaths = ["public_key"];

  readonly router = new PathRouter([
    {
      pattern: "config/ca",
      description: "the CA's Ed25519 signing key: generate or import, read the public half, delete",
      fields: {
        private_key: { type: "string", description: "Ed25519 private key, PKCS#8 PEM (else one is generated)" },
        generate_signing_key: { type: "bool", default: true, description: "generate the key when none is given" },
        key_type: { type: "string", default: "ssh-ed25519", description: "ssh-ed25519" },
      },
      operations: {
        read: async (req) => ({ data: { public_key: (await this.ca(req)).public_key } }),
        delete: async (req) => {
          await req.storage.delete("config/ca");
          return {};
        },
        update: (req, f) => this.configCa(req, f),
        list: unsupported,
        patch: unsupported,
      },
    },
    {
      pattern: "public_key",
      description: "the CA public key as an authorized_keys line (unauthenticated)",
      operations: {
        read: async (req) => {
          const ca = await this.ca(req);
          return {
            data: { http_content_type: "text/plain", http_raw_body: `${ca.public_key}\n`, http_status_code: 200 },
          };
        },
      },
    },
    {
      pattern: "roles",
      description: "role names",
      operations: { list: listRoles, read: listRoles },
    },
    {
      pattern: `roles/${segment("name")}`,
      description: "a role: which certificates, principals, extensions and TTLs it allows",
      fields: ROLE_FIELDS,
      // Vault's existence check: writing a new role needs `create`, changing one `update`.
      existenceCheck: async (req, f) => (await req.storage.get(`roles/${f.string("name")}`)) !== undefined,
      operations: {
        read: (req, f) => this.readRole(req, roleName(f)),
        update: async (req, f) => {
          const name = roleName(f);
          await req.storage.put(`roles/${name}`, jsonBytes(roleFrom(f)));
          return {};
        },
        delete: async (req, f) => {
          await req.storage.delete(`roles/${roleName(f)}`);
          return {};
        },
        list: async (_req, f) => unsupported(roleName(f)),
        patch: async (_req, f) => unsupported(roleName(f)),
      },
    },
    {
      pattern: `sign/${segment("role")}`,
      description: "sign a client-supplied public key",
      fields: {
        ...SIGN_FIELDS,
        public_key: { type: "string", required: true, description: "OpenSSH public key line" },
      },
      operations: {
        update: async (req, f) => {
          const { name, role } = await this.role(req, f);
          let subject: SshPublicKey;
          try {
            subject = parsePublicKeyLine(f.string("public_key")!);
          } catch (e) {
            if (e instanceof SshFormatError) throw new LogicalError(400, `public_key: ${e.message}`);
            throw e;
          }
          return { data: await this.sign(req, f, name, role, subject) };
        },
      },
    },
    {
      pattern: `issue/${segment("role")}`,
      description: "generate an Ed25519 key pair and sign it (the private key is returned once)",
      fields: SIGN_FIELDS,
      operations: {
        update: async (req, f) => {
          const { name, role } = await this.role(req, f);
          const generated = generateEd25519();
          const signed = await this.sign(req, f, name, role, parsePublicKeyLine(generated.publicKey));
          return {
            data: { ...signed, private_key: generated.privateKey, private_key_type: "ed25519" },
            secretKeys: ["private_key"],
          };
        },
      },
    },
  ]);

  existenceCheck(req: LogicalRequest): Promise<boolean> {
    return this.router.existenceCheck(req);
  }

  handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    return this.router.handle(req);
  }

  private async role(req: LogicalRequest, f: FieldData): Promise<{ name: string; role: SshRole }> {
    const name = f.string("role")!;
    const role = await readJson<SshRole>(req.storage, `roles/${name}`);
    if (!role) throw new LogicalError(400, `unknown role: ${name}`);
    return { name, role };
  }

  private async ca(req: LogicalRequest): Promise<CaConfig> {
    const ca = await readJson<CaConfig>(req.storage, "config/ca");
    if (!ca) throw new LogicalError(400, "no CA key configured (POST config/ca first)");
    return ca;
  }

  private async configCa(req: LogicalRequest, f: FieldData): Promise<LogicalResponse> {
    let pkcs8: string;
    const supplied = optString(f.values, "private_key");
    if (supplied) {
      try {
        pkcs8 = loadEd25519(supplied).export({ format: "pem", type: "pkcs8" }) as string;
      } catch {
        throw new LogicalError(400, "private_key: must be an Ed25519 private key in PKCS#8 PEM");
      }
    } else {
      if (!optBool(f.values, "generate_signing_key", true))
        throw new LogicalError(400, "private_key: missing (or set generate_signing_key)");
      const kt = optString(f.values, "key_type") ?? "ssh-ed25519";
      if (kt !== "ssh-ed25519" && kt !== "ed25519")
        throw new LogicalError(400, `key_type: only ssh-ed25519 CA keys are supported`);
      pkcs8 = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }) as string;
    }
    const public_key = publicKeyLine(ed25519PublicBlob(createPublicKey(pkcs8)));
    const written = await req.storage.transaction(async (tx) => {
      if (await tx.get("config/ca")) return false;
      await tx.put("config/ca", jsonBytes({ private_key: pkcs8, public_key } satisfies CaConfig));
      return true;
    });
    if (!written) throw new LogicalError(400, "keys are already configured; delete them before reconfiguring");
    return { data: { public_key } };
  }

  private async readRole(req: LogicalRequest, name: string): Promise<LogicalResponse> {
    const role = await readJson<SshRole>(req.storage, `roles/${name}`);
    if (!role) throw new LogicalError(404, `role not found: ${name}`);
    return {
      data: {
        ...role,
        allowed_users: role.allowed_users.join(","),
        allowed_domains: role.allowed_domains.join(","),
        allowed_extensions: role.allowed_extensions.join(","),
        allowed_critical_options: role.allowed_critical_options.join(","),
      },
    };
  }

  private async sign(
    req: LogicalRequest,
    f: FieldData,
    roleName: string,
    role: SshRole,
    subject: SshPublicKey,
  ): Promise<Record<string, unknown>> {
    const ca = await this.ca(req);
    const certType = optString(f.values, "cert_type") ?? "user";
    if (certType !== "user" && certType !== "host") throw new LogicalError(400, `cert_type: must be "user" or "host"`);
    if (certType === "user" && !role.allow_user_certificates)
      throw new LogicalError(400, "cert_type: user certificates are not allowed by the role");
    if (certType === "host" && !role.allow_host_certificates)
      throw new LogicalError(400, "cert_type: host certificates are not allowed by the role");

    let principals = optList(f.values, "valid_principals");
    if (certType === "user") {
      if (principals.length === 0 && role.default_user) principals = [role.default_user];
      for (const p of principals) {
        if (!role.allowed_users.includes("*") && !role.allowed_users.includes(p))
          throw new LogicalError(400, `valid_principals: "${p}" is not an allowed user`);
      }
    } else {
      for (const p of principals)
        if (!hostAllowed(role, p)) throw new LogicalError(400, `valid_principals: "${p}" is not an allowed domain`);
    }
    if (principals.length === 0) throw new LogicalError(400, "valid_principals: empty principals are not allowed");

    const { maxTtl: sysMax, defaultTtl } = req.system.ttls();
    const maxTtl = Math.min(role.max_ttl || sysMax, sysMax);
    const ttl = parseDuration(f.values.ttl, "ttl") ?? (role.ttl || defaultTtl);
    if (ttl > maxTtl) throw new LogicalError(400, `ttl: ${ttl}s exceeds the role's max_ttl of ${maxTtl}s`);

    const extensions =
      certType === "user"
        ? checkOptions(
            optStringMap(f.values, "extensions"),
            role.allowed_extensions,
            role.default_extensions,
            "extensions",
          )
        : {};
    const criticalOptions = checkOptions(
      optStringMap(f.values, "critical_options"),
      role.allowed_critical_options,
      role.default_critical_options,
      "critical_options",
    );

    const fingerprint = createHash("sha256").update(subject.blob).digest("hex");
    const requestedKeyId = optString(f.values, "key_id");
    if (requestedKeyId && !role.allow_user_key_ids)
      throw new LogicalError(400, "key_id: setting a key id is not allowed by the role");
    const keyId = requestedKeyId || `vault-${roleName}-${fingerprint}`;

    const now = BigInt(Math.floor(Date.now() / 1000));
    const serial = randomBytes(8).readBigUInt64BE() || 1n;
    const cert = signCertificate({
      subject,
      serial,
      certType,
      keyId,
      principals,
      validAfter: now - BigInt(NOT_BEFORE_SKEW_S),
      validBefore: now + BigInt(ttl),
      criticalOptions,
      extensions,
      caPrivateKey: loadEd25519(ca.private_key),
    });
    return {
      serial_number: serial.toString(16).padStart(16, "0"),
      signed_key: `${subject.type}-cert-v01@openssh.com ${cert.toString("base64")}\n`,
    };
  }
}
