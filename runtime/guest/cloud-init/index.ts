// cloud-init rendering for the enclaivelet (no Pulumi imports: components and the CLI call it).
export * from "./secret.js";
export * from "./render.js";
