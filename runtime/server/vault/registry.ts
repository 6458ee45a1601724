// Which engine types can be mounted. Engines register a factory per type; `sys/mounts` and
// `sys/auth` create instances from it. The built-in list lives in builtin-engines.ts.
import type { LogicalBackend } from "./backend.js";
import type { MountEntry } from "./mounts.js";

export type BackendFactory = (mount: MountEntry) => LogicalBackend;

export class BackendRegistry {
  readonly secret = new Map<string, BackendFactory>();
  readonly auth = new Map<string, BackendFactory>();

  registerSecret(type: string, factory: BackendFactory): this {
    this.secret.set(type, factory);
    return this;
  }
  registerAuth(type: string, factory: BackendFactory): this {
    this.auth.set(type, factory);
    return this;
  }
  clone(): BackendRegistry {
    const r = new BackendRegistry();
    for (const [k, v] of this.secret) r.secret.set(k, v);
    for (const [k, v] of this.auth) r.auth.set(k, v);
    return r;
  }
}
