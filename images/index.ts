// Public API of the image and measurement engines (package export "buckypaper/images").
export * from "./snp/index.js";
export * from "./tdx/index.js";
export * from "./catalog/index.js";
export * from "./vtpm/index.js";
