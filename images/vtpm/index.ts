export * from "./predict.js";
