// Catalog lookups fail with the field at fault and the values that would have been accepted.
export class CatalogError extends Error {
  override name = "CatalogError";
  constructor(
    readonly field: string,
    message: string,
    readonly allowed: readonly string[] = [],
  ) {
    super(`${field}: ${message}${allowed.length ? ` (allowed: ${allowed.join(", ")})` : ""}`);
  }
}
