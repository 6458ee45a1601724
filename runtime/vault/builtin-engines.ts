// The engine types this build can mount. Each engine module registers its factory here (one line
// per type); `sys/mounts` / `sys/auth` then accept that type. See docs/runtime-internals.md.
import { BackendRegistry } from "./registry.js";
import { KvV2Backend } from "./engines/kv.js";

export function builtinRegistry(): BackendRegistry {
  const r = new BackendRegistry();
  r.registerSecret("kv", () => new KvV2Backend());
  // Engines of the Nitride/PKI/transit/SSH work register here, e.g.:
  //   r.registerSecret("pki", (m) => new PkiBackend());
  //   r.registerAuth("jwt", (m) => new JwtAuthBackend());
  return r;
}
