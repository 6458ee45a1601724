// Measured user-data: the enclaivelet reads the user-data itself, from the copy cloud-init-local made and the
// later stages execute (NoCloud, EC2, GCE: the pickled datasource's userdata_raw, cloud-init-cache.ts; Azure: the
// CustomData of the OVF environment cloud-init-local wrote, azure-ovf.ts), hashes the exact bytes and
// takes its own configuration from them (the write_files entry at /etc/buckypaper/enclaivelet.json),
// so the configuration it acts on is the one the hash covers. The hash is bound into REPORT_DATA
// (attestation/binding.ts v2); the runtime compares it with the hash the deployment registered.
// It runs after cloud-init-local and before cloud-init's init stage (the image orders it so), so no user-data code
// has run yet.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { parse } from "yaml";
import { parseConfig, ConfigError, type EnclaiveletConfig } from "./config.js";
import { spawnRunner, type CommandRunner } from "./exec.js";
import { AZURE_OVF_PATH, AzureOvfError, azureCustomData } from "./azure-ovf.js";
import { cachedUserData, CloudInitCacheError } from "./cloud-init-cache.js";

export const AGENT_CONFIG_PATH = "/etc/buckypaper/enclaivelet.json";
export type UserDataSource = "nocloud" | "ec2" | "gce" | "azure";
export const USER_DATA_SOURCES: readonly UserDataSource[] = ["nocloud", "ec2", "gce", "azure"];

export class UserDataReadError extends Error {
  override name = "UserDataReadError";
  constructor(
    readonly source: string,
    message: string,
  ) {
    super(`user-data (${source}): ${message}`);
  }
}

export interface UserDataDeps {
  /** Runs cloud-init's interpreter (nocloud, ec2, gce: the cache loader). */
  runner?: CommandRunner;
  /** cloud-init's cache and this boot's instance-id (tests; defaults in cloud-init-cache.ts). */
  cloudInit?: { objPkl?: string; runInstanceId?: string; python?: string };
  /** Azure: the OVF environment cloud-init wrote (default /var/lib/waagent/ovf-env.xml). */
  azureOvfPath?: string;
}

/** The raw user-data bytes cloud-init will execute, from the copy cloud-init itself made (never a second read). */
export async function readUserData(
  source: UserDataSource | { file: string },
  deps: UserDataDeps = {},
): Promise<Buffer> {
  if (typeof source === "object") {
    try {
      return await readFile(source.file);
    } catch (e) {
      throw new UserDataReadError(
        "file",
        `${source.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
  if (source === "azure") {
    // Not the ISO, not IMDS: cloud-init's own copy of the OVF it took the user-data from (azure-ovf.ts says why).
    const file = deps.azureOvfPath ?? AZURE_OVF_PATH;
    let xml: Buffer;
    try {
      xml = await readFile(file);
    } catch (e) {
      throw new UserDataReadError(
        "azure",
        `${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (cloud-init-local writes it; did its Azure datasource run?)`,
      );
    }
    try {
      return azureCustomData(xml);
    } catch (e) {
      if (e instanceof AzureOvfError) throw new UserDataReadError("azure", `${file}: ${e.message}`);
      throw e;
    }
  }
  // NoCloud, EC2, GCE: not the seed disk / IMDS / the metadata server again (a second, host-controlled answer),
  // but the datasource cloud-init-local pickled and the later stages restore (cloud-init-cache.ts).
  try {
    return await cachedUserData(source, { runner: deps.runner ?? spawnRunner, ...deps.cloudInit });
  } catch (e) {
    if (e instanceof CloudInitCacheError) throw new UserDataReadError(source, e.message);
    throw e;
  }
}

export interface MeasuredUserData {
  sha256: string;
  config: EnclaiveletConfig;
}

/** Hashes the user-data and takes the enclaivelet config from it (the file cloud-init would write). */
export function measuredConfig(userData: Buffer): MeasuredUserData {
  const sha256 = createHash("sha256").update(userData).digest("hex");
  let doc: unknown;
  try {
    doc = parse(userData.toString("utf8"));
  } catch (e) {
    throw new ConfigError("user-data", `not YAML (${(e as Error).message})`);
  }
  const files = (doc as { write_files?: unknown } | null)?.write_files;
  const entry = Array.isArray(files)
    ? (files as { path?: unknown; content?: unknown; encoding?: unknown }[]).find((w) => w?.path === AGENT_CONFIG_PATH)
    : undefined;
  if (!entry || typeof entry.content !== "string")
    throw new ConfigError("user-data", `has no write_files entry for ${AGENT_CONFIG_PATH}`);
  if (entry.encoding !== undefined && entry.encoding !== "text/plain")
    throw new ConfigError(
      "user-data",
      `${AGENT_CONFIG_PATH}: only plain-text content is read (got ${String(entry.encoding)})`,
    );
  let json: unknown;
  try {
    json = JSON.parse(entry.content);
  } catch (e) {
    throw new ConfigError("user-data", `${AGENT_CONFIG_PATH}: not JSON (${(e as Error).message})`);
  }
  return { sha256, config: parseConfig(json) };
}
