// Fans audit records out to every enabled device. Records follow Vault's shape (type request /
// response, auth, request, response, error) with tokens and data strings HMAC'd; auth metadata
// (workload id, evidence digest, policy hash, reference-value version of attested logins) stays
// readable because it is what an auditor needs to link a secret release to its evidence.
import { randomUUID } from "node:crypto";
import { auditHash, hashStrings } from "./hmac.js";
import type { AuditDevice } from "./file.js";

export interface AuditAuth {
  accessor?: string;
  token?: string;
  policies?: string[];
  metadata?: Record<string, string>;
  displayName?: string;
}
export interface AuditRequest {
  id: string;
  operation: string;
  path: string;
  mountType?: string;
  data?: unknown;
  remoteAddress: string;
  auth?: AuditAuth;
}
export interface AuditResponse {
  status: number;
  data?: unknown;
  auth?: { client_token?: string; accessor?: string; policies?: string[]; metadata?: Record<string, string> };
  error?: string;
}

export class AuditBroker {
  private devices = new Map<string, AuditDevice>();
  constructor(private key: Buffer = Buffer.alloc(0)) {}

  setKey(key: Buffer) {
    this.key = key;
  }
  get enabled(): boolean {
    return this.devices.size > 0;
  }
  list(): Array<[string, AuditDevice]> {
    return [...this.devices];
  }
  add(path: string, d: AuditDevice) {
    this.devices.get(path)?.close();
    this.devices.set(path, d);
  }
  remove(path: string): boolean {
    const d = this.devices.get(path);
    d?.close();
    return this.devices.delete(path);
  }
  closeAll() {
    for (const d of this.devices.values()) d.close();
    this.devices.clear();
  }

  hash(value: string): string {
    return auditHash(this.key, value);
  }

  private authBlock(a?: AuditAuth) {
    if (!a) return undefined;
    return {
      client_token: a.token ? this.hash(a.token) : undefined,
      accessor: a.accessor ? this.hash(a.accessor) : undefined,
      display_name: a.displayName,
      policies: a.policies,
      metadata: a.metadata,
    };
  }

  private requestBlock(r: AuditRequest) {
    return {
      id: r.id,
      operation: r.operation,
      mount_type: r.mountType,
      path: r.path,
      namespace: { id: "root" },
      client_token: r.auth?.token ? this.hash(r.auth.token) : undefined,
      client_token_accessor: r.auth?.accessor ? this.hash(r.auth.accessor) : undefined,
      data: r.data === undefined ? undefined : hashStrings(this.key, r.data),
      remote_address: r.remoteAddress,
    };
  }

  logRequest(r: AuditRequest): void {
    if (!this.enabled) return;
    this.emit({
      time: new Date().toISOString(),
      type: "request",
      auth: this.authBlock(r.auth),
      request: this.requestBlock(r),
    });
  }

  logResponse(r: AuditRequest, res: AuditResponse): void {
    if (!this.enabled) return;
    const auth = res.auth && {
      client_token: res.auth.client_token ? this.hash(res.auth.client_token) : undefined,
      accessor: res.auth.accessor ? this.hash(res.auth.accessor) : undefined,
      policies: res.auth.policies,
      metadata: res.auth.metadata,
    };
    this.emit({
      time: new Date().toISOString(),
      type: "response",
      auth: this.authBlock(r.auth),
      request: this.requestBlock(r),
      response: {
        status: res.status,
        mount_type: r.mountType,
        data: res.data === undefined ? undefined : hashStrings(this.key, res.data),
        auth,
      },
      error: res.error,
    });
  }

  private emit(rec: Record<string, unknown>) {
    for (const d of this.devices.values()) d.write(rec);
  }
}

export const newRequestId = () => randomUUID();
