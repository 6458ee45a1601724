// Typed input errors of the measurement engine: every rejection names the input field at fault, so
// callers (CLI, Pulumi components) can report it without parsing messages.

export class MeasurementInputError extends Error {
  override name = "MeasurementInputError";
  constructor(
    /** The input that is wrong, e.g. "ovmf", "vcpus", "kernel", "firmware.MetadataItems[2].GPA". */
    readonly field: string,
    /** What is wrong, without the field name. */
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}
