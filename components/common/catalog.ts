// The components' view of the image/firmware catalog (images/catalog): lookups whose CatalogError is
// re-raised as a ConfigError naming the component's own field.
import { CatalogError, regionsFor, resolveImage, vcpusFor, type CatalogEntry } from "../../images/index.js";
import { ConfigError } from "./errors.js";
import type { Platform, Tee } from "./types.js";

function rethrow(component: string, field: string, e: unknown): never {
  if (e instanceof CatalogError) {
    throw new ConfigError(
      component,
      field,
      e.message.replace(/^[^:]*: /, "").replace(/ \(allowed: .*\)$/, ""),
      e.allowed,
    );
  }
  throw e;
}

/** vCPUs of a cloud instance type that offers `tee`. */
export function catalogVcpus(component: string, field: string, platform: Platform, size: string, tee: Tee): number {
  try {
    return vcpusFor(platform, size, tee);
  } catch (e) {
    rethrow(component, field, e);
  }
}

/** Regions where the size's family offers its TEE (null: no source lists them). */
export function catalogRegions(platform: Platform, size: string): string[] | null {
  return regionsFor(platform, size);
}

export function catalogEntry(component: string, platform: Platform, tee: Tee, image?: string): CatalogEntry {
  try {
    return resolveImage(platform, tee, image);
  } catch (e) {
    rethrow(component, "image", e);
  }
}
