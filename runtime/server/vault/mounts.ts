// The mount table: which engine (or auth method) serves which path prefix. Persisted in the barrier
// at core/mounts and core/auth, so it is encrypted like everything else and shared by replicas.
import { randomBytes, randomUUID } from "node:crypto";

export type MountKind = "secret" | "auth";

export interface MountEntry {
  /** Full routing prefix with trailing slash: "secret/", "auth/jwt/", "sys/". */
  path: string;
  kind: MountKind;
  type: string;
  description: string;
  accessor: string;
  uuid: string;
  options: Record<string, string>;
  config: { default_lease_ttl: number; max_lease_ttl: number };
  local: boolean;
  seal_wrap: boolean;
}

export function newMount(kind: MountKind, path: string, type: string, extra: Partial<MountEntry> = {}): MountEntry {
  return {
    path,
    kind,
    type,
    description: "",
    accessor: `${type}_${randomBytes(4).toString("hex")}`,
    uuid: randomUUID(),
    options: {},
    config: { default_lease_ttl: 0, max_lease_ttl: 0 },
    local: false,
    seal_wrap: false,
    ...extra,
  };
}

/** Storage prefix of a mount's private view. */
export function mountStoragePrefix(m: MountEntry): string {
  return m.kind === "auth" ? `auth/${m.uuid}/` : `logical/${m.uuid}/`;
}

/** Mount path validation: relative, slash-separated, no dot segments, trailing slash added. */
export function normalizeMountPath(raw: string): string | undefined {
  const p = raw.replace(/^\/+/, "").replace(/\/+$/, "");
  if (
    !p ||
    p.length > 200 ||
    !/^[A-Za-z0-9_.\-/]+$/.test(p) ||
    p.split("/").some((s) => s === "" || s === "." || s === "..")
  )
    return undefined;
  return p + "/";
}

/** The API shape of a mount in sys/mounts and sys/internal/ui/mounts. */
export function mountView(m: MountEntry): Record<string, unknown> {
  return {
    accessor: m.accessor,
    config: {
      default_lease_ttl: m.config.default_lease_ttl,
      max_lease_ttl: m.config.max_lease_ttl,
      force_no_cache: false,
    },
    description: m.description,
    external_entropy_access: false,
    local: m.local,
    options: Object.keys(m.options).length ? m.options : null,
    plugin_version: "",
    running_plugin_version: `v0.1.0+builtin`,
    running_sha256: "",
    seal_wrap: m.seal_wrap,
    type: m.type,
    uuid: m.uuid,
  };
}
