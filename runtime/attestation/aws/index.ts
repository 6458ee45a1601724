// AWS NitroTPM attestation documents: strict CBOR subset (cbor), COSE_Sign1 layout (abi), signature and chain
// to the pinned AWS Nitro root (verify), and what the document must say about a vTPM quote (validate).
export * from "./cbor.js";
export * from "./abi.js";
export * from "./roots.js";
export * from "./verify.js";
export * from "./validate.js";
export * from "./ek.js";
