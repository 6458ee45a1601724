// Typed input error of the TDX measurement engine: names the input at fault ("firmware", "memory",
// "kernel", "acpi.tables" …) so the CLI and the Pulumi components can report it without parsing text.

export class TdxInputError extends Error {
  override name = "TdxInputError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}
