// PKI secret engine (Vault's shape, one issuer per mount): root generation, intermediate CSR →
// signed by another mount's root → set-signed, roles, issue (key + cert), sign (CSR), ca/pem,
// cert/ca, ca_chain, revoke and a CRL. Certificates are built with @peculiar/x509.
// @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill loaded first.
import "reflect-metadata";
import { isIP } from "node:net";
import { createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "../backend.js";
import { jsonBytes, optBool, optInt, optList, optString, readJson, reqString } from "../fields.js";
import { parseOptionalDuration as parseDuration } from "../duration.js";
import {
  FieldData,
  PathRouter,
  segment,
  withFields,
  type FieldSchemas,
  type PathHandler,
  type PathSpec,
  type TableBackend,
} from "../framework.js";
import {
  exportPkcs8,
  generateKeyPair,
  importSigningKey,
  keySpec,
  privateKeyPem,
  signingAlgorithm,
  specOfAlgorithm,
  type CryptoKey,
  type KeySpec,
} from "./pki-keys.js";

interface Issuer {
  certificate: string;
  chain: string[];
  key: string;
  spec: KeySpec;
}
interface Pending {
  key: string;
  spec: KeySpec;
  common_name: string;
}
interface PkiRole {
  allowed_domains: string[];
  allow_subdomains: boolean;
  allow_bare_domains: boolean;
  allow_any_name: boolean;
  allow_localhost: boolean;
  allow_ip_sans: boolean;
  allowed_uri_sans: string[];
  server_flag: boolean;
  client_flag: boolean;
  key_type: string;
  key_bits: number;
  ttl: number;
  max_ttl: number;
  no_store: boolean;
  require_cn: boolean;
  organization: string[];
  ou: string[];
}
interface UrlsConfig {
  issuing_certificates: string[];
  crl_distribution_points: string[];
}
interface Revoked {
  serial: string;
  revocation_time: number;
}

const ROLE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const BACKDATE_MS = 30_000;
const DEFAULT_CA_TTL_S = 10 * 365 * 86400;

function colonSerial(hex: string): string {
  return hex.toLowerCase().match(/.{2}/g)!.join(":");
}
function normalizeSerial(s: string, field: string): string {
  const hex = s.replace(/[:-]/g, "").toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex) || hex.length % 2) throw new LogicalError(400, `${field}: not a hex serial number`);
  return hex;
}
function newSerial(): string {
  const b = randomBytes(20);
  b[0] &= 0x7f;
  if (b[0] === 0) b[0] = 1;
  return b.toString("hex");
}

function pemCert(der: ArrayBuffer): string {
  return x509.PemConverter.encode(der, "CERTIFICATE").replace(/\r\n/g, "\n").trim();
}
/** OpenSSL expects the "X509 CRL" PEM label. */
function crlPem(crl: x509.X509Crl): string {
  return `${x509.PemConverter.encode(crl.rawData, "X509 CRL").replace(/\r\n/g, "\n").trim()}\n`;
}
function splitPems(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
function raw(contentType: string, body: string | Buffer): LogicalResponse {
  return { data: { http_content_type: contentType, http_raw_body: body, http_status_code: 200 } };
}

function subjectName(cn: string, data: Record<string, unknown>, role?: PkiRole): x509.JsonName {
  const name: x509.JsonName = [];
  const org = optList(data, "organization").length ? optList(data, "organization") : (role?.organization ?? []);
  const ou = optList(data, "ou").length ? optList(data, "ou") : (role?.ou ?? []);
  if (org.length) name.push({ O: org });
  if (ou.length) name.push({ OU: ou });
  if (cn) name.push({ CN: [cn] });
  return name;
}

function roleFrom(data: Record<string, unknown>): PkiRole {
  const spec = data.key_type === "any" ? { type: "any", bits: 0 } : keySpec(data.key_type, data.key_bits);
  return {
    allowed_domains: optList(data, "allowed_domains"),
    allow_subdomains: optBool(data, "allow_subdomains", false),
    allow_bare_domains: optBool(data, "allow_bare_domains", false),
    allow_any_name: optBool(data, "allow_any_name", false),
    allow_localhost: optBool(data, "allow_localhost", true),
    allow_ip_sans: optBool(data, "allow_ip_sans", true),
    allowed_uri_sans: optList(data, "allowed_uri_sans"),
    server_flag: optBool(data, "server_flag", true),
    client_flag: optBool(data, "client_flag", true),
    key_type: spec.type,
    key_bits: spec.bits,
    ttl: parseDuration(data.ttl, "ttl") ?? 0,
    max_ttl: parseDuration(data.max_ttl, "max_ttl") ?? 0,
    no_store: optBool(data, "no_store", false),
    require_cn: optBool(data, "require_cn", true),
    organization: optList(data, "organization"),
    ou: optList(data, "ou"),
  };
}

function nameAllowed(role: PkiRole, name: string): boolean {
  if (role.allow_any_name) return true;
  if (role.allow_localhost && (name === "localhost" || name === "localdomain")) return true;
  return role.allowed_domains.some(
    (d) =>
      (role.allow_bare_domains && name === d) ||
      (role.allow_subdomains && name.endsWith(`.${d}`) && name.length > d.length + 1),
  );
}

function uriAllowed(role: PkiRole, uri: string): boolean {
  return role.allowed_uri_sans.some((p) => p === uri || (p.endsWith("*") && uri.startsWith(p.slice(0, -1))));
}

async function caExtensions(
  publicKey: CryptoKey,
  issuerPublic: CryptoKey | x509.PublicKey,
  pathLen: number | undefined,
): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(true, pathLen, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(issuerPublic),
  ];
}

/** A read-only, unauthenticated path answering with raw bytes. */
function rawRead(pattern: string, description: string, read: PathHandler): PathSpec {
  return { pattern, description, operations: { read } };
}

async function listRoles(req: LogicalRequest): Promise<LogicalResponse> {
  const keys = await req.storage.list("roles/");
  if (!keys.length) throw new LogicalError(404, "no roles");
  return { data: { keys } };
}

async function listCerts(req: LogicalRequest): Promise<LogicalResponse> {
  const keys = (await req.storage.list("certs/")).map(colonSerial);
  if (!keys.length) throw new LogicalError(404, "no certificates");
  return { data: { keys } };
}

const SUBJECT_FIELDS: FieldSchemas = {
  common_name: { type: "string", description: "subject CN" },
  organization: { type: "comma-string-slice", description: "subject O" },
  ou: { type: "comma-string-slice", description: "subject OU" },
};

const CA_FIELDS: FieldSchemas = {
  ...SUBJECT_FIELDS,
  key_type: { type: "string", default: "ec", description: "ec, rsa or ed25519" },
  key_bits: { type: "int", description: "ec: 256/384, rsa: 2048/3072/4096" },
  max_path_length: { type: "int", default: -1, description: "path length constraint (-1: none)" },
  ttl: { type: "duration", description: "certificate lifetime (default 10 years)" },
  issuer_name: { type: "string", default: "default", description: "issuer name" },
};

const ISSUE_FIELDS: FieldSchemas = {
  ...SUBJECT_FIELDS,
  role: { type: "string", description: "role name" },
  alt_names: { type: "comma-string-slice", description: "DNS subject alternative names" },
  ip_sans: { type: "comma-string-slice", description: "IP subject alternative names" },
  uri_sans: { type: "comma-string-slice", description: "URI subject alternative names" },
  use_csr_sans: { type: "bool", default: true, description: "sign: keep the CSR's SANs" },
  exclude_cn_from_sans: { type: "bool", default: false, description: "do not add the CN as a DNS SAN" },
  ttl: { type: "duration", description: "certificate lifetime" },
  private_key_format: { type: "string", description: '"pkcs8" or default (PKCS#1/SEC1)' },
};

const ROLE_FIELDS: FieldSchemas = {
  name: { type: "string", description: "role name" },
  allowed_domains: { type: "comma-string-slice", description: "domains names may be in" },
  allow_subdomains: { type: "bool", default: false, description: "subdomains of allowed_domains" },
  allow_bare_domains: { type: "bool", default: false, description: "allowed_domains themselves" },
  allow_any_name: { type: "bool", default: false, description: "any name" },
  allow_localhost: { type: "bool", default: true, description: "localhost" },
  allow_ip_sans: { type: "bool", default: true, description: "IP SANs" },
  allowed_uri_sans: { type: "comma-string-slice", description: 'URI SANs allowed ("…*" prefix)' },
  server_flag: { type: "bool", default: true, description: "serverAuth EKU" },
  client_flag: { type: "bool", default: true, description: "clientAuth EKU" },
  key_type: { type: "string", default: "ec", description: "ec, rsa, ed25519 or any" },
  key_bits: { type: "int", description: "key size" },
  ttl: { type: "duration", description: "default lifetime" },
  max_ttl: { type: "duration", description: "longest lifetime" },
  no_store: { type: "bool", default: false, description: "do not store issued certificates" },
  require_cn: { type: "bool", default: true, description: "a CN is required" },
  organization: { type: "comma-string-slice", description: "subject O" },
  ou: { type: "comma-string-slice", description: "subject OU" },
};

export class PkiBackend implements LogicalBackend, TableBackend {
  readonly type = "pki";
  readonly unauthenticatedPaths = ["ca", "ca/pem", "ca_chain", "cert/*", "crl", "crl/pem"];

  readonly router = new PathRouter([
    rawRead("ca/pem", "the CA certificate, PEM", async (req) =>
      raw("application/pem-certificate-chain", (await this.issuer(req)).certificate),
    ),
    rawRead("ca", "the CA certificate, DER", async (req) =>
      raw("application/pkix-cert", Buffer.from(new x509.X509Certificate((await this.issuer(req)).certificate).rawData)),
    ),
    rawRead("ca_chain", "the CA chain, PEM", async (req) => {
      const i = await this.issuer(req);
      return raw("application/pem-certificate-chain", [i.certificate, ...i.chain].join("\n") + "\n");
    }),
    rawRead("crl", "the CRL, DER", async (req) =>
      raw("application/pkix-crl", Buffer.from((await this.crl(req)).rawData)),
    ),
    rawRead("crl/pem", "the CRL, PEM", async (req) => raw("application/x-pem-file", crlPem(await this.crl(req)))),
    {
      pattern: "config/urls",
      description: "AIA issuing-certificate and CRL distribution URLs put into certificates",
      fields: {
        issuing_certificates: { type: "comma-string-slice", description: "AIA caIssuers URLs" },
        crl_distribution_points: { type: "comma-string-slice", description: "CRL distribution point URLs" },
      },
      operations: {
        read: async (req) => ({ data: { ...(await this.urls(req)) } }),
        update: (req, f) => this.setUrls(withFields(req, f)),
      },
    },
    { pattern: "roles", description: "role names", operations: { list: listRoles, read: listRoles } },
    { pattern: "certs", description: "serial numbers issued", operations: { list: listCerts, read: listCerts } },
    {
      pattern: `cert/${segment("serial")}`,
      description: 'a certificate by serial (or "ca", "ca_chain", "crl")',
      fields: { serial: { type: "string", description: "serial number, hex with optional colons" } },
      operations: { read: (req, f) => this.readCert(req, f.string("serial")!) },
    },
    {
      pattern: `roles/${segment("name")}`,
      description: "a role: which names, key types and TTLs certificates may have",
      fields: ROLE_FIELDS,
      // Vault's existence check: writing a new role needs `create`, changing one `update`.
      existenceCheck: async (req, f) => (await req.storage.get(`roles/${f.string("name")}`)) !== undefined,
      operations: {
        read: (req, f) => this.roleCrud(req, f),
        update: (req, f) => this.roleCrud(withFields(req, f), f),
        delete: (req, f) => this.roleCrud(req, f),
        list: (req, f) => this.roleCrud(req, f),
        patch: (req, f) => this.roleCrud(req, f),
      },
    },
    {
      pattern: "root/generate/(?<exported>internal|exported)",
      description: "generate a self-signed root (exported: the private key is returned once)",
      fields: { exported: { type: "string", description: "internal or exported" }, ...CA_FIELDS },
      operations: {
        update: (req, f) => this.generateRoot(withFields(req, f), f.string("exported") === "exported"),
      },
    },
    {
      pattern: "intermediate/generate/(?<exported>internal|exported)",
      description: "generate an intermediate key and CSR",
      fields: { exported: { type: "string", description: "internal or exported" }, ...CA_FIELDS },
      operations: {
        update: (req, f) => this.generateIntermediate(withFields(req, f), f.string("exported") === "exported"),
      },
    },
    {
      pattern: "intermediate/set-signed",
      description: "install the signed intermediate certificate (and its chain)",
      fields: { certificate: { type: "string", description: "PEM certificate(s), the intermediate first" } },
      operations: { update: (req, f) => this.setSigned(withFields(req, f)) },
    },
    {
      pattern: "root/sign-intermediate",
      description: "sign an intermediate CA's CSR with this mount's CA",
      fields: { csr: { type: "string", description: "PEM CSR" }, ...CA_FIELDS },
      operations: { update: (req, f) => this.signIntermediate(withFields(req, f)) },
    },
    {
      pattern: "revoke",
      description: "revoke a certificate by serial number",
      fields: { serial_number: { type: "string", description: "serial number" } },
      operations: { update: (req, f) => this.revoke(withFields(req, f)) },
    },
    {
      pattern: `issue/${segment("role")}`,
      description: "generate a key and certificate under a role (the private key is returned once)",
      fields: ISSUE_FIELDS,
      operations: { update: (req, f) => this.issue(withFields(req, f), f.string("role")!, undefined) },
    },
    {
      pattern: `sign/${segment("role")}`,
      description: "certify the key of a CSR under a role",
      fields: { ...ISSUE_FIELDS, csr: { type: "string", description: "PEM CSR" } },
      operations: {
        update: (req, f) => this.issue(withFields(req, f), f.string("role")!, reqString(f.values, "csr")),
      },
    },
    {
      pattern: "root",
      description: "delete the CA (issuer and pending key)",
      operations: {
        delete: async (req) => {
          for (const k of ["issuer", "pending"]) await req.storage.delete(k);
          return {};
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

  private async issuer(req: LogicalRequest): Promise<Issuer> {
    const i = await readJson<Issuer>(req.storage, "issuer");
    if (!i)
      throw new LogicalError(400, "no CA configured on this mount (generate a root or set a signed intermediate)");
    return i;
  }

  private async urls(req: LogicalRequest): Promise<UrlsConfig> {
    return (
      (await readJson<UrlsConfig>(req.storage, "config/urls")) ?? {
        issuing_certificates: [],
        crl_distribution_points: [],
      }
    );
  }

  private async setUrls(req: LogicalRequest): Promise<LogicalResponse> {
    const cfg: UrlsConfig = {
      issuing_certificates: optList(req.data, "issuing_certificates"),
      crl_distribution_points: optList(req.data, "crl_distribution_points"),
    };
    await req.storage.put("config/urls", jsonBytes(cfg));
    return {};
  }

  private caTtl(req: LogicalRequest): number {
    return parseDuration(req.data.ttl, "ttl") ?? DEFAULT_CA_TTL_S;
  }

  private async generateRoot(req: LogicalRequest, exported: boolean): Promise<LogicalResponse> {
    const cn = reqString(req.data, "common_name");
    const spec = keySpec(req.data.key_type, req.data.key_bits);
    if (await req.storage.get("issuer"))
      throw new LogicalError(400, "a CA is already configured on this mount (DELETE root first)");
    const keys = await generateKeyPair(spec);
    const maxPath = optInt(req.data, "max_path_length", -1);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: newSerial(),
      name: subjectName(cn, req.data),
      keys,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + this.caTtl(req) * 1000),
      signingAlgorithm: signingAlgorithm(spec),
      extensions: await caExtensions(keys.publicKey, keys.publicKey, maxPath >= 0 ? maxPath : undefined),
    });
    const pkcs8 = await exportPkcs8(keys.privateKey);
    const issuer: Issuer = { certificate: pemCert(cert.rawData), chain: [], key: pkcs8.toString("base64"), spec };
    await req.storage.transaction(async (tx) => {
      if (await tx.get("issuer"))
        throw new LogicalError(400, "a CA is already configured on this mount (DELETE root first)");
      await tx.put("issuer", jsonBytes(issuer));
    });
    const data: Record<string, unknown> = {
      certificate: issuer.certificate,
      issuing_ca: issuer.certificate,
      serial_number: colonSerial(cert.serialNumber),
      expiration: Math.floor(cert.notAfter.getTime() / 1000),
      issuer_name: optString(req.data, "issuer_name") ?? "default",
    };
    if (exported) {
      data.private_key = privateKeyPem(pkcs8, spec, "default");
      data.private_key_type = spec.type;
      return { data, secretKeys: ["private_key"] };
    }
    return { data };
  }

  private async generateIntermediate(req: LogicalRequest, exported: boolean): Promise<LogicalResponse> {
    const cn = reqString(req.data, "common_name");
    const spec = keySpec(req.data.key_type, req.data.key_bits);
    const keys = await generateKeyPair(spec);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: subjectName(cn, req.data),
      keys,
      signingAlgorithm: signingAlgorithm(spec),
    });
    const pkcs8 = await exportPkcs8(keys.privateKey);
    await req.storage.put(
      "pending",
      jsonBytes({ key: pkcs8.toString("base64"), spec, common_name: cn } satisfies Pending),
    );
    const data: Record<string, unknown> = { csr: csr.toString("pem").replace(/\r\n/g, "\n") };
    if (exported) {
      data.private_key = privateKeyPem(pkcs8, spec, "default");
      data.private_key_type = spec.type;
      return { data, secretKeys: ["private_key"] };
    }
    return { data };
  }

  private async setSigned(req: LogicalRequest): Promise<LogicalResponse> {
    const pems = splitPems(reqString(req.data, "certificate"));
    if (!pems.length) throw new LogicalError(400, "certificate: no PEM certificate found");
    const pending = await readJson<Pending>(req.storage, "pending");
    if (!pending)
      throw new LogicalError(400, "certificate: no pending intermediate key (generate an intermediate first)");
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(pems[0]);
    } catch {
      throw new LogicalError(400, "certificate: not a parseable X.509 certificate");
    }
    const pendingPub = this.publicFromPkcs8(Buffer.from(pending.key, "base64"));
    if (Buffer.compare(Buffer.from(cert.publicKey.rawData), pendingPub) !== 0)
      throw new LogicalError(400, "certificate: does not match the pending intermediate key");
    const issuer: Issuer = {
      certificate: pemCert(cert.rawData),
      chain: pems.slice(1).map((p) => pemCert(new x509.X509Certificate(p).rawData)),
      key: pending.key,
      spec: pending.spec,
    };
    await req.storage.transaction(async (tx) => {
      await tx.put("issuer", jsonBytes(issuer));
      await tx.delete("pending");
    });
    return { data: { imported_issuers: ["default"] } };
  }

  private publicFromPkcs8(pkcs8: Buffer): Buffer {
    return createPublicKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })).export({
      format: "der",
      type: "spki",
    }) as Buffer;
  }

  private async signIntermediate(req: LogicalRequest): Promise<LogicalResponse> {
    const issuer = await this.issuer(req);
    const csr = await this.parseCsr(reqString(req.data, "csr"));
    const cn = optString(req.data, "common_name") ?? csr.subjectName.getField("CN")[0] ?? "";
    if (!cn) throw new LogicalError(400, "common_name: missing (and the CSR has no CN)");
    const signer = new x509.X509Certificate(issuer.certificate);
    const maxPath = optInt(req.data, "max_path_length", -1);
    // One clock reading for both ends: two could straddle a second and give a validity 1 s off the TTL asked for.
    const now = Date.now();
    const notAfter = Math.min(now + this.caTtl(req) * 1000, signer.notAfter.getTime());
    const csrKey = await csr.publicKey.export();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: newSerial(),
      subject: subjectName(cn, req.data),
      issuer: signer.subject,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      publicKey: csr.publicKey,
      signingKey: await importSigningKey(Buffer.from(issuer.key, "base64"), issuer.spec),
      signingAlgorithm: signingAlgorithm(issuer.spec),
      extensions: [
        ...(await caExtensions(csrKey, signer.publicKey, maxPath >= 0 ? maxPath : undefined)),
        ...(await this.urlExtensions(req)),
      ],
    });
    const pem = pemCert(cert.rawData);
    await this.store(req, cert.serialNumber, pem);
    return {
      data: {
        certificate: pem,
        issuing_ca: issuer.certificate,
        ca_chain: [issuer.certificate, ...issuer.chain],
        serial_number: colonSerial(cert.serialNumber),
        expiration: Math.floor(cert.notAfter.getTime() / 1000),
      },
    };
  }

  private async parseCsr(pem: string): Promise<x509.Pkcs10CertificateRequest> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(pem);
    } catch {
      throw new LogicalError(400, "csr: not a parseable PKCS#10 request");
    }
    if (!(await csr.verify())) throw new LogicalError(400, "csr: signature does not verify");
    return csr;
  }

  private async urlExtensions(req: LogicalRequest): Promise<x509.Extension[]> {
    const u = await this.urls(req);
    const out: x509.Extension[] = [];
    if (u.crl_distribution_points.length) out.push(new x509.CRLDistributionPointsExtension(u.crl_distribution_points));
    if (u.issuing_certificates.length)
      out.push(
        new x509.AuthorityInfoAccessExtension({
          caIssuers: u.issuing_certificates.map((url) => new x509.GeneralName("url", url)),
        }),
      );
    return out;
  }

  private async store(req: LogicalRequest, serial: string, pem: string): Promise<void> {
    await req.storage.put(`certs/${serial.toLowerCase()}`, Buffer.from(pem));
  }

  private async roleCrud(req: LogicalRequest, f: FieldData): Promise<LogicalResponse> {
    const name = f.string("name")!;
    if (!ROLE_RE.test(name)) throw new LogicalError(400, "name: invalid role name");
    switch (req.operation) {
      case "read": {
        const r = await readJson<PkiRole>(req.storage, `roles/${name}`);
        if (!r) throw new LogicalError(404, `role not found: ${name}`);
        return { data: { ...r } };
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

  /** issue (csrPem undefined: a key is generated) or sign (the CSR's key is certified). */
  private async issue(req: LogicalRequest, roleName: string, csrPem: string | undefined): Promise<LogicalResponse> {
    const role = await readJson<PkiRole>(req.storage, `roles/${roleName}`);
    if (!role) throw new LogicalError(400, `unknown role: ${roleName}`);
    const issuer = await this.issuer(req);
    const csr = csrPem === undefined ? undefined : await this.parseCsr(csrPem);

    const cn = optString(req.data, "common_name") ?? csr?.subjectName.getField("CN")[0] ?? "";
    if (!cn && role.require_cn) throw new LogicalError(400, "common_name: missing");
    const dns = new Set<string>(optList(req.data, "alt_names"));
    const ips = optList(req.data, "ip_sans");
    const uris = optList(req.data, "uri_sans");
    if (csr && optBool(req.data, "use_csr_sans", true)) {
      const san = csr.extensions.find(
        (e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension,
      );
      for (const n of san?.names.items ?? []) {
        if (n.type === "dns") dns.add(n.value);
        else if (n.type === "ip") ips.push(n.value);
        else if (n.type === "url") uris.push(n.value);
      }
    }
    if (cn && !optBool(req.data, "exclude_cn_from_sans", false) && !isIP(cn) && !cn.includes("@")) dns.add(cn);
    if (cn && !nameAllowed(role, cn))
      throw new LogicalError(400, `common_name: "${cn}" is not allowed by role ${roleName}`);
    for (const d of dns)
      if (!nameAllowed(role, d)) throw new LogicalError(400, `alt_names: "${d}" is not allowed by role ${roleName}`);
    for (const ip of ips) {
      if (!role.allow_ip_sans) throw new LogicalError(400, "ip_sans: IP SANs are not allowed by the role");
      if (!isIP(ip)) throw new LogicalError(400, `ip_sans: "${ip}" is not an IP address`);
    }
    for (const u of uris)
      if (!uriAllowed(role, u)) throw new LogicalError(400, `uri_sans: "${u}" is not allowed by the role`);

    const { defaultTtl, maxTtl: sysMax } = req.system.ttls();
    const maxTtl = role.max_ttl || sysMax;
    const asked = parseDuration(req.data.ttl, "ttl");
    if (asked !== undefined && asked > maxTtl)
      throw new LogicalError(400, `ttl: ${asked}s exceeds the role's max_ttl of ${maxTtl}s`);
    // Without an explicit ttl the default (role ttl, else the mount's) is capped at max_ttl with a
    // warning, as Vault does — a role whose max_ttl is below the mount default still issues.
    const warnings: string[] = [];
    let ttl = asked ?? (role.ttl || defaultTtl);
    if (ttl > maxTtl) {
      warnings.push(`TTL "${ttl}s" is longer than permitted maxTTL "${maxTtl}s", so maxTTL is being used`);
      ttl = maxTtl;
    }

    let publicKey: CryptoKey | x509.PublicKey;
    let keyOut: { pem: string; type: string } | undefined;
    let leafSpec: KeySpec;
    if (csr) {
      publicKey = csr.publicKey;
      leafSpec = specOfAlgorithm((await csr.publicKey.export()).algorithm);
      if (
        role.key_type !== "any" &&
        (leafSpec.type !== role.key_type || (role.key_bits && leafSpec.bits < role.key_bits))
      ) {
        throw new LogicalError(
          400,
          `csr: key must be ${role.key_type}${role.key_bits ? ` with at least ${role.key_bits} bits` : ""}`,
        );
      }
    } else {
      leafSpec = keySpec(role.key_type === "any" ? "ec" : role.key_type, role.key_type === "any" ? 0 : role.key_bits);
      const pair = await generateKeyPair(leafSpec);
      publicKey = pair.publicKey;
      const fmt = optString(req.data, "private_key_format") === "pkcs8" ? "pkcs8" : "default";
      keyOut = { pem: privateKeyPem(await exportPkcs8(pair.privateKey), leafSpec, fmt), type: leafSpec.type };
    }

    const signer = new x509.X509Certificate(issuer.certificate);
    const now = Date.now(); // one reading for notBefore and notAfter (see the intermediate above)
    const notAfter = Math.min(now + ttl * 1000, signer.notAfter.getTime());
    let usage = x509.KeyUsageFlags.digitalSignature;
    if (leafSpec.type === "rsa") usage |= x509.KeyUsageFlags.keyEncipherment;
    if (leafSpec.type === "ec") usage |= x509.KeyUsageFlags.keyAgreement;
    const eku: string[] = [];
    if (role.server_flag) eku.push(x509.ExtendedKeyUsage.serverAuth);
    if (role.client_flag) eku.push(x509.ExtendedKeyUsage.clientAuth);
    const sans: x509.JsonGeneralNames = [
      ...[...dns].map((value) => ({ type: "dns" as const, value })),
      ...ips.map((value) => ({ type: "ip" as const, value })),
      ...uris.map((value) => ({ type: "url" as const, value })),
    ];
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(usage, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(signer.publicKey),
      ...(await this.urlExtensions(req)),
    ];
    if (eku.length) extensions.push(new x509.ExtendedKeyUsageExtension(eku));
    if (sans.length) extensions.push(new x509.SubjectAlternativeNameExtension(sans));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: newSerial(),
      subject: subjectName(cn, req.data, role),
      issuer: signer.subject,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      publicKey,
      signingKey: await importSigningKey(Buffer.from(issuer.key, "base64"), issuer.spec),
      signingAlgorithm: signingAlgorithm(issuer.spec),
      extensions,
    });
    const pem = pemCert(cert.rawData);
    if (!role.no_store) await this.store(req, cert.serialNumber, pem);
    const data: Record<string, unknown> = {
      certificate: pem,
      issuing_ca: issuer.certificate,
      ca_chain: [issuer.certificate, ...issuer.chain],
      serial_number: colonSerial(cert.serialNumber),
      expiration: Math.floor(cert.notAfter.getTime() / 1000),
    };
    const warn = warnings.length ? { warnings } : {};
    if (keyOut) {
      data.private_key = keyOut.pem;
      data.private_key_type = keyOut.type;
      return { data, secretKeys: ["private_key"], ...warn };
    }
    return { data, ...warn };
  }

  private async readCert(req: LogicalRequest, which: string): Promise<LogicalResponse> {
    if (which === "ca") return { data: { certificate: (await this.issuer(req)).certificate } };
    if (which === "ca_chain") {
      const i = await this.issuer(req);
      return { data: { certificate: [i.certificate, ...i.chain].join("\n"), ca_chain: [i.certificate, ...i.chain] } };
    }
    if (which === "crl") return { data: { certificate: crlPem(await this.crl(req)) } };
    const serial = normalizeSerial(which, "serial");
    const pem = await req.storage.get(`certs/${serial}`);
    if (!pem) throw new LogicalError(404, `certificate not found: ${colonSerial(serial)}`);
    const rev = await readJson<Revoked>(req.storage, `revoked/${serial}`);
    return { data: { certificate: pem.toString(), revocation_time: rev?.revocation_time ?? 0 } };
  }

  private async revoke(req: LogicalRequest): Promise<LogicalResponse> {
    const serial = normalizeSerial(reqString(req.data, "serial_number"), "serial_number");
    if (!(await req.storage.get(`certs/${serial}`)))
      throw new LogicalError(400, `serial_number: certificate ${colonSerial(serial)} not found`);
    const now = Math.floor(Date.now() / 1000);
    await req.storage.transaction(async (tx) => {
      if (!(await tx.get(`revoked/${serial}`)))
        await tx.put(`revoked/${serial}`, jsonBytes({ serial, revocation_time: now } satisfies Revoked));
    });
    return { data: { revocation_time: now } };
  }

  private async crl(req: LogicalRequest): Promise<x509.X509Crl> {
    const issuer = await this.issuer(req);
    const signer = new x509.X509Certificate(issuer.certificate);
    const entries: x509.X509CrlEntryParams[] = [];
    for (const k of await req.storage.list("revoked/")) {
      const r = await readJson<Revoked>(req.storage, `revoked/${k}`);
      if (r) entries.push({ serialNumber: r.serial, revocationDate: new Date(r.revocation_time * 1000) });
    }
    return x509.X509CrlGenerator.create({
      issuer: signer.subject,
      thisUpdate: new Date(),
      nextUpdate: new Date(Date.now() + 72 * 3600_000),
      entries,
      signingKey: await importSigningKey(Buffer.from(issuer.key, "base64"), issuer.spec),
      signingAlgorithm: signingAlgorithm(issuer.spec),
      extensions: [await x509.AuthorityKeyIdentifierExtension.create(signer.publicKey)],
    });
  }
}
