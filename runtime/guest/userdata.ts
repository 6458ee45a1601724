// Measured user-data: the enclaivelet reads the user-data itself, from the same source cloud-init
// reads it (the NoCloud seed volume, EC2 IMDSv2, the GCE metadata server; on Azure the CustomData of the OVF
// environment cloud-init-local wrote, azure-ovf.ts), hashes the exact bytes and
// takes its own configuration from them (the write_files entry at /etc/buckypaper/enclaivelet.json),
// so the configuration it acts on is the one the hash covers. The hash is bound into REPORT_DATA
// (attestation/binding.ts v2); the runtime compares it with the hash the deployment registered.
// It runs before cloud-init's init stage (the image orders it so), so no user-data code has run yet.
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse } from "yaml";
import { parseConfig, ConfigError, type EnclaiveletConfig } from "./config.js";
import { spawnRunner, type CommandRunner } from "./exec.js";
import { AZURE_OVF_PATH, AzureOvfError, azureCustomData } from "./azure-ovf.js";

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
  runner?: CommandRunner;
  /** Metadata service base URL (tests): default http://169.254.169.254. */
  metadataBase?: string;
  /** NoCloud seed devices tried in order (default: the cidata/CIDATA labels). */
  seedDevices?: string[];
  fetchImpl?: typeof fetch;
  /** Azure: the OVF environment cloud-init wrote (default /var/lib/waagent/ovf-env.xml). */
  azureOvfPath?: string;
}

async function fetchOk(source: string, f: typeof fetch, url: string, init: RequestInit): Promise<Buffer> {
  let res: Response;
  try {
    res = await f(url, { ...init, signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    throw new UserDataReadError(source, `${url}: ${(e as Error).message}`);
  }
  if (!res.ok) throw new UserDataReadError(source, `${url}: HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

/** The raw user-data bytes, exactly as the platform hands them to cloud-init. */
export async function readUserData(
  source: UserDataSource | { file: string },
  deps: UserDataDeps = {},
): Promise<Buffer> {
  const f = deps.fetchImpl ?? fetch;
  const base = (deps.metadataBase ?? "http://169.254.169.254").replace(/\/+$/, "");
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
  switch (source) {
    case "ec2": {
      // IMDSv2: a session token first (IMDSv1 may be disabled, and should be).
      const token = (
        await fetchOk("ec2", f, `${base}/latest/api/token`, {
          method: "PUT",
          headers: { "x-aws-ec2-metadata-token-ttl-seconds": "60" },
        })
      ).toString("utf8");
      return fetchOk("ec2", f, `${base}/latest/user-data`, { headers: { "x-aws-ec2-metadata-token": token } });
    }
    case "azure": {
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
    case "gce":
      return fetchOk("gce", f, `${base}/computeMetadata/v1/instance/attributes/user-data`, {
        headers: { "metadata-flavor": "Google" },
      });
    case "nocloud": {
      const runner = deps.runner ?? spawnRunner;
      const devices = deps.seedDevices ?? ["/dev/disk/by-label/cidata", "/dev/disk/by-label/CIDATA"];
      const dev = devices.find((d) => existsSync(d));
      if (!dev) throw new UserDataReadError("nocloud", `no seed volume (${devices.join(", ")})`);
      const dir = await mkdtemp(path.join(tmpdir(), "bk-seed-"));
      try {
        const m = await runner.run(["mount", "-o", "ro", dev, dir]);
        if (m.code !== 0) throw new UserDataReadError("nocloud", `mount ${dev}: ${m.stderr.toString("utf8").trim()}`);
        try {
          return await readFile(path.join(dir, "user-data"));
        } catch (e) {
          throw new UserDataReadError("nocloud", `${dev}: no user-data (${(e as NodeJS.ErrnoException).code})`);
        } finally {
          await runner.run(["umount", dir]);
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
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
