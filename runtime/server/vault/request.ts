// The first step of handling a request: from what HTTP delivered to one canonical request. The
// canonical path is computed here, once, and every later step (mount lookup, unauthenticated-path
// match, ACL, sudo rules, routing inside the engine, audit) uses that same value, so no two steps can
// disagree about which path a request is for.
import type { Operation } from "./backend.js";
import type { RawRequest, RawResponse } from "./core-view.js";

export interface CanonicalRequest {
  /** Request id (audit log, response envelope). */
  readonly id: string;
  /** Upper-cased HTTP method. */
  readonly method: string;
  /** The operation; an existence check may later turn `update` into `create`. */
  operation: Operation;
  /**
   * The canonical path after /v1/: no leading slash, no repeated slashes, and a trailing slash for
   * list operations (Vault's convention, which ACL globs rely on).
   */
  readonly path: string;
  /** `path` without trailing slashes: what exact-path rules (raw sys paths, sudo paths) compare with. */
  readonly bare: string;
  /** The JSON body as fields (empty when there is none). */
  readonly data: Record<string, unknown>;
  /** The client token, from X-Vault-Token or Authorization: Bearer. */
  readonly token: string | undefined;
  readonly raw: RawRequest;
}

/** Leading slashes removed, repeated slashes collapsed. */
export function canonicalPath(path: string): string {
  return path.replace(/^\/+/, "").replace(/\/{2,}/g, "/");
}

/** Vault's operation for an HTTP method (GET with ?list=true is a list); undefined if unsupported. */
export function operationOf(method: string, query: Record<string, string>): Operation | undefined {
  switch (method) {
    case "GET":
    case "HEAD":
      return query.list === "true" || query.list === "1" ? "list" : "read";
    case "LIST":
      return "list";
    case "POST":
    case "PUT":
      return "update";
    case "DELETE":
      return "delete";
    case "PATCH":
      return "patch";
  }
  return undefined;
}

export function tokenFrom(h: Record<string, string>): string | undefined {
  const t = h["x-vault-token"];
  if (t) return t;
  const a = h["authorization"];
  if (a && /^Bearer\s+/i.test(a)) return a.replace(/^Bearer\s+/i, "").trim();
  return undefined;
}

export function errorResponse(status: number, message: string): RawResponse {
  return { status, body: { errors: message ? [message] : [] } };
}

/** Canonicalises a request, or answers it at once when its method or body cannot be handled. */
export function canonicalRequest(raw: RawRequest, id: string): CanonicalRequest | RawResponse {
  const method = raw.method.toUpperCase();
  const operation = operationOf(method, raw.query);
  if (!operation) return errorResponse(405, "unsupported operation");
  let path = canonicalPath(raw.path);
  if (operation === "list" && !path.endsWith("/")) path += "/";
  const body = raw.body;
  if (body !== undefined && body !== null && (typeof body !== "object" || Array.isArray(body)))
    return errorResponse(400, "request body must be a JSON object");
  return {
    id,
    method,
    operation,
    path,
    bare: path.replace(/\/+$/, ""),
    data: (body ?? {}) as Record<string, unknown>,
    token: tokenFrom(raw.headers),
    raw,
  };
}
