// AMD Key Distribution Service client (https://kdsintf.amd.com): VCEK by hwID + TCB, the ASK/ASVK + ARK
// chain and the CRLs, behind an on-disk cache (KDS rate-limits) and a switch that forbids the network.
// Where a certificate came from never grants trust: the verifier checks the chain to the pinned ARK and the
// TCB/hwID binding regardless.
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { hwIdOf, type SnpProduct, type TcbVersion } from "./abi.js";

export const KDS_BASE_URL = "https://kdsintf.amd.com";

export interface KdsOptions {
  /** Directory for cached responses; without it, responses are kept in memory only. */
  cacheDir?: string;
  /** true: never touch the network; only cached responses are served. */
  offline?: boolean;
  baseUrl?: string;
  timeoutMs?: number;
  /** Injectable for tests of the online path; defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** Thrown when a KDS object is neither cached nor fetchable (offline, network error, HTTP error). */
export class KdsUnavailableError extends Error {
  override name = "KdsUnavailableError";
}

export type KdsRole = "vcek" | "vlek";

export function vcekPath(product: SnpProduct, chipId: Uint8Array, tcb: TcbVersion): string {
  const hw = Buffer.from(hwIdOf(chipId, product)).toString("hex");
  const q = new URLSearchParams();
  if (product === "Turin") q.set("fmcSPL", String(tcb.fmc ?? 0));
  q.set("blSPL", String(tcb.bootloader));
  q.set("teeSPL", String(tcb.tee));
  q.set("snpSPL", String(tcb.snp));
  q.set("ucodeSPL", String(tcb.microcode));
  return `/vcek/v1/${product}/${hw}?${q.toString()}`;
}

export function certChainPath(product: SnpProduct, role: KdsRole): string {
  return `/${role}/v1/${product}/cert_chain`;
}

export function crlPath(product: SnpProduct, role: KdsRole): string {
  return `/${role}/v1/${product}/crl`;
}

/** Cache file for a KDS path: stable, filesystem-safe, one file per object. */
function cacheFile(dir: string, urlPath: string): string {
  const [p, q] = urlPath.split("?");
  const parts = p
    .split("/")
    .filter(Boolean)
    .map((s) => s.replace(/[^A-Za-z0-9._-]/g, "_"));
  const leaf = q ? `${parts.pop()}_${q.replace(/[^A-Za-z0-9]+/g, "_")}` : parts.pop()!;
  return path.join(dir, ...parts, leaf + ".bin");
}

export class KdsClient {
  readonly offline: boolean;
  private readonly base: string;
  private memory = new Map<string, Uint8Array>();

  constructor(private readonly opts: KdsOptions = {}) {
    this.offline = opts.offline ?? false;
    this.base = (opts.baseUrl ?? KDS_BASE_URL).replace(/\/$/, "");
  }

  /** A client over the same caches that never touches the network (explain mode, audits). */
  offlineView(): KdsClient {
    const view = new KdsClient({ ...this.opts, offline: true });
    view.memory = this.memory;
    return view;
  }

  /** VCEK (DER) for a chip at a TCB (use REPORTED_TCB, not CURRENT_TCB). */
  vcek(product: SnpProduct, chipId: Uint8Array, tcb: TcbVersion): Promise<Uint8Array> {
    if (chipId.every((b) => b === 0))
      return Promise.reject(new KdsUnavailableError("CHIP_ID is masked (all zero): a VCEK cannot be looked up"));
    return this.get(vcekPath(product, chipId, tcb));
  }

  /** PEM bytes: ASK (or ASVK) then ARK. */
  certChain(product: SnpProduct, role: KdsRole): Promise<Uint8Array> {
    return this.get(certChainPath(product, role));
  }

  /** DER CRL signed by the ARK. `fresh` bypasses the cache (e.g. once the cached CRL's nextUpdate passed). */
  crl(product: SnpProduct, role: KdsRole, fresh = false): Promise<Uint8Array> {
    return this.get(crlPath(product, role), fresh);
  }

  private async get(urlPath: string, fresh = false): Promise<Uint8Array> {
    if (!fresh) {
      const hit = this.memory.get(urlPath) ?? (await this.readCache(urlPath));
      if (hit) {
        this.memory.set(urlPath, hit);
        return hit;
      }
    }
    if (this.offline) throw new KdsUnavailableError(`KDS ${urlPath}: not cached and network access is off (offline)`);
    const doFetch = this.opts.fetch ?? fetch;
    let res: Response;
    try {
      res = await doFetch(this.base + urlPath, { signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000) });
    } catch (e) {
      throw new KdsUnavailableError(`KDS ${urlPath}: ${(e as Error).message}`);
    }
    if (!res.ok) throw new KdsUnavailableError(`KDS ${urlPath}: HTTP ${res.status}`);
    const body = new Uint8Array(await res.arrayBuffer());
    this.memory.set(urlPath, body);
    await this.writeCache(urlPath, body);
    return body;
  }

  private async readCache(urlPath: string): Promise<Uint8Array | undefined> {
    if (!this.opts.cacheDir) return undefined;
    try {
      return new Uint8Array(await readFile(cacheFile(this.opts.cacheDir, urlPath)));
    } catch {
      return undefined;
    }
  }

  private async writeCache(urlPath: string, body: Uint8Array): Promise<void> {
    if (!this.opts.cacheDir) return;
    const file = cacheFile(this.opts.cacheDir, urlPath);
    await mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, body);
    await rename(tmp, file);
  }
}
