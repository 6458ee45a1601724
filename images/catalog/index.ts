// Image and firmware catalog: what components resolve at deploy time per platform × TEE.
export * from "./types.js";
export * from "./errors.js";
export * from "./entries.js";
export * from "./instance-types.js";
export * from "./resolve.js";
