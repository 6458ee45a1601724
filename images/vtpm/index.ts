export * from "./predict.js";
export * from "./uki.js";
