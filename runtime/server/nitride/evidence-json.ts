// Wire evidence in attest/explain requests → Evidence: the protocol's decoder (runtime/protocol/evidence.ts)
// with its errors as Vault-shaped 400s naming the field.
import { LogicalError } from "../vault/backend.js";
import type { Evidence } from "../../attestation/types.js";
import { decodeEvidence } from "../../protocol/evidence.js";
import { WireFormatError } from "../../protocol/errors.js";

export function evidenceFromJson(v: unknown, field = "evidence"): Evidence {
  try {
    return decodeEvidence(v, field);
  } catch (e) {
    if (e instanceof WireFormatError) throw new LogicalError(400, e.message);
    throw e;
  }
}
