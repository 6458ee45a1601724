// Measured-boot policy over EVENTS of a replayed, quoted event log — so cloud firmware events (PCR 0-3, 5, 6)
// need not be predicted. What it can check, and why each rule is as strict as it is:
//   PCR 4  EV_EFI_BOOT_SERVICES_APPLICATION digests are PE Authenticode hashes (shim, grub, kernel or a UKI):
//          every one must be allowed, the required ones must appear. For a UKI, its Authenticode hash covers
//          .linux, .initrd and .cmdline, so this alone binds kernel, initrd and command line.
//   PCR 7  Secure Boot: EV_EFI_VARIABLE_DRIVER_CONFIG events are digests of the whole UEFI_VARIABLE_DATA, so
//          their data is checked against the digest before the SecureBoot/PK/KEK/db/dbx values are believed.
//          EV_EFI_VARIABLE_AUTHORITY events name the db entry (EFI_SIGNATURE_DATA: owner GUID + X.509 DER) that
//          verified an image; with Secure Boot on, every image firmware started after the separator was verified
//          by one of them — so "the db certificate I registered, and no other entry, verified what booted".
//   cmdline grub (PCR 8, "kernel_cmdline: X", digest = H(X)), the Linux EFI stub (PCR 9 EV_EVENT_TAG
//          LOAD_OPTIONS, digest = H(UTF-16 options)) and systemd-stub overrides (PCR 12 EV_IPL): every
//          measured command line must be an allowed one. In PCR 8 every event must be data-bound, so no
//          event can be relabelled to hide a command line.
//   initrd Linux EFI stub PCR 9 EV_EVENT_TAG INITRD: digest = H(initrd).
// The log is unsigned: only events of PCRs the verified quote covers and the log replays to are read.
import { createHash } from "node:crypto";
import { EvidenceFormatError, type Check } from "../types.js";
import type { HashName } from "./abi.js";
import {
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  EV,
  eventDataIsDigested,
  guidText,
  LINUX_EVENT_TAG,
  parseTaggedEvent,
  parseUefiVariableData,
  type EventLog,
  type TcgEvent,
} from "./eventlog.js";
import type { TpmVerification } from "./verify.js";

export type SecureBootVariable = "PK" | "KEK" | "db" | "dbx";

export interface MeasuredBootPolicy {
  /** PCR bank whose digests the policy's values are in. Default sha256. */
  bank?: HashName;
  /** PCR 4 boot applications, PE Authenticode digests (hex) in `bank`. */
  bootApplications?: { allowed: string[]; required?: string[] };
  /** Allowed kernel command lines; every measured command line must be one of them. */
  kernelCmdline?: {
    allowed: string[];
    /** Substrings each measured command line must contain (e.g. "roothash=<hex>"). */
    mustContain?: string[];
    /**
     * A UKI's .cmdline is covered by its PE digest (bootApplications.required): then no separately measured
     * command line is needed, and any override in PCR 12 must still be an allowed one.
     */
    boundByUki?: boolean;
  };
  /** Allowed initrd digests (hex, `bank`) measured by the Linux EFI stub in PCR 9. */
  initrd?: string[];
  /** Secure Boot state and key databases: digests (hex, `bank`) of the variables' data. */
  secureBoot?: {
    enabled?: boolean;
    /**
     * SHA-256 (hex, whatever the bank) of the DER X.509 certificates in db allowed to have verified the boot
     * (EV_EFI_VARIABLE_AUTHORITY): Secure Boot must be on, one of them must appear, and every authority logged
     * after PCR 7's separator (the boot path, not firmware drivers) must be one of them.
     */
    authorities?: string[];
  } & Partial<Record<SecureBootVariable, string>>;
  /** Exact PCR values (hex, `bank`) for PCRs that are predictable as a whole. */
  pcrs?: Record<string, string>;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const lc = (xs: string[]) => xs.map((x) => x.toLowerCase());

/** The byte encodings a command line is measured in by grub, the Linux stub and systemd-stub. */
export function cmdlineDigests(cmdline: string, hash: HashName): string[] {
  const forms = [
    Buffer.from(cmdline, "utf8"),
    Buffer.from(cmdline + "\0", "utf8"),
    Buffer.from(cmdline, "utf16le"),
    Buffer.from(cmdline + "\0", "utf16le"),
  ];
  return forms.map((f) => createHash(hash).update(f).digest("hex"));
}

interface Ctx {
  log: EventLog;
  bank: HashName;
  covered: Set<number>;
}

function needPcrs(ctx: Ctx, id: string, pcrs: number[]): Check | undefined {
  const missing = pcrs.filter((p) => !ctx.covered.has(p));
  if (missing.length === 0) return undefined;
  return {
    id,
    ok: false,
    detail: `PCR ${missing.join(", ")} (${ctx.bank}) not covered by a verified quote and replayed log: its events cannot be believed`,
  };
}

const eventsIn = (ctx: Ctx, pcr: number) => ctx.log.events.filter((e) => e.pcr === pcr && e.type !== EV.NO_ACTION);
const dg = (ctx: Ctx, e: TcgEvent) => hex(e.digests[ctx.bank]!);

function checkSeparators(ctx: Ctx): Check {
  const bad: string[] = [];
  for (const e of ctx.log.events) {
    if (e.type !== EV.SEPARATOR || !ctx.covered.has(e.pcr)) continue;
    if (!eventDataIsDigested(e, ctx.bank)) bad.push(`event ${e.index} (PCR ${e.pcr}) digest is not H(data)`);
    else if (!(e.data.length === 4 && e.data.every((x) => x === 0)))
      bad.push(`event ${e.index} (PCR ${e.pcr}) is an error separator`);
  }
  return {
    id: "boot.separators",
    ok: bad.length === 0,
    detail: bad.length ? bad.join("; ") : "EV_SEPARATOR events are data-bound and mark a normal (non-error) boot",
  };
}

function checkBootApps(ctx: Ctx, p: NonNullable<MeasuredBootPolicy["bootApplications"]>): Check {
  const id = "boot.applications";
  const miss = needPcrs(ctx, id, [4]);
  if (miss) return miss;
  const allowed = new Set(lc([...p.allowed, ...(p.required ?? [])]));
  const seen: string[] = [];
  const bad: string[] = [];
  for (const e of eventsIn(ctx, 4)) {
    if (e.type === EV.EFI_BOOT_SERVICES_APPLICATION) {
      seen.push(dg(ctx, e));
      if (!allowed.has(dg(ctx, e))) bad.push(`boot application ${dg(ctx, e)} (event ${e.index}) is not allowed`);
    } else if (e.type === EV.EFI_ACTION || e.type === EV.SEPARATOR) {
      if (!eventDataIsDigested(e, ctx.bank)) bad.push(`event ${e.index} ${e.typeName} digest is not H(data)`);
    } else bad.push(`unexpected ${e.typeName} (event ${e.index}) in PCR 4`);
  }
  for (const r of lc(p.required ?? [])) if (!seen.includes(r)) bad.push(`required boot application ${r} was not run`);
  return {
    id,
    ok: bad.length === 0,
    detail: bad.length ? bad.join("; ") : `PCR 4 boot applications all allowed: ${seen.join(", ") || "none"}`,
  };
}

interface FoundCmdline {
  event: number;
  pcr: number;
  /** Decoded text when the data is bound by the digest, else the allowed value the digest matched. */
  text?: string;
  digest: string;
}

function collectCmdlines(ctx: Ctx, allowed: string[]): { found: FoundCmdline[]; problems: string[] } {
  const found: FoundCmdline[] = [];
  const problems: string[] = [];
  const byDigest = new Map<string, string>();
  for (const c of allowed) for (const d of cmdlineDigests(c, ctx.bank)) byDigest.set(d, c);
  // grub: PCR 8, EV_IPL "<kind>: X\0" with digest H(X). Every PCR 8 event must be bound this way.
  for (const e of ctx.covered.has(8) ? eventsIn(ctx, 8) : []) {
    const s = Buffer.from(e.data).toString("utf8").replace(/\0$/, "");
    const m = /^(kernel_cmdline|module_cmdline|grub_cmd): (.*)$/s.exec(s);
    const bound = m && createHash(ctx.bank).update(m[2], "utf8").digest("hex") === dg(ctx, e);
    if (e.type !== EV.IPL || !m || !bound) {
      problems.push(`PCR 8 event ${e.index} (${e.typeName}) is not a grub string bound to its digest`);
      continue;
    }
    if (m[1] === "kernel_cmdline") found.push({ event: e.index, pcr: 8, text: m[2], digest: dg(ctx, e) });
  }
  // Linux EFI stub: PCR 9 tagged LOAD_OPTIONS (digest of the UTF-16 options; the data is only a label).
  for (const e of ctx.covered.has(9) ? eventsIn(ctx, 9) : []) {
    if (e.type !== EV.EVENT_TAG) continue;
    let tag;
    try {
      tag = parseTaggedEvent(e.data);
    } catch {
      continue;
    }
    if (tag.id === LINUX_EVENT_TAG.loadOptions)
      found.push({ event: e.index, pcr: 9, text: byDigest.get(dg(ctx, e)), digest: dg(ctx, e) });
  }
  // systemd-stub: PCR 12 EV_IPL = a command line that overrides the UKI's (or credentials/sysexts).
  for (const e of ctx.covered.has(12) ? eventsIn(ctx, 12) : [])
    if (e.type === EV.IPL) found.push({ event: e.index, pcr: 12, text: byDigest.get(dg(ctx, e)), digest: dg(ctx, e) });
  return { found, problems };
}

function checkCmdline(ctx: Ctx, p: NonNullable<MeasuredBootPolicy["kernelCmdline"]>): Check {
  const id = "boot.kernel-cmdline";
  // Every PCR a command line can be measured into must be covered, or a bad one could hide in an unquoted PCR.
  const miss = needPcrs(ctx, id, p.boundByUki ? [4, 8, 9, 12] : [8, 9, 12]);
  if (miss) return miss;
  const { found, problems } = collectCmdlines(ctx, p.allowed);
  for (const f of found) {
    if (f.text === undefined || !p.allowed.includes(f.text)) {
      problems.push(`PCR ${f.pcr} event ${f.event} measured a command line that is not allowed (digest ${f.digest})`);
      continue;
    }
    for (const want of p.mustContain ?? [])
      if (!f.text.includes(want)) problems.push(`command line of event ${f.event} lacks '${want}'`);
  }
  if (!p.boundByUki && found.length === 0) problems.push("no kernel command line was measured in PCR 8, 9 or 12");
  if (p.boundByUki)
    for (const want of p.mustContain ?? [])
      if (!p.allowed.every((a) => a.includes(want))) problems.push(`an allowed command line lacks '${want}'`);
  return {
    id,
    ok: problems.length === 0,
    detail: problems.length
      ? problems.join("; ")
      : found.length
        ? `measured command line(s) allowed: ${found.map((f) => `PCR ${f.pcr} '${f.text}'`).join(", ")}`
        : "command line bound by the UKI's Authenticode digest; no override measured",
  };
}

function checkInitrd(ctx: Ctx, allowed: string[]): Check {
  const id = "boot.initrd";
  const miss = needPcrs(ctx, id, [9]);
  if (miss) return miss;
  const ok = new Set(lc(allowed));
  const seen: string[] = [];
  const bad: string[] = [];
  for (const e of eventsIn(ctx, 9)) {
    if (e.type !== EV.EVENT_TAG) continue;
    let tag;
    try {
      tag = parseTaggedEvent(e.data);
    } catch {
      continue;
    }
    if (tag.id !== LINUX_EVENT_TAG.initrd) continue;
    seen.push(dg(ctx, e));
    if (!ok.has(dg(ctx, e))) bad.push(`initrd ${dg(ctx, e)} (event ${e.index}) is not allowed`);
  }
  if (seen.length === 0) bad.push("no initrd measured by the Linux EFI stub in PCR 9");
  return { id, ok: bad.length === 0, detail: bad.length ? bad.join("; ") : `initrd allowed: ${seen.join(", ")}` };
}

function checkSecureBoot(ctx: Ctx, p: NonNullable<MeasuredBootPolicy["secureBoot"]>): Check {
  const id = "boot.secure-boot";
  const miss = needPcrs(ctx, id, [7]);
  if (miss) return miss;
  const vars = new Map<string, Uint8Array>();
  const bad: string[] = [];
  for (const e of eventsIn(ctx, 7)) {
    if (e.type !== EV.EFI_VARIABLE_DRIVER_CONFIG) continue;
    if (!eventDataIsDigested(e, ctx.bank)) {
      bad.push(`PCR 7 event ${e.index} variable data is not what its digest covers`);
      continue;
    }
    try {
      const v = parseUefiVariableData(e.data, `event[${e.index}]`);
      const known =
        (v.guid === EFI_GLOBAL_VARIABLE && ["SecureBoot", "PK", "KEK"].includes(v.name)) ||
        (v.guid === EFI_IMAGE_SECURITY_DATABASE && ["db", "dbx"].includes(v.name));
      if (!known) continue;
      if (vars.has(v.name)) bad.push(`${v.name} measured twice (event ${e.index})`);
      vars.set(v.name, v.data);
    } catch (err) {
      bad.push((err as Error).message);
    }
  }
  const sb = vars.get("SecureBoot");
  const enabled = !!sb && sb.length === 1 && sb[0] === 1;
  if (p.enabled !== undefined && enabled !== p.enabled)
    bad.push(
      `Secure Boot is ${enabled ? "enabled" : sb ? "disabled" : "not measured"}, policy wants it ${p.enabled ? "enabled" : "disabled"}`,
    );
  for (const name of ["PK", "KEK", "db", "dbx"] as const) {
    const want = p[name];
    if (!want) continue;
    const v = vars.get(name);
    const got = v ? createHash(ctx.bank).update(v).digest("hex") : undefined;
    if (got !== want.toLowerCase()) bad.push(`${name} ${got ? `digest ${got}` : "not measured"}, expected ${want}`);
  }
  return {
    id,
    ok: bad.length === 0,
    detail: bad.length
      ? bad.join("; ")
      : `Secure Boot ${enabled ? "enabled" : "disabled"}; ${["PK", "KEK", "db", "dbx"].filter((n) => p[n as SecureBootVariable]).join(", ") || "no key databases"} as expected`,
  };
}

/** EFI_SIGNATURE_DATA of an authority event: SignatureOwner GUID, then the db entry (a DER certificate or a hash). */
export function parseAuthoritySignatureData(
  data: Uint8Array,
  where = "event",
): { owner: string; entry: Uint8Array; x509: boolean } {
  if (data.length < 16 + 32)
    throw new EvidenceFormatError(`${where}: EFI_SIGNATURE_DATA of ${data.length} bytes`, where);
  const entry = data.subarray(16);
  // A DER certificate is one SEQUENCE spanning the entry exactly (long-form length of 1-3 bytes).
  let x509 = false;
  if (entry[0] === 0x30 && entry.length >= 4) {
    const l = entry[1];
    let len = -1;
    let hdr = 2;
    if (l < 0x80) len = l;
    else if (l >= 0x81 && l <= 0x83) {
      hdr = 2 + (l & 0x7f);
      len = 0;
      for (let i = 2; i < hdr && i < entry.length; i++) len = len * 256 + entry[i];
    }
    x509 = len >= 0 && hdr + len === entry.length;
  }
  return { owner: guidText(data.subarray(0, 16)), entry, x509 };
}

function checkSecureBootAuthority(ctx: Ctx, allowedCerts: string[]): Check {
  const id = "boot.secure-boot-authority";
  const miss = needPcrs(ctx, id, [7]);
  if (miss) return miss;
  const allowed = new Set(lc(allowedCerts));
  const bad: string[] = [];
  const seen: string[] = [];
  let secureBoot: boolean | undefined;
  let separated = false;
  for (const e of eventsIn(ctx, 7)) {
    if (e.type === EV.SEPARATOR) {
      separated = true;
      continue;
    }
    if (e.type === EV.EFI_VARIABLE_DRIVER_CONFIG) {
      if (!eventDataIsDigested(e, ctx.bank)) continue; // boot.secure-boot names it; nothing here is believed
      try {
        const v = parseUefiVariableData(e.data, `event[${e.index}]`);
        if (v.guid === EFI_GLOBAL_VARIABLE && v.name === "SecureBoot")
          secureBoot = secureBoot === undefined && v.data.length === 1 && v.data[0] === 1;
      } catch {
        /* named by boot.secure-boot */
      }
      continue;
    }
    if (e.type !== EV.EFI_VARIABLE_AUTHORITY) continue;
    if (!eventDataIsDigested(e, ctx.bank)) {
      bad.push(`PCR 7 authority event ${e.index} data is not what its digest covers`);
      continue;
    }
    let what: string;
    try {
      const v = parseUefiVariableData(e.data, `event[${e.index}]`);
      if (v.guid !== EFI_IMAGE_SECURITY_DATABASE || v.name !== "db") {
        if (separated) bad.push(`event ${e.index}: an image was verified by ${v.name} (${v.guid}), not by db`);
        continue;
      }
      const sig = parseAuthoritySignatureData(v.data, `event[${e.index}].VariableData`);
      const d = createHash("sha256").update(sig.entry).digest("hex");
      what = sig.x509 ? d : `hash entry ${Buffer.from(sig.entry).toString("hex")}`;
      if (sig.x509 && allowed.has(d)) {
        seen.push(d);
        continue;
      }
    } catch (err) {
      bad.push((err as Error).message);
      continue;
    }
    // Before the separator firmware verifies its own drivers and option ROMs; after it, the boot path.
    if (separated) bad.push(`event ${e.index}: an image was verified by db entry ${what}, which is not allowed`);
  }
  if (secureBoot !== true)
    bad.push(
      `Secure Boot is ${secureBoot === false ? "disabled (or measured twice)" : "not measured"}: no image had to be verified`,
    );
  if (seen.length === 0) bad.push(`no image was verified by an allowed db certificate (${[...allowed].join(", ")})`);
  return {
    id,
    ok: bad.length === 0,
    detail: bad.length
      ? bad.join("; ")
      : `Secure Boot on; the boot path was verified by db certificate ${[...new Set(seen)].join(", ")} only`,
  };
}

function checkPcrs(v: TpmVerification, bank: HashName, want: Record<string, string>): Check {
  const quoted = v.quotedPcrs[bank] ?? {};
  const bad: string[] = [];
  for (const [i, value] of Object.entries(want)) {
    const got = quoted[Number(i)];
    if (got === undefined) bad.push(`PCR ${i} not quoted`);
    else if (got !== value.toLowerCase()) bad.push(`PCR ${i} is ${got}, expected ${value}`);
  }
  return {
    id: "boot.pcrs",
    ok: bad.length === 0,
    detail: bad.length ? bad.join("; ") : `PCR ${Object.keys(want).join(", ")} as expected`,
  };
}

/** Appraises a verified vTPM quote + event log against the measured-boot policy. One check per rule. */
export function appraiseMeasuredBoot(v: TpmVerification, policy: MeasuredBootPolicy): Check[] {
  const bank = policy.bank ?? "sha256";
  const checks: Check[] = [];
  if (!v.log) return [{ id: "boot.event-log", ok: false, detail: "no verified event log to appraise" }];
  const ctx: Ctx = { log: v.log, bank, covered: new Set(v.replayed[bank] ?? []) };
  if (ctx.covered.size === 0)
    return [{ id: "boot.event-log", ok: false, detail: `no ${bank} PCRs are both quoted and replayed by the log` }];
  checks.push(checkSeparators(ctx));
  if (policy.bootApplications) checks.push(checkBootApps(ctx, policy.bootApplications));
  if (policy.kernelCmdline) checks.push(checkCmdline(ctx, policy.kernelCmdline));
  if (policy.initrd) checks.push(checkInitrd(ctx, policy.initrd));
  if (policy.secureBoot) checks.push(checkSecureBoot(ctx, policy.secureBoot));
  if (policy.secureBoot?.authorities) checks.push(checkSecureBootAuthority(ctx, policy.secureBoot.authorities));
  if (policy.pcrs) checks.push(checkPcrs(v, bank, policy.pcrs));
  return checks;
}

/**
 * True when the policy binds the OS: a boot application (kernel/UKI) is required, or an exact PCR 4 value. Not PCR
 * 11 alone: it starts at zero and only software extends it (systemd-stub, before the kernel), so an OS the firmware
 * booted some other way — e.g. a signed shim chain — can extend the UKI's known section digests itself and reach the
 * registered value. PCR 4 is extended by the firmware with what it actually ran; PCR 11 counts only beside it.
 */
export function bindsOs(policy: MeasuredBootPolicy | undefined): boolean {
  if (!policy) return false;
  if ((policy.bootApplications?.required?.length ?? 0) > 0) return true;
  return !!policy.pcrs && "4" in policy.pcrs;
}
