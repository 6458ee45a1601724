// Transit secret engine (Vault's shape): named AES-256-GCM96 keys with versions; encrypt/decrypt with
// Vault's "vault:v<N>:<base64(nonce ‖ ciphertext ‖ tag)>" format, rewrap, data keys, rotation.
// Key material lives only in the mount's barrier-encrypted storage.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "../backend.js";
import type { StorageWriter } from "../../storage/types.js";
import { b64Field, jsonBytes, optBool, optInt, optString, readJson, reqString } from "../fields.js";

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

function newKey(name: string, data: Record<string, unknown>): TransitKey {
  const type = optString(data, "type") ?? "aes256-gcm96";
  if (type !== "aes256-gcm96")
    throw new LogicalError(400, `type: unsupported key type "${type}" (supported: aes256-gcm96)`);
  if (optBool(data, "derived", false) || optBool(data, "convergent_encryption", false)) {
    throw new LogicalError(400, "derived: key derivation is not supported");
  }
  return {
    name,
    type,
    latest_version: 1,
    min_decryption_version: 1,
    min_encryption_version: 0,
    deletion_allowed: false,
    exportable: optBool(data, "exportable", false),
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
function batchOf(data: Record<string, unknown>): BatchItem[] | undefined {
  const b = data.batch_input;
  if (b === undefined) return undefined;
  if (!Array.isArray(b) || b.some((x) => typeof x !== "object" || x === null))
    throw new LogicalError(400, "batch_input: must be a list of objects");
  return b as BatchItem[];
}

export class TransitBackend implements LogicalBackend {
  readonly type = "transit";

  /** Vault's existence check: creating a key (also by encrypt's upsert) needs `create`. */
  async existenceCheck(req: LogicalRequest): Promise<boolean> {
    const m = /^(?:keys|encrypt)\/([^/]+)$/.exec(req.path);
    return m ? (await req.storage.get(keyPath(m[1]))) !== undefined : true;
  }

  async handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    const parts = req.path.split("/");
    const [head, name, tail] = parts;
    const op = req.operation;
    if (head === "keys" && (parts.length === 1 || (parts.length === 2 && name === ""))) {
      if (op !== "list" && op !== "read") return undefined;
      const keys = (await req.storage.list("policy/")).filter((k) => !k.endsWith("/"));
      if (keys.length === 0) throw new LogicalError(404, "no keys");
      return { data: { keys } };
    }
    if (head === "keys" && parts.length === 2) return this.keyCrud(req, checkName(name));
    if (head === "keys" && parts.length === 3 && tail === "rotate" && (op === "update" || op === "create"))
      return this.rotate(req, checkName(name));
    if (head === "keys" && parts.length === 3 && tail === "config" && (op === "update" || op === "create"))
      return this.configure(req, checkName(name));
    if (parts.length === 2 && (op === "update" || op === "create")) {
      if (head === "encrypt") return this.encrypt(req, checkName(name));
      if (head === "decrypt") return this.decrypt(req, checkName(name));
      if (head === "rewrap") return this.rewrap(req, checkName(name));
    }
    if (head === "datakey" && parts.length === 3 && (op === "update" || op === "create")) {
      if (name !== "plaintext" && name !== "wrapped")
        throw new LogicalError(400, `type: must be "plaintext" or "wrapped"`);
      return this.datakey(req, name, checkName(tail));
    }
    return undefined;
  }

  private async load(req: LogicalRequest, name: string): Promise<TransitKey> {
    const k = await readJson<TransitKey>(req.storage, keyPath(name));
    if (!k) throw new LogicalError(400, `encryption key not found: ${name}`);
    return k;
  }

  private async keyCrud(req: LogicalRequest, name: string): Promise<LogicalResponse> {
    switch (req.operation) {
      case "read": {
        const k = await readJson<TransitKey>(req.storage, keyPath(name));
        if (!k) throw new LogicalError(404, `key not found: ${name}`);
        return { data: keyInfo(k) };
      }
      case "create":
      case "update": {
        await req.storage.transaction(async (tx) => {
          if (!(await tx.get(keyPath(name)))) await tx.put(keyPath(name), jsonBytes(newKey(name, req.data)));
        });
        return { data: keyInfo((await readJson<TransitKey>(req.storage, keyPath(name)))!) };
      }
      case "delete": {
        const k = await readJson<TransitKey>(req.storage, keyPath(name));
        if (!k) return {};
        if (!k.deletion_allowed)
          throw new LogicalError(
            400,
            "deletion is not allowed for this key (set deletion_allowed in keys/:name/config)",
          );
        await req.storage.delete(keyPath(name));
        return {};
      }
      default:
        throw new LogicalError(405, "unsupported operation");
    }
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

  private async configure(req: LogicalRequest, name: string): Promise<LogicalResponse> {
    const k = await this.mutate(req, name, (k) => {
      const minDec = optInt(req.data, "min_decryption_version", k.min_decryption_version);
      const minEnc = optInt(req.data, "min_encryption_version", k.min_encryption_version);
      if (minDec < 1 || minDec > k.latest_version) throw new LogicalError(400, "min_decryption_version: out of range");
      if (minEnc < 0 || minEnc > k.latest_version) throw new LogicalError(400, "min_encryption_version: out of range");
      k.min_decryption_version = minDec;
      k.min_encryption_version = minEnc;
      k.deletion_allowed = optBool(req.data, "deletion_allowed", k.deletion_allowed);
    });
    return { data: keyInfo(k) };
  }

  private async encrypt(req: LogicalRequest, name: string): Promise<LogicalResponse> {
    // Vault creates the key on first encrypt (upsert).
    let k = await readJson<TransitKey>(req.storage, keyPath(name));
    if (!k) {
      await req.storage.transaction(async (tx) => {
        if (!(await tx.get(keyPath(name)))) await tx.put(keyPath(name), jsonBytes(newKey(name, {})));
      });
      k = await this.load(req, name);
    }
    const one = (d: Record<string, unknown>) => {
      const version = encryptionVersion(k, d);
      const ct = encryptWith(k, version, b64Field(d, "plaintext", false)!, b64Field(d, "associated_data", false)!);
      return { ciphertext: ct, key_version: version };
    };
    const batch = batchOf(req.data);
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
    return { data: one(req.data) };
  }

  private async decrypt(req: LogicalRequest, name: string): Promise<LogicalResponse> {
    const k = await this.load(req, name);
    const one = (d: Record<string, unknown>) => ({
      plaintext: decryptWith(k, reqString(d, "ciphertext"), b64Field(d, "associated_data", false)!).toString("base64"),
    });
    const batch = batchOf(req.data);
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
    return { data: one(req.data), secretKeys: ["plaintext"] };
  }

  private async rewrap(req: LogicalRequest, name: string): Promise<LogicalResponse> {
    const k = await this.load(req, name);
    const aad = b64Field(req.data, "associated_data", false)!;
    const plain = decryptWith(k, reqString(req.data, "ciphertext"), aad);
    const version = encryptionVersion(k, req.data);
    return { data: { ciphertext: encryptWith(k, version, plain, aad), key_version: version } };
  }

  private async datakey(req: LogicalRequest, kind: "plaintext" | "wrapped", name: string): Promise<LogicalResponse> {
    const k = await this.load(req, name);
    const bits = optInt(req.data, "bits", 256);
    if (![128, 256, 512].includes(bits)) throw new LogicalError(400, "bits: must be 128, 256 or 512");
    const dk = randomBytes(bits / 8);
    const version = encryptionVersion(k, req.data);
    // Like Vault, the wrapped form decrypts (transit/decrypt) to base64(dk) = the plaintext field.
    const ciphertext = encryptWith(k, version, dk, Buffer.alloc(0));
    if (kind === "wrapped") return { data: { ciphertext, key_version: version } };
    return { data: { plaintext: dk.toString("base64"), ciphertext, key_version: version }, secretKeys: ["plaintext"] };
  }
}
