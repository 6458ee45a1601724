// SSH CA secret engine (Vault's "ssh" engine, CA mode only): an Ed25519 CA key, roles that bound who
// may get which certificates, and sign/issue of OpenSSH user and host certificates.
import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "../backend.js";
import { jsonBytes, optBool, optList, optString, optStringMap, readJson, reqString } from "../fields.js";
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

function roleFrom(data: Record<string, unknown>): SshRole {
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

export class SshBackend implements LogicalBackend {
  readonly type = "ssh";
  readonly unauthenticatedPaths = ["public_key"];

  /** Vault's existence check: writing a new role needs `create`, changing one `update`. */
  async existenceCheck(req: LogicalRequest): Promise<boolean> {
    const m = /^roles\/([^/]+)$/.exec(req.path);
    return m ? (await req.storage.get(`roles/${m[1]}`)) !== undefined : true;
  }

  async handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    const op = req.operation;
    const [head, name, ...rest] = req.path.split("/");
    if (rest.length) return undefined;
    if (req.path === "config/ca") return this.configCa(req);
    if (req.path === "public_key" && op === "read") {
      const ca = await this.ca(req);
      return { data: { http_content_type: "text/plain", http_raw_body: `${ca.public_key}\n`, http_status_code: 200 } };
    }
    if (head === "roles" && (name === undefined || name === "") && (op === "list" || op === "read")) {
      const keys = await req.storage.list("roles/");
      if (keys.length === 0) throw new LogicalError(404, "no roles");
      return { data: { keys } };
    }
    if (head === "roles" && name) return this.roleCrud(req, name);
    if ((head === "sign" || head === "issue") && name && (op === "update" || op === "create")) {
      const role = await readJson<SshRole>(req.storage, `roles/${name}`);
      if (!role) throw new LogicalError(400, `unknown role: ${name}`);
      if (head === "sign") {
        let subject: SshPublicKey;
        try {
          subject = parsePublicKeyLine(reqString(req.data, "public_key"));
        } catch (e) {
          if (e instanceof SshFormatError) throw new LogicalError(400, `public_key: ${e.message}`);
          throw e;
        }
        return { data: await this.sign(req, name, role, subject) };
      }
      const generated = generateEd25519();
      const signed = await this.sign(req, name, role, parsePublicKeyLine(generated.publicKey));
      return {
        data: { ...signed, private_key: generated.privateKey, private_key_type: "ed25519" },
        secretKeys: ["private_key"],
      };
    }
    return undefined;
  }

  private async ca(req: LogicalRequest): Promise<CaConfig> {
    const ca = await readJson<CaConfig>(req.storage, "config/ca");
    if (!ca) throw new LogicalError(400, "no CA key configured (POST config/ca first)");
    return ca;
  }

  private async configCa(req: LogicalRequest): Promise<LogicalResponse> {
    switch (req.operation) {
      case "read":
        return { data: { public_key: (await this.ca(req)).public_key } };
      case "delete":
        await req.storage.delete("config/ca");
        return {};
      case "create":
      case "update": {
        let pkcs8: string;
        const supplied = optString(req.data, "private_key");
        if (supplied) {
          try {
            pkcs8 = loadEd25519(supplied).export({ format: "pem", type: "pkcs8" }) as string;
          } catch {
            throw new LogicalError(400, "private_key: must be an Ed25519 private key in PKCS#8 PEM");
          }
        } else {
          if (!optBool(req.data, "generate_signing_key", true))
            throw new LogicalError(400, "private_key: missing (or set generate_signing_key)");
          const kt = optString(req.data, "key_type") ?? "ssh-ed25519";
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
      default:
        throw new LogicalError(405, "unsupported operation");
    }
  }

  private async roleCrud(req: LogicalRequest, name: string): Promise<LogicalResponse> {
    if (!ROLE_RE.test(name)) throw new LogicalError(400, "name: invalid role name");
    switch (req.operation) {
      case "read": {
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
      case "create":
      case "update":
        await req.storage.put(`roles/${name}`, jsonBytes(roleFrom(req.data)));
        return {};
      case "delete":
        await req.storage.delete(`roles/${name}`);
        return {};
      default:
        throw new LogicalError(405, "unsupported operation");
    }
  }

  private async sign(
    req: LogicalRequest,
    roleName: string,
    role: SshRole,
    subject: SshPublicKey,
  ): Promise<Record<string, unknown>> {
    const ca = await this.ca(req);
    const certType = optString(req.data, "cert_type") ?? "user";
    if (certType !== "user" && certType !== "host") throw new LogicalError(400, `cert_type: must be "user" or "host"`);
    if (certType === "user" && !role.allow_user_certificates)
      throw new LogicalError(400, "cert_type: user certificates are not allowed by the role");
    if (certType === "host" && !role.allow_host_certificates)
      throw new LogicalError(400, "cert_type: host certificates are not allowed by the role");

    let principals = optList(req.data, "valid_principals");
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
    const ttl = parseDuration(req.data.ttl, "ttl") ?? (role.ttl || defaultTtl);
    if (ttl > maxTtl) throw new LogicalError(400, `ttl: ${ttl}s exceeds the role's max_ttl of ${maxTtl}s`);

    const extensions =
      certType === "user"
        ? checkOptions(
            optStringMap(req.data, "extensions"),
            role.allowed_extensions,
            role.default_extensions,
            "extensions",
          )
        : {};
    const criticalOptions = checkOptions(
      optStringMap(req.data, "critical_options"),
      role.allowed_critical_options,
      role.default_critical_options,
      "critical_options",
    );

    const fingerprint = createHash("sha256").update(subject.blob).digest("hex");
    const requestedKeyId = optString(req.data, "key_id");
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
