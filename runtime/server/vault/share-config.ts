// The secret_shares / secret_threshold rules shared by sys/init and sys/rekey/init (Vault's SealConfig.Validate).
import { LogicalError } from "./backend.js";

export function checkShareConfig(shares: number, threshold: number): void {
  if (!Number.isInteger(shares) || shares < 1 || shares > 255)
    throw new LogicalError(400, "secret_shares: must be between 1 and 255");
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > shares)
    throw new LogicalError(400, "secret_threshold: must be between 1 and secret_shares");
  if (shares > 1 && threshold < 2)
    throw new LogicalError(400, "secret_threshold: must be at least 2 when there is more than one share");
  if (shares === 1 && threshold !== 1) throw new LogicalError(400, "secret_threshold: must be 1 with a single share");
}
