// The engine types this build can mount. Each engine module registers its factory here (one line
// per type); `sys/mounts` / `sys/auth` then accept that type. See docs/runtime-internals.md.
import { BackendRegistry } from "./vault/registry.js";
import { KvV2Backend } from "./vault/engines/kv.js";
import { registerNitrideEngines } from "./nitride/register.js";

export function builtinRegistry(): BackendRegistry {
  const r = new BackendRegistry();
  r.registerSecret("kv", () => new KvV2Backend());
  // nitride (auto-mounted at nitride/), pki, transit, ssh and the jwt auth method.
  registerNitrideEngines(r);
  return r;
}
