// Drives LogicalBackends directly (no HTTP) over MemoryStorage with a small in-process router as the
// SystemView, for unit tests of the Nitride backends and engines.
import { MemoryStorage } from "../../../../runtime/server/storage/memory.js";
import type {
  CallerAuth,
  LogicalBackend,
  LogicalResponse,
  Operation,
  SystemView,
} from "../../../../runtime/server/vault/backend.js";

export class Harness implements SystemView {
  readonly mounts = new Map<string, { backend: LogicalBackend; storage: MemoryStorage }>();
  constructor(readonly addr = "http://127.0.0.1:8200") {}

  async mount(path: string, backend: LogicalBackend): Promise<MemoryStorage> {
    const storage = new MemoryStorage();
    this.mounts.set(path.replace(/\/?$/, "/"), { backend, storage });
    await backend.initialize?.(storage, this);
    return storage;
  }

  async call(
    operation: Operation,
    fullPath: string,
    data: Record<string, unknown> = {},
    opts: { auth?: CallerAuth; query?: Record<string, string>; headers?: Record<string, string> } = {},
  ): Promise<LogicalResponse | undefined> {
    const mountPoint = [...this.mounts.keys()]
      .filter((m) => fullPath.startsWith(m))
      .sort((a, b) => b.length - a.length)[0];
    if (!mountPoint) throw new Error(`no mount for ${fullPath}`);
    const { backend, storage } = this.mounts.get(mountPoint)!;
    return backend.handle({
      operation,
      path: fullPath.slice(mountPoint.length),
      data,
      query: opts.query ?? {},
      storage,
      auth: opts.auth,
      mountPoint,
      clientIp: "127.0.0.1",
      headers: opts.headers ?? {},
      system: this,
    });
  }

  internalRequest(operation: Operation, path: string, data?: Record<string, unknown>) {
    return this.call(operation, path, data ?? {});
  }
  /** The harness is a trusted in-process caller: every delegation is allowed. */
  async authorized() {
    return true;
  }
  ttls() {
    return { defaultTtl: 3600, maxTtl: 86400 };
  }
  apiAddr() {
    return this.addr;
  }
}
