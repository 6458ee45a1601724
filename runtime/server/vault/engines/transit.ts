// Transit secret engine (Vault's shape): named keys with versions; encrypt/decrypt with Vault's
// "vault:v<N>:<base64>" format, rewrap, data keys, rotation, trim; sign/verify for signing keys.
// Key types (transit-keys.ts): aes256-gcm96, ml-dsa-65 (post-quantum signatures) and
// ml-kem-768-x25519 (X-Wing hybrid public-key encryption). Key material lives only in the mount's
// barrier-encrypted storage.
import { randomBytes } from "node:crypto";
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "../backend.js";
import type { StorageWriter } from "../../storage/types.js";
import { b64Field, jsonBytes, optInt, readJson, reqString } from "../fields.js";
import { FieldData, PathRouter, segment, type FieldSchemas, type TableBackend } from "../framework.js";
import {
  checkKeyType,
  decryptBody,
  encryptBody,
  KEY_TYPES,
  newKeyVersion,
  parseVaultString,
  signWith,
  supportsEncryption,
  supportsSigning,
  verifyWith,
  type KeyVersion,
  type TransitKeyType,
} from "./transit-keys.js";

interface TransitKey {
  name: string;
  type: TransitKeyType;
  latest_version: number;
  min_decryption_version: number;
  min_encryption_version: number;
  /** Versions below it were deleted by keys/:name/trim (absent in keys written before trim existed: 0). */
  min_available_version?: number;
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
  const type = checkKeyType(f?.string("type") ?? "aes256-gcm96");
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
    keys: { "1": newKeyVersion(type) },
  };
}

function requireEncryption(k: TransitKey, op: string): void {
  if (!supportsEncryption(k.type))
    throw new LogicalError(400, `${op}: key type ${k.type} does not support ${op} (key "${k.name}")`);
}
function requireSigning(k: TransitKey, op: string): void {
  if (!supportsSigning(k.type))
    throw new LogicalError(400, `${op}: key type ${k.type} does not support signing (key "${k.name}")`);
}

function encryptWith(k: TransitKey, version: number, plaintext: Buffer, aad: Buffer): string {
  requireEncryption(k, "encrypt");
  return `vault:v${version}:${encryptBody(k.type, k.keys[String(version)], plaintext, aad).toString("base64")}`;
}

/**
 * The version a ciphertext or signature names, if it may be used to decrypt/verify: it exists (not
 * trimmed) and is not below min_decryption_version (Vault checks verification against it too).
 */
function readableVersion(k: TransitKey, version: number, field: string): KeyVersion {
  const ver = k.keys[String(version)];
  if (!ver) throw new LogicalError(400, `${field}: key version ${version} does not exist`);
  if (version < k.min_decryption_version)
    throw new LogicalError(400, `${field}: key version ${version} is below min_decryption_version`);
  return ver;
}

function decryptWith(k: TransitKey, ciphertext: string, aad: Buffer): Buffer {
  requireEncryption(k, "decrypt");
  const { version, body } = parseVaultString(ciphertext, "ciphertext");
  return decryptBody(k.type, readableVersion(k, version, "ciphertext"), body, aad);
}

/** The version to encrypt or sign with: latest, or key_version if not below min_encryption_version. */
function encryptionVersion(k: TransitKey, data: Record<string, unknown>): number {
  const v = optInt(data, "key_version", 0);
  if (v === 0) return k.latest_version;
  if (!k.keys[String(v)] || v < k.min_encryption_version)
    throw new LogicalError(400, `key_version: ${v} is not usable for encryption or signing`);
  return v;
}

function keyInfo(k: TransitKey): Record<string, unknown> {
  // Vault's shape: creation times for symmetric keys, {creation_time, name, public_key} for asymmetric ones.
  const keys: Record<string, unknown> = {};
  for (const [v, kv] of Object.entries(k.keys))
    keys[v] = kv.public_key
      ? { creation_time: kv.creation_time, name: k.type, public_key: kv.public_key }
      : Math.floor(Date.parse(kv.creation_time) / 1000);
  return {
    name: k.name,
    type: k.type,
    latest_version: k.latest_version,
    min_decryption_version: k.min_decryption_version,
    min_encryption_version: k.min_encryption_version,
    min_available_version: k.min_available_version ?? 0,
    deletion_allowed: k.deletion_allowed,
    exportable: k.exportable,
    derived: false,
    supports_encryption: supportsEncryption(k.type),
    supports_decryption: supportsEncryption(k.type),
    supports_derivation: false,
    supports_signing: supportsSigning(k.type),
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
const CIPHERTEXT: FieldSchemas = { ciphertext: { type: "string", description: "vault:v<N>:… ciphertext" } };
const INPUT: FieldSchemas = { input: { type: "string", description: "base64 input" } };
const PREHASHED: FieldSchemas = {
  prehashed: { type: "bool", default: false, description: "not supported for ml-dsa-65" },
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
        type: { type: "string", default: "aes256-gcm96", description: `key type (${KEY_TYPES.join(", ")})` },
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
      pattern: `keys/${segment("name")}/trim`,
      description: "delete key versions below min_available_version",
      fields: {
        ...NAME_FIELD,
        min_available_version: { type: "int", required: true, description: "oldest version to keep" },
      },
      operations: { update: (req, f) => this.trim(req, checkName(f.string("name")!), f) },
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
        ...CIPHERTEXT,
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
        ...CIPHERTEXT,
        ...AAD,
        ...KEY_VERSION,
      },
      operations: { update: (req, f) => this.rewrap(req, checkName(f.string("name")!), f) },
    },
    {
      pattern: `sign/${segment("name")}(?:/${segment("hash_algorithm")})?`,
      description: "sign with a signing key (ml-dsa-65: pure ML-DSA, no prehash)",
      fields: {
        ...NAME_FIELD,
        ...INPUT,
        hash_algorithm: { type: "string", description: "ignored for ml-dsa-65 (pure ML-DSA signs the input)" },
        ...PREHASHED,
        ...KEY_VERSION,
        ...BATCH,
      },
      operations: { update: (req, f) => this.sign(req, checkName(f.string("name")!), f) },
    },
    {
      pattern: `verify/${segment("name")}(?:/${segment("hash_algorithm")})?`,
      description: "verify a signature of a signing key",
      fields: {
        ...NAME_FIELD,
        ...INPUT,
        signature: { type: "string", description: "vault:v<N>:… signature" },
        hash_algorithm: { type: "string", description: "ignored for ml-dsa-65" },
        ...PREHASHED,
        ...BATCH,
      },
      operations: { update: (req, f) => this.verify(req, checkName(f.string("name")!), f) },
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
      k.keys[String(k.latest_version)] = newKeyVersion(k.type);
    });
    return { data: keyInfo(k) };
  }

  /** Vault's trim: deletes versions below min_available_version, which may not pass either minimum. */
  private async trim(req: LogicalRequest, name: string, f: FieldData): Promise<LogicalResponse> {
    const k = await this.mutate(req, name, (k) => {
      const min = f.int("min_available_version")!;
      const floor = k.min_available_version ?? 0;
      if (min < 1) throw new LogicalError(400, "min_available_version: must be at least 1");
      if (min < floor) throw new LogicalError(400, `min_available_version: cannot go below ${floor}`);
      if (min > k.min_decryption_version)
        throw new LogicalError(400, "min_available_version: cannot be greater than min_decryption_version");
      if (k.min_encryption_version > 0 && min > k.min_encryption_version)
        throw new LogicalError(400, "min_available_version: cannot be greater than min_encryption_version");
      for (const v of Object.keys(k.keys)) if (Number(v) < min) delete k.keys[v];
      k.min_available_version = min;
    });
    return { data: keyInfo(k) };
  }

  private async configure(req: LogicalRequest, name: string, f: FieldData): Promise<LogicalResponse> {
    const k = await this.mutate(req, name, (k) => {
      const minDec = f.int("min_decryption_version") ?? k.min_decryption_version;
      const minEnc = f.int("min_encryption_version") ?? k.min_encryption_version;
      const minAvail = k.min_available_version ?? 0;
      if (minDec < 1 || minDec > k.latest_version) throw new LogicalError(400, "min_decryption_version: out of range");
      if (minEnc < 0 || minEnc > k.latest_version) throw new LogicalError(400, "min_encryption_version: out of range");
      // Trimmed versions are gone: the minimums may not point below them.
      if (minDec < minAvail)
        throw new LogicalError(400, `min_decryption_version: versions below ${minAvail} were trimmed`);
      if (minEnc !== 0 && minEnc < minAvail)
        throw new LogicalError(400, `min_encryption_version: versions below ${minAvail} were trimmed`);
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

  private async sign(req: LogicalRequest, name: string, f: FieldData): Promise<LogicalResponse> {
    const k = await this.load(req, name);
    requireSigning(k, "sign");
    const one = (d: Record<string, unknown>) => {
      if (d.prehashed === true) throw new LogicalError(400, `prehashed: not supported for ${k.type} (pure ML-DSA)`);
      const version = encryptionVersion(k, d);
      const sig = signWith(k.keys[String(version)], b64Field(d, "input", true) ?? Buffer.alloc(0));
      return { signature: `vault:v${version}:${sig.toString("base64")}`, key_version: version };
    };
    return this.batchOrOne(f, one);
  }

  private async verify(req: LogicalRequest, name: string, f: FieldData): Promise<LogicalResponse> {
    const k = await this.load(req, name);
    requireSigning(k, "verify");
    const one = (d: Record<string, unknown>) => {
      if (d.prehashed === true) throw new LogicalError(400, `prehashed: not supported for ${k.type} (pure ML-DSA)`);
      const { version, body } = parseVaultString(reqString(d, "signature"), "signature");
      const ver = readableVersion(k, version, "signature");
      return { valid: verifyWith(ver, b64Field(d, "input", true) ?? Buffer.alloc(0), body) };
    };
    return this.batchOrOne(f, one);
  }

  /** Vault's batch_input: per-item results (errors included); else the single operation. */
  private batchOrOne(f: FieldData, one: (d: Record<string, unknown>) => Record<string, unknown>): LogicalResponse {
    const batch = batchOf(f.values);
    if (!batch) return { data: one(f.values) };
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

  private async datakey(
    req: LogicalRequest,
    kind: "plaintext" | "wrapped",
    name: string,
    f: FieldData,
  ): Promise<LogicalResponse> {
    const k = await this.load(req, name);
    requireEncryption(k, "datakey");
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
