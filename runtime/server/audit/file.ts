// The file audit device: one JSON record per line, appended with O_APPEND and written synchronously
// before the request proceeds (as Vault, a request that cannot be audited is refused). The file is
// created 0600 and never truncated or rewritten.
import { openSync, writeSync, closeSync, fsyncSync, mkdirSync } from "node:fs";
import path from "node:path";

export interface AuditDevice {
  readonly type: string;
  readonly options: Record<string, string>;
  write(record: Record<string, unknown>): void;
  close(): void;
}

export class FileAuditDevice implements AuditDevice {
  readonly type = "file";
  private fd: number;
  constructor(
    readonly filePath: string,
    private readonly fsyncEach = false,
  ) {
    mkdirSync(path.dirname(filePath), { recursive: true });
    this.fd = openSync(filePath, "a", 0o600);
  }
  get options() {
    return { file_path: this.filePath };
  }
  write(record: Record<string, unknown>): void {
    writeSync(this.fd, JSON.stringify(record) + "\n");
    if (this.fsyncEach) fsyncSync(this.fd);
  }
  close(): void {
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}
