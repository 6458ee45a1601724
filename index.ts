// Package root for Pulumi's component-provider analyzer (`pulumi package add`): it infers the schema
// other languages get from the TypeScript source reachable from here.
export * from "./components/index.js";
