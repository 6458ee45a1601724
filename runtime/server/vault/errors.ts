// Errors the core raises; the HTTP layer renders every one as Vault's {"errors": [...]} shape.
import { LogicalError } from "./backend.js";

export { LogicalError };

export class SealedError extends LogicalError {
  override name = "SealedError";
  constructor() {
    super(503, "Vault is sealed");
  }
}

export class PermissionDeniedError extends LogicalError {
  override name = "PermissionDeniedError";
  constructor(message = "permission denied") {
    super(403, message);
  }
}

export const badRequest = (message: string) => new LogicalError(400, message);
