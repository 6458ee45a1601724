// A measured boot as OVMF + shim + grub + the Linux EFI stub log it (TCG PC Client PFP event types and data
// layouts), built event by event: the log bytes and the (PCR, SHA-256 digest) extends a TPM must see.
// Cloud firmware events (PCR 0-3, 5, 6) carry arbitrary digests, as a verifier that does not predict them sees.
import { createHash, generateKeyPairSync } from "node:crypto";
import {
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  EV,
  LINUX_EVENT_TAG,
  encodeEvent2,
  encodeSpecIdHeader,
  encodeTaggedEvent,
  encodeUefiVariableData,
  type MeasuredBootPolicy,
} from "../../../runtime/attestation/tpm/index.js";

export interface BootSpec {
  cmdline?: string;
  initrd?: Buffer;
  /** Authenticode digests (SHA-256) of shim, grub, kernel. */
  apps?: string[];
  secureBoot?: boolean;
  db?: Buffer;
  /** Extra PCR 8 event data/digest pairs (tampering tests). */
  extraPcr8?: { data: Buffer; digest: Buffer }[];
  /** A systemd-stub-style PCR 12 command-line override (UTF-16). */
  pcr12Cmdline?: string;
  /** Log a SHA-384 bank too (NitroTPM): `extends384` and `policy384` are then filled. */
  sha384?: boolean;
  /** The SHA-384 Authenticode digests of `apps` (default: stand-ins derived from them). */
  apps384?: string[];
  /** systemd-stub's PCR 11 measurements of a UKI (EV_IPL; each digest the hash of the buffer in every bank). */
  pcr11?: Buffer[];
  /** The EV_EFI_VARIABLE_AUTHORITY data (db entry that verified the boot application) logged in PCR 7. */
  pcr7Authority?: Buffer;
}

export interface BootLog {
  log: Buffer;
  extends: [number, Buffer][];
  policy: MeasuredBootPolicy;
  /** Byte offsets of each event (index 1..n) in `log`. */
  offsets: number[];
  /** With `sha384`: the SHA-384 extends and the same policy in the sha384 bank. */
  extends384: [number, Buffer][];
  policy384?: MeasuredBootPolicy;
}

/** SHA-384 "Authenticode" stand-ins of DEFAULT_APPS (derived from them, like the SHA-256 ones are made up). */
export const DEFAULT_APPS_384 = ["shim", "grub", "kernel"].map((n) =>
  createHash("sha384").update(`authenticode:${n}`).digest("hex"),
);

const sha = (h: "sha1" | "sha256" | "sha384", ...parts: (Buffer | string)[]) => {
  const x = createHash(h);
  for (const p of parts) x.update(p);
  return x.digest();
};

export const DEFAULT_CMDLINE =
  "BOOT_IMAGE=/vmlinuz root=/dev/mapper/root ro roothash=4f1e0c6b2a9d8e7f60514233241506f7e8d9cab0b1c2d3e4f5061728394a5b6c console=ttyS0";
export const DEFAULT_APPS = ["shim", "grub", "kernel"].map((n) => sha("sha256", `authenticode:${n}`).toString("hex"));
export const DEFAULT_INITRD = Buffer.from("initrd image bytes");

export function buildBootLog(spec: BootSpec = {}): BootLog {
  const cmdline = spec.cmdline ?? DEFAULT_CMDLINE;
  const initrd = spec.initrd ?? DEFAULT_INITRD;
  const apps = spec.apps ?? DEFAULT_APPS;
  const banks: ("sha1" | "sha256" | "sha384")[] = spec.sha384 ? ["sha1", "sha256", "sha384"] : ["sha1", "sha256"];
  const parts: Buffer[] = [encodeSpecIdHeader(banks)];
  const extendsOut: [number, Buffer][] = [];
  const extends384: [number, Buffer][] = [];
  const offsets: number[] = [];
  let offset = parts[0].length;
  /** Event whose digest is H(content) (content defaults to the event data). */
  const add = (
    pcr: number,
    type: number,
    data: Buffer,
    content: Buffer | { sha256: Buffer; sha1: Buffer; sha384?: Buffer } = data,
  ) => {
    const d = Buffer.isBuffer(content)
      ? { sha1: sha("sha1", content), sha256: sha("sha256", content), sha384: sha("sha384", content) }
      : { ...content, sha384: content.sha384 ?? sha("sha384", content.sha256) };
    const ev = encodeEvent2(
      pcr,
      type,
      [["sha1", d.sha1], ["sha256", d.sha256], ...(spec.sha384 ? [["sha384", d.sha384] as ["sha384", Buffer]] : [])],
      data,
    );
    offsets.push(offset);
    offset += ev.length;
    parts.push(ev);
    if (type !== EV.NO_ACTION) {
      extendsOut.push([pcr, d.sha256]);
      extends384.push([pcr, d.sha384]);
    }
  };
  const opaque = (label: string) => ({
    sha1: sha("sha1", label),
    sha256: sha("sha256", label),
    sha384: sha("sha384", label),
  });
  // Firmware (unpredicted on a cloud).
  add(0, EV.S_CRTM_VERSION, Buffer.from("C\0l\0o\0u\0d\0\0\0", "latin1"));
  add(0, EV.EFI_PLATFORM_FIRMWARE_BLOB, Buffer.alloc(16), opaque("firmware volume"));
  add(1, EV.EFI_VARIABLE_BOOT, Buffer.from("BootOrder"), opaque("boot order"));
  // Secure Boot state and key databases.
  const sbVar = (guid: string, name: string, value: Buffer) => {
    const data = encodeUefiVariableData(guid, name, value);
    add(7, EV.EFI_VARIABLE_DRIVER_CONFIG, data);
  };
  sbVar(EFI_GLOBAL_VARIABLE, "SecureBoot", Buffer.from([spec.secureBoot === false ? 0 : 1]));
  sbVar(EFI_GLOBAL_VARIABLE, "PK", Buffer.from("PK signature list"));
  sbVar(EFI_GLOBAL_VARIABLE, "KEK", Buffer.from("KEK signature list"));
  sbVar(EFI_IMAGE_SECURITY_DATABASE, "db", spec.db ?? Buffer.from("db signature list"));
  sbVar(EFI_IMAGE_SECURITY_DATABASE, "dbx", Buffer.from("dbx signature list"));
  add(4, EV.EFI_ACTION, Buffer.from("Calling EFI Application from Boot Option"));
  for (let pcr = 0; pcr <= 7; pcr++) add(pcr, EV.SEPARATOR, Buffer.alloc(4));
  if (spec.pcr7Authority) add(7, EV.EFI_VARIABLE_AUTHORITY, spec.pcr7Authority);
  // Boot applications: shim, grub, kernel (Authenticode digests; the data is an EFI_IMAGE_LOAD_EVENT).
  for (const [i, a] of apps.entries())
    add(4, EV.EFI_BOOT_SERVICES_APPLICATION, Buffer.alloc(32, 0xaa), {
      sha256: Buffer.from(a, "hex"),
      sha1: sha("sha1", a),
      sha384: spec.apps384?.[i]
        ? Buffer.from(spec.apps384[i], "hex")
        : a === DEFAULT_APPS[i]
          ? Buffer.from(DEFAULT_APPS_384[i], "hex")
          : sha("sha384", a),
    });
  for (const m of spec.pcr11 ?? []) add(11, EV.IPL, Buffer.from("systemd-stub section\0"), m);
  // grub: commands and the kernel command line in PCR 8, files in PCR 9.
  const grub = (kind: string, s: string) => add(8, EV.IPL, Buffer.from(`${kind}: ${s}\0`), Buffer.from(s));
  grub("grub_cmd", "set root=hd0,gpt1");
  grub("grub_cmd", `linux /vmlinuz ${cmdline}`);
  grub("kernel_cmdline", cmdline);
  for (const x of spec.extraPcr8 ?? []) add(8, EV.IPL, x.data, { sha256: x.digest, sha1: sha("sha1", x.digest) });
  add(9, EV.IPL, Buffer.from("/boot/grub/grub.cfg\0"), opaque("grub.cfg"));
  // Linux EFI stub: initrd and load options as tagged events in PCR 9.
  add(9, EV.EVENT_TAG, encodeTaggedEvent(LINUX_EVENT_TAG.initrd, Buffer.from("Linux initrd\0")), initrd);
  add(
    9,
    EV.EVENT_TAG,
    encodeTaggedEvent(LINUX_EVENT_TAG.loadOptions, Buffer.from("LOADED_IMAGE::LoadOptions\0")),
    Buffer.from(cmdline, "utf16le"),
  );
  if (spec.pcr12Cmdline)
    add(12, EV.IPL, Buffer.from("kernel command line\0"), Buffer.from(spec.pcr12Cmdline + "\0", "utf16le"));
  const policy: MeasuredBootPolicy = {
    bootApplications: { allowed: DEFAULT_APPS, required: [DEFAULT_APPS[2]] },
    kernelCmdline: { allowed: [DEFAULT_CMDLINE], mustContain: ["roothash=4f1e0c6b"] },
    initrd: [sha("sha256", DEFAULT_INITRD).toString("hex")],
    secureBoot: { enabled: true, db: sha("sha256", "db signature list").toString("hex") },
  };
  const policy384: MeasuredBootPolicy | undefined = spec.sha384
    ? {
        bank: "sha384",
        bootApplications: { allowed: DEFAULT_APPS_384, required: [DEFAULT_APPS_384[2]] },
        kernelCmdline: policy.kernelCmdline,
        initrd: [sha("sha384", DEFAULT_INITRD).toString("hex")],
        secureBoot: { enabled: true, db: sha("sha384", "db signature list").toString("hex") },
      }
    : undefined;
  return { log: Buffer.concat(parts), extends: extendsOut, policy, offsets, extends384, policy384 };
}

/** A fresh ECC P-256 EK as TPMT_PUBLIC (TCG EK template L-2), as EC2's GetInstanceTpmEkPub returns it with
 *  --key-format tpmt (base64-decoded). */
export function eccEkTpmt(): Buffer {
  const jwk = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" });
  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
  const t2b = (b: Buffer) => Buffer.concat([u16(b.length), b]);
  return Buffer.concat([
    u16(0x0023),
    u16(0x000b),
    Buffer.from([0x00, 0x03, 0x00, 0xb2]), // an EK: restricted decryption key (TCG template L-2)
    t2b(Buffer.alloc(0)),
    u16(0x0006), // AES-128 CFB
    u16(128),
    u16(0x0043),
    u16(0x0010),
    u16(0x0003),
    u16(0x0010),
    t2b(Buffer.from(jwk.x!, "base64url")),
    t2b(Buffer.from(jwk.y!, "base64url")),
  ]);
}
