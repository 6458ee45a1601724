// The error every boot-chain prediction throws: names the input field and says what is wrong with it.
export class BootPredictionError extends Error {
  override name = "BootPredictionError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}
