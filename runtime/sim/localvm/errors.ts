// Errors of the local confidential VM: they name the field or file at fault, never a secret.
export class LocalVmError extends Error {
  override name = "LocalVmError";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}
