// Transit secret engine (Vault's shape): named AES-256-GCM96 keys with versions; encrypt/decrypt with
// Vault's "vault:v<N>:<base64(nonce ‖ ciphertext ‖ tag)>" format, rewrap, data keys, rotation.
// Key material lives only in the mount's barrier-encrypted storage.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "../backend.js";
import type { StorageWriter } from "../../storage/types.js";
import { b64Field, jsonBytes, optInt, readJson, reqString } from "../fields.js";
import { FieldData, PathRouter, segment, type FieldSchemas, type TableBackend } from "../framework.js";

interface KeyVersion {
  key: string;
  creation_time: string;
}
interface TransitKey {
  name: string;
  type: "aes256-gcm96";
  latest_version: number;
  min_decryption_version: number;
  min_encryption_version: number;
  deletion_allowed: boolean;
  exportable: boolean;
  keys: Record<string, KeyVersion>;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const keyPath = (name: string) => `policy/${name}`;

function checkName(name: string): string {
  if (!NAME_RE.test(name))
    throw new LogicalError(400, "name: must be 1-128 characters of letters, digits, '.', '_' or '-'");
  return name;
}

function newKey(name: string, f?: FieldData): TransitKey {
  const type = f?.string("type") ?? "aes256-gcm96";
  if (type !== "aes256-gcm96")
    throw new LogicalError(400, `type: unsupported key type "${type}" (supported: aes256-gcm96)`);
  if (f?.bool("derived") || f?.bool("convergent_encryption")) {
    throw new LogicalError(400, "derived: key derivation is not supported");
  }
  return {
    name,
    type,
    latest_version: 1,
    min_decryption_version: 1,
    min_encryption_version: 0,
    deletion_allowed: false,
    exportable: f?.bool("exportable") ?? false,
    keys: { "1": { key: randomBytes(32).toString("base64"), creation_time: new Date().toISOString() } },
  };
}

function encryptWith(k: TransitKey, version: number, plaintext: Buffer, aad: Buffer): string {
  const nonce = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", Buffer.from(k.keys[String(version)].key, "base64"), nonce);
  if (aad.length) c.setAAD(aad);
  const body = Buffer.concat([nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
  return `vault:v${version}:${body.toString("base64")}`;
}

function decryptWith(k: TransitKey, ciphertext: string, aad: Buffer): Buffer {
  const m = /^vault:v(\d+):([A-Za-z0-9+/]+=*)$/.exec(ciphertext);
  if (!m) throw new LogicalError(400, "ciphertext: invalid format (want vault:v<N>:<base64>)");
  const version = Number(m[1]);
  const ver = k.keys[String(version)];
  if (!ver) throw new LogicalError(400, `ciphertext: key version ${version} does not exist`);
  if (version < k.min_decryption_version)
    throw new LogicalError(400, `ciphertext: key version ${version} is below min_decryption_version`);
  const body = Buffer.from(m[2], "base64");
  if (body.length < 28) throw new LogicalError(400, "ciphertext: too short");
  try {
    const d = createDecipheriv("aes-256-gcm", Buffer.from(ver.key, "base64"), body.subarray(0, 12));
    if (aad.length) d.setAAD(aad);
    d.setAuthTag(body.subarray(body.length - 16));
    return Buffer.concat([d.update(body.subarray(12, body.length - 16)), d.final()]);
  } catch {
    throw new LogicalError(400, "ciphertext: message authentication failed");
  }
}

function encryptionVersion(k: TransitKey, data: Record<string, unknown>): number {
  const v = optInt(data, "key_version", 0);
  if (v === 0) return k.latest_version;
  if (!k.keys[String(v)] || v < k.min_encryption_version)
    throw new LogicalError(400, `key_version: ${v} is not usable for encryption`);
  return v;
}

function keyInfo(k: TransitKey): Record<string, unknown> {
  const keys: Record<string, number> = {};
  for (const [v, kv] of Object.entries(k.keys)) keys[v] = Math.floor(Date.parse(kv.creation_time) / 1000);
  return {
    name: k.name,
    type: k.type,
    latest_version: k.latest_version,
    min_decryption_version: k.min_decryption_version,
    min_encryption_version: k.min_encryption_version,
    deletion_allowed: k.deletion_allowed,
    exportable: k.exportable,
    derived: false,
    supports_encryption: true,
    supports_decryption: true,
    supports_derivation: false,
    supports_signing: false,
    keys,
  };
}

type BatchItem = Record<string, unknown>;

async function listKeys(req: LogicalRequest): Promise<LogicalResponse> {
  const keys = (await req.storage.list("policy/")).filter((k) => !k.endsWith("/"));
  if (keys.length === 0) throw new LogicalError(404, "no keys");
  return { data: { keys } };
}
function batchOf(data: Record<string, unknown>): BatchItem[] | undefined {
  const b = data.batch_input;
  if (b === undefined) return undefined;
  if (!Array.isArray(b) || b.some((x) => typeof x !== "object" || x === null))
    throw new LogicalError(400, "batch_input: must be a list of objects");
  return b as BatchItem[];
}

const NAME_FIELD: FieldSchemas = { name: { type: "string", description: "key name" } };
const AAD: FieldSchemas = {
  associated_data: { type: "string", description: "base64 additional authenticated data (AES-GCM)" },
};
const KEY_VERSION: FieldSchemas = {
  key_version: { type: "int", default: 0, description: "key version to encrypt with (0: latest)" },
};
const BATCH: FieldSchemas = {
  batch_input: { type: "any", description: "list of objects, each with this path's fields" },
};

/** Vault's existence check: creating a key (also by encrypt's upsert) needs `create`. */
const keyExists = async (req: LogicalRequest, f: FieldData) =>
  (await req.storage.get(keyPath(f.string("name")!))) !== undefined;

const unsupported = async (): Promise<never> => {
  throw new LogicalError(405, "unsupported operation");
};

export class TransitBackend implements LogicalBackend, TableBackend {
  readonly type = "transit";

  readonly router = new PathRouter([
    {
      pattern: "keys",
      description: "key names",
      operations: { list: listKeys, read: listKeys },
    },
    {
      pattern: `keys/${segment("name")}`,
      description: "a named key: create, read, delete",
      fields: {
        ...NAME_FIELD,
        type: { type: "string", default: "aes256-gcm96", description: "key type (aes256-gcm96)" },
        derived: { type: "bool", default: false, description: "key derivation (not supported)" },
        convergent_encryption: { type: "bool", default: false, description: "convergent encryption (not supported)" },
        exportable: { type: "bool", default: false, description: "the key may be exported" },
      },
      existenceCheck: keyExists,
      operations: {
        read: (req, f) => this.readKey(req, checkName(f.string("name")!)),
        update: (req, f) => this.createKey(req, checkName(f.string("name")!), f),
        delete: (req, f) => this.deleteKey(req, checkName(f.string("name")!)),
        list: unsupported,
        patch: unsupported,
      },
    },
    {
      pattern: `keys/${segment("name")}/rotate`,
      description: "add a new key version",
      fields: NAME_FIELD,
      operations: { update: (req, f) => this.rotate(req, checkName(f.string("name")!)) },
    },
    {
      pattern: `keys/${segment("name")}/config`,
      description: "minimum versions and deletion_allowed",
      fields: {
        ...NAME_FIELD,
        min_decryption_version: { type: "int", description: "oldest version that may decrypt" },
        min_encryption_version: { type: "int", description: "oldest version that may encrypt (0: latest)" },
        deletion_allowed: { type: "bool", description: "the key may be deleted" },
      },
      operations: { update: (req, f) => this.configure(req, checkName(f.string("name")!), f) },
    },
    {
      pattern: `encrypt/${segment("name")}`,
      description: "encrypt (creates the key on first use)",
      fields: {
        ...NAME_FIELD,
        plaintext: { type: "string", description: "base64 plaintext" },
        ...AAD,
        ...KEY_VERSION,
        ...BATCH,
      },
      existenceCheck: keyExists,
      operations: { update: (req, f) => this.encrypt(req, checkName(f.string("name")!), f) },
    },
    {
      pattern: `decrypt/${segment("name")}`,
      description: "decrypt",
      fields: {
        ...NAME_FIELD,
        ciphertext: { type: "string", description: "vault:v<N>:… ciphertext" },
        ...AAD,
        ...BATCH,
      },
      operations: { update: (req, f) => this.decrypt(req, checkName(f.string("name")!), f) },
    },
    {
      pattern: `rewrap/${segment("name")}`,
      description: "re-encrypt with the latest (or given) key version",
      fields: {
        ...NAME_FIELD,
        ciphertext: { type: "string", description: "vault:v<N>:… ciphertext" },
        ...AAD,
        ...KEY_VERSION,
      },
      operations: { update: (req, f) => this.rewrap(req, checkName(f.string("name")!), f) },
    },
    {
      pattern: `datakey/${segment("type")}/${segment("name")}`,
      description: "a fresh data key, wrapped (and in plaintext)",
      fields: {
        ...NAME_FIELD,
        type: { type: "string", description: '"plaintext" or "wrapped"' },
        bits: { type: "int", default: 256, description: "128, 256 or 512" },
        ...KEY_VERSION,
      },
      operations: {
        update: (req, f) => {
          const kind = f.string("type");
          if (kind !== "plaintext" && kind !== "wrapped")
            throw new LogicalError(400, `type: must be "plaintext" or "wrapped"`);
          return this.datakey(req, kind, checkName(f.string("name")!), f);
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

  private async load(req: LogicalRequest, name: string): Promise<TransitKey> {
    const k = await readJson<TransitKey>(req.storage, keyPath(name));
    if (!k) throw new LogicalError(400, `encryption key not found: ${name}`);
    return k;
  }

  private async readKey(req: LogicalRequest, name: string): Promise<LogicalResponse> {
    const k = await readJson<TransitKey>(req.storage, keyPath(name));
    if (!k) throw new LogicalError(404, `key not found: ${name}`);
    return { data: keyInfo(k) };
  }

  private async createKey(req: LogicalRequest, name: string, f: FieldData): Promise<LogicalResponse> {
    await req.storage.transaction(async (tx) => {
      if (!(await tx.get(keyPath(name)))) await tx.put(keyPath(name), jsonBytes(newKey(name, f)));
    });
    return { data: keyInfo((await readJson<TransitKey>(req.storage, keyPath(name)))!) };
  }

  private async deleteKey(req: LogicalRequest, name: string): Promise<LogicalResponse> {
    const k = await readJson<TransitKey>(req.storage, keyPath(name));
    if (!k) return {};
    if (!k.deletion_allowed)
      throw new LogicalError(400, "deletion is not allowed for this key (set deletion_allowed in keys/:name/config)");
    await req.storage.delete(keyPath(name));
    return {};
  }

  private async mutate(req: LogicalRequest, name: string, fn: (k: TransitKey) => void): Promise<TransitKey> {
    return req.storage.transaction(async (tx: StorageWriter) => {
      const k = await readJson<TransitKey>(tx, keyPath(name));
      if (!k) throw new LogicalError(400, `encryption key not found: ${name}`);
      fn(k);
      await tx.put(keyPath(name), jsonBytes(k));
      return k;
    });
  }

  private async rotate(req: LogicalRequest, name: string): Promise<LogicalResponse> {
    const k = await this.mutate(req, name, (k) => {
      k.latest_version += 1;
      k.keys[String(k.latest_version)] = {
        key: randomBytes(32).toString("base64"),
        creation_time: new Date().toISOString(),
      };
    });
    return { data: keyInfo(k) };
  }

  private async configure(req: LogicalRequest, name: string, f: FieldData): Promise<LogicalResponse> {
    const k = await this.mutate(req, name, (k) => {
      const minDec = f.int("min_decryption_version") ?? k.min_decryption_version;
      const minEnc = f.int("min_encryption_version") ?? k.min_encryption_version;
      if (minDec < 1 || minDec > k.latest_version) throw new LogicalError(400, "min_decryption_version: out of range");
      if (minEnc < 0 || minEnc > k.latest_version) throw new LogicalError(400, "min_encryption_version: out of range");
      k.min_decryption_version = minDec;
      k.min_encryption_version = minEnc;
      k.deletion_allowed = f.bool("deletion_allowed") ?? k.deletion_allowed;
    });
    return { data: keyInfo(k) };
  }

  private async encrypt(req: LogicalRequest, name: string, f: FieldData): Promise<LogicalResponse> {
    // Vault creates the key on first encrypt (upsert).
    let k = await readJson<TransitKey>(req.storage, keyPath(name));
    if (!k) {
      await req.storage.transaction(async (tx) => {
        if (!(await tx.get(keyPath(name)))) await tx.put(keyPath(name), jsonBytes(newKey(name)));
      });
      k = await this.load(req, name);
    }
    const one = (d: Record<string, unknown>) => {
      const version = encryptionVersion(k, d);
      const ct = encryptWith(k, version, b64Field(d, "plaintext", false)!, b64Field(d, "associated_data", false)!);
      return { ciphertext: ct, key_version: version };
    };
    const batch = batchOf(f.values);
    if (batch)
      return {
        data: {
          batch_results: batch.map((d) => {
            try {
              return one(d);
            } catch (e) {
              return { error: (e as Error).message };
            }
          }),
        },
      };
    return { data: one(f.values) };
  }

  private async decrypt(req: LogicalRequest, name: string, f: FieldData): Promise<LogicalResponse> {
    const k = await this.load(req, name);
    const one = (d: Record<string, unknown>) => ({
      plaintext: decryptWith(k, reqString(d, "ciphertext"), b64Field(d, "associated_data", false)!).toString("base64"),
    });
    const batch = batchOf(f.values);
    if (batch) {
      return {
        data: {
          batch_results: batch.map((d) => {
            try {
              return one(d);
            } catch (e) {
              return { error: (e as Error).message };
            }
          }),
        },
      };
    }
    return { data: one(f.values), secretKeys: ["plaintext"] };
  }

  private async rewrap(req: LogicalRequest, name: string, f: FieldData): Promise<LogicalResponse> {
    const k = await this.load(req, name);
    const aad = b64Field(f.values, "associated_data", false)!;
    const plain = decryptWith(k, reqString(f.values, "ciphertext"), aad);
    const version = encryptionVersion(k, f.values);
    return { data: { ciphertext: encryptWith(k, version, plain, aad), key_version: version } };
  }

  private async datakey(
    req: LogicalRequest,
    kind: "plaintext" | "wrapped",
    name: string,
    f: FieldData,
  ): Promise<LogicalResponse> {
    const k = await this.load(req, name);
    const bits = f.int("bits")!;
    if (![128, 256, 512].includes(bits)) throw new LogicalError(400, "bits: must be 128, 256 or 512");
    const dk = randomBytes(bits / 8);
    const version = encryptionVersion(k, f.values);
    // Like Vault, the wrapped form decrypts (transit/decrypt) to base64(dk) = the plaintext field.
    const ciphertext = encryptWith(k, version, dk, Buffer.alloc(0));
    if (kind === "wrapped") return { data: { ciphertext, key_version: version } };
    return { data: { plaintext: dk.toString("base64"), ciphertext, key_version: version }, secretKeys: ["plaintext"] };
  }
}
