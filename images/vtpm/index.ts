export * from "./predict.js";
export * from "./uki.js";
export * from "./disk.js";
export * from "./secure-boot.js";
