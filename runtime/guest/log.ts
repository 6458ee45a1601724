// Journal output: one JSON object per line after a stable prefix, so `journalctl -u enclaivelet`
// is greppable ("enclaivelet: ") and machine-readable. Never pass secret material here.
export const LOG_PREFIX = "enclaivelet: ";

export type LogLevel = "info" | "warn" | "error";

export interface LogEvent {
  level: LogLevel;
  /** Stable event name, e.g. "attest.ok", "provision.file", "retry". */
  event: string;
  [field: string]: unknown;
}

export type Logger = (event: LogEvent) => void;

export function formatLogLine(e: LogEvent): string {
  return LOG_PREFIX + JSON.stringify({ ts: new Date().toISOString(), ...e });
}

/** Writes to stdout (journald captures it under the unit). */
export const stdoutLogger: Logger = (e) => {
  process.stdout.write(formatLogLine(e) + "\n");
};

/** Collects events in memory (tests, and for the status report). */
export function memoryLogger(sink: LogEvent[] = []): Logger & { events: LogEvent[] } {
  const log = ((e: LogEvent) => void sink.push(e)) as Logger & { events: LogEvent[] };
  log.events = sink;
  return log;
}
