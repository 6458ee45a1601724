// PEM (RFC 7468) text for certificates, keys and CRLs: one encoder and one decoder for the whole runtime, so
// every reader accepts the same text (strict base64 inside the markers) and every writer emits 64-column lines.
import { EvidenceFormatError } from "./types.js";

/** `der` as a PEM block with `label` ("CERTIFICATE", "PRIVATE KEY", …), 64 base64 characters a line. */
export function pemEncode(label: string, der: Uint8Array): string {
  return `-----BEGIN ${label}-----\n${Buffer.from(der)
    .toString("base64")
    .match(/.{1,64}/g)!
    .join("\n")}\n-----END ${label}-----\n`;
}

/**
 * The DER of every `label` block in `text`, in order. A block whose body is not base64 throws, naming `field`
 * and the block's position; text without such blocks gives [].
 */
export function pemDecode(text: string, label = "CERTIFICATE", field = "pem"): Uint8Array[] {
  const out: Uint8Array[] = [];
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, "g");
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const b64 = m[1].replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64))
      throw new EvidenceFormatError(`${field}: ${label.toLowerCase()} ${out.length} is not base64`, field);
    out.push(new Uint8Array(Buffer.from(b64, "base64")));
  }
  return out;
}
