// Public entry point of the `buckypaper` package (package.json "main"). Each component area adds its
// exports here.
export { Vhsm, VhsmMode, renderRuntimeConfig } from "./vhsm.js";
export type { VhsmArgs, VhsmSshArgs } from "./vhsm.js";
export { Workload, Secret, Policy, PkiRole, SshRole, JwtRole, RuntimeService } from "../provider/resources.js";
