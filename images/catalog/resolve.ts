// Deploy-time lookups over the catalog, with errors naming the field and the accepted values.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { FirmwareDescription } from "../snp/firmware-description.js";
import { CATALOG } from "./entries.js";
import { CatalogError } from "./errors.js";
import { INSTANCE_FAMILIES } from "./instance-types.js";
import {
  PLATFORMS,
  TEES,
  type CatalogEntry,
  type InstanceFamily,
  type InstanceType,
  type Platform,
  type Tee,
} from "./types.js";

export function checkPlatform(platform: string): Platform {
  if (!(PLATFORMS as readonly string[]).includes(platform))
    throw new CatalogError("platform", `'${platform}' is not a known platform`, PLATFORMS);
  return platform as Platform;
}

export function checkTee(tee: string): Tee {
  if (!(TEES as readonly string[]).includes(tee)) throw new CatalogError("tee", `'${tee}' is not a known TEE`, TEES);
  return tee as Tee;
}

/** TEEs a platform offers in the catalog. */
export function teesFor(platform: string): Tee[] {
  const p = checkPlatform(platform);
  return TEES.filter((t) => CATALOG.some((e) => e.platform === p && e.tee === t));
}

/** The catalog entry for platform × TEE: the named image, or the default one. */
export function resolveImage(platform: string, tee: string, name?: string): CatalogEntry {
  const p = checkPlatform(platform);
  const t = checkTee(tee);
  const candidates = CATALOG.filter((e) => e.platform === p && e.tee === t);
  if (candidates.length === 0) throw new CatalogError("tee", `${p} does not offer ${t}`, teesFor(p));
  const entry = name === undefined ? candidates.find((e) => e.isDefault) : candidates.find((e) => e.name === name);
  if (!entry)
    throw new CatalogError(
      "image",
      `'${name}' is not a ${p}/${t} image`,
      candidates.map((e) => e.name),
    );
  return entry;
}

function familiesFor(platform: Platform, tee?: Tee): readonly InstanceFamily[] {
  return INSTANCE_FAMILIES.filter((f) => f.platform === platform && (tee === undefined || f.tees.includes(tee)));
}

/** Every catalogued instance type of a platform (optionally only those supporting a TEE). */
export function instanceTypes(platform: string, tee?: string): InstanceType[] {
  const p = checkPlatform(platform);
  const t = tee === undefined ? undefined : checkTee(tee);
  return familiesFor(p, t).flatMap((f) => f.sizes.map((s) => ({ ...s, tees: f.tees, family: f.family })));
}

/** The family record (regions, CPU, source) an instance type belongs to. */
export function instanceFamily(platform: string, instanceType: string): InstanceFamily {
  const p = checkPlatform(platform);
  const families = familiesFor(p);
  if (families.length === 0)
    throw new CatalogError(
      "platform",
      `${p} has no instance types: give the vCPU count directly`,
      PLATFORMS.filter((x) => familiesFor(x).length > 0),
    );
  const family = families.find((f) => f.sizes.some((s) => s.name === instanceType));
  if (!family) {
    const allowed = families.flatMap((f) => f.sizes.map((s) => s.name));
    throw new CatalogError(
      "instanceType",
      `'${instanceType}' is not an SEV-SNP/TDX-capable ${p} instance type in the catalog`,
      allowed,
    );
  }
  return family;
}

/** vCPU count of an instance type; with `tee`, also checks the type supports that TEE. */
export function vcpusFor(platform: string, instanceType: string, tee?: string): number {
  const family = instanceFamily(platform, instanceType);
  if (tee !== undefined) {
    const t = checkTee(tee);
    if (!family.tees.includes(t)) {
      throw new CatalogError(
        "instanceType",
        `'${instanceType}' (${family.family}) does not support ${t}`,
        instanceTypes(platform, t).map((s) => s.name),
      );
    }
  }
  return family.sizes.find((s) => s.name === instanceType)!.vcpus;
}

/** Regions where the instance type's family offers its TEE, or null when no source lists them. */
export function regionsFor(platform: string, instanceType: string): string[] | null {
  return instanceFamily(platform, instanceType).regions;
}

/**
 * The SNP engine's firmware description for an entry whose firmware is known by hash + layout
 * (e.g. AWS): pass it as `snpLaunchDigest({ firmware, vcpus, vmm })`. `ovmfHash` picks one of the
 * entry's other known hashes instead of the default.
 */
export function snpFirmwareDescription(entry: CatalogEntry, ovmfHash?: string): FirmwareDescription {
  const fw = entry.firmware;
  if (fw.kind !== "snp-ovmf-hash") {
    throw new CatalogError(
      "firmware",
      `${entry.platform}/${entry.tee} firmware is '${fw.kind}', not known by hash and layout`,
      ["snp-ovmf-hash"],
    );
  }
  const known = [fw.ovmfHash, ...fw.otherKnownHashes.map((h) => h.ovmfHash)];
  const hash = ovmfHash ?? fw.ovmfHash;
  if (!known.includes(hash))
    throw new CatalogError("ovmfHash", `'${hash.slice(0, 16)}…' is not a known ${entry.platform} firmware hash`, known);
  return { ovmfHash: Buffer.from(hash, "hex"), resetEip: fw.resetEip, sections: fw.sections.map((s) => ({ ...s })) };
}

/**
 * Reads an entry's firmware file (or `path` instead of the catalogued one) and checks it is the pinned
 * build, so a measurement is never computed from a different firmware than the catalog describes.
 */
export function readFirmwareFile(entry: CatalogEntry, path?: string): Buffer {
  const fw = entry.firmware;
  if (fw.kind !== "file")
    throw new CatalogError("firmware", `${entry.platform}/${entry.tee} firmware is '${fw.kind}', not a file`, ["file"]);
  const file = path ?? fw.path;
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (e) {
    throw new CatalogError(
      "firmware",
      `${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (install ${fw.package})`,
    );
  }
  const sha = createHash("sha256").update(data).digest("hex");
  if (fw.sha256 !== "must be supplied" && sha !== fw.sha256) {
    throw new CatalogError("firmware", `${file} has SHA-256 ${sha}, not the catalogued ${fw.package} (${fw.sha256})`);
  }
  return data;
}
