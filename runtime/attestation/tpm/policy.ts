// The `vtpm` section of an appraisal policy: what a cloud VM's vTPM evidence must show, and whose AK counts.
// Parsed strictly, each error naming the field (vtpm.measuredBoot.kernelCmdline.allowed[0] …).
import type { MeasuredBootPolicy, SecureBootVariable } from "./boot-policy.js";
import { CredentialError, credentialEk } from "./credential.js";

export interface VtpmPolicy {
  /** Events the boot must show (boot-policy.ts). */
  measuredBoot?: MeasuredBootPolicy;
  /**
   * SHA-256 (hex) of the AK's TPM2B_PUBLIC for every AK this workload trusts: the cloud vTPM's key, registered
   * at deploy time (e.g. read from the instance, or from a verified GCE AK certificate / NitroTPM document).
   * Binding the AK into REPORT_DATA is not enough on AWS/GCE: the guest runs at VMPL0 and could bind a
   * software TPM's key.
   */
  akPins?: string[];
  /**
   * Accept an AK that is bound to the hardware report but not authenticated as the cloud's vTPM. The OS is then
   * NOT bound against a malicious guest kernel: say so loudly wherever this is set.
   */
  allowUnauthenticatedAk?: boolean;
  /**
   * AWS: the quote's SHA-384 PCRs must be vouched for by a NitroTPM attestation document signed by the AWS Nitro
   * PKI (runtime/attestation/aws) carrying this attestation's nonce — which authenticates the PCRs (not the AK:
   * the guest names the document's public_key), so the measured-boot policy must use bank sha384.
   * `instanceIds` pins the workload to those EC2 instances (the document's module_id names its instance).
   */
  nitroTpm?: { instanceIds?: string[] };
  /**
   * GCE: the AK must come with a certificate from Google's EK/AK CA (roots pinned in gce/ak-roots.ts) certifying
   * exactly the quoting key; optionally only for these projects / zones / instance ids (from the certificate's
   * instance-identity extension).
   */
  gceAkCertificate?: { projectIds?: string[]; zones?: string[]; instanceIds?: string[] };
  /**
   * AWS: TPM Names (hex) of the instance EKs (GetInstanceTpmEkPub, tpmt format → aws/ek.ts ekNameFromTpmt); the
   * quote's signer must be an AK directly under one of them. A consistency pin, NOT AK authentication (aws/ek.ts).
   */
  ekNames?: string[];
  /**
   * AWS: the instance EKs' public keys (base64 TPMT_PUBLIC, GetInstanceTpmEkPub --key-format tpmt). With any set,
   * the AK must prove it lives in the TPM of one of them by EK credential activation (TPM2_MakeCredential /
   * ActivateCredential, tpm/ek-credential.ts): a second round trip Nitride runs before it delivers anything, and
   * verifyRuntime before it trusts a runtime (POST sys/attestation/activate)
   * (check vtpm.ek-credential). A successful activation authenticates the AK as that TPM's key — as far as the
   * EC2 API (the cloud operator) is right about the EK.
   */
  ekPublics?: string[];
}

export class VtpmPolicyError extends Error {
  override name = "VtpmPolicyError";
  constructor(
    readonly reason: string,
    readonly field: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

type Obj = Record<string, unknown>;
const obj = (v: unknown, f: string): Obj => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new VtpmPolicyError("expected an object", f);
  return v as Obj;
};
const only = (o: Obj, f: string, keys: string[]) => {
  for (const k of Object.keys(o))
    if (!keys.includes(k)) throw new VtpmPolicyError(`unknown field (allowed: ${keys.join(", ")})`, `${f}.${k}`);
};
const hexDigest = (v: unknown, f: string): string => {
  if (typeof v !== "string" || !/^([0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128})$/.test(v))
    throw new VtpmPolicyError("expected a hex digest (SHA-1/256/384/512)", f);
  return v.toLowerCase();
};
const list = <T>(v: unknown, f: string, item: (x: unknown, f: string) => T): T[] => {
  if (!Array.isArray(v)) throw new VtpmPolicyError("expected a list", f);
  return v.map((x, i) => item(x, `${f}[${i}]`));
};
const str = (v: unknown, f: string): string => {
  if (typeof v !== "string" || v.length === 0 || v.length > 4096)
    throw new VtpmPolicyError("expected a non-empty string", f);
  return v;
};
const bool = (v: unknown, f: string): boolean => {
  if (typeof v !== "boolean") throw new VtpmPolicyError("expected true or false", f);
  return v;
};

export function parseMeasuredBootPolicy(v: unknown, f = "vtpm.measuredBoot"): MeasuredBootPolicy {
  const o = obj(v, f);
  only(o, f, ["bank", "bootApplications", "kernelCmdline", "initrd", "secureBoot", "pcrs"]);
  const out: MeasuredBootPolicy = {};
  if (o.bank !== undefined) {
    if (!["sha1", "sha256", "sha384", "sha512"].includes(o.bank as string))
      throw new VtpmPolicyError("expected sha1, sha256, sha384 or sha512", `${f}.bank`);
    out.bank = o.bank as MeasuredBootPolicy["bank"];
  }
  if (o.bootApplications !== undefined) {
    const b = obj(o.bootApplications, `${f}.bootApplications`);
    only(b, `${f}.bootApplications`, ["allowed", "required"]);
    out.bootApplications = { allowed: list(b.allowed ?? [], `${f}.bootApplications.allowed`, hexDigest) };
    if (b.required !== undefined)
      out.bootApplications.required = list(b.required, `${f}.bootApplications.required`, hexDigest);
  }
  if (o.kernelCmdline !== undefined) {
    const c = obj(o.kernelCmdline, `${f}.kernelCmdline`);
    only(c, `${f}.kernelCmdline`, ["allowed", "mustContain", "boundByUki"]);
    out.kernelCmdline = { allowed: list(c.allowed, `${f}.kernelCmdline.allowed`, str) };
    if (c.mustContain !== undefined)
      out.kernelCmdline.mustContain = list(c.mustContain, `${f}.kernelCmdline.mustContain`, str);
    if (c.boundByUki !== undefined) out.kernelCmdline.boundByUki = bool(c.boundByUki, `${f}.kernelCmdline.boundByUki`);
  }
  if (o.initrd !== undefined) out.initrd = list(o.initrd, `${f}.initrd`, hexDigest);
  if (o.secureBoot !== undefined) {
    const s = obj(o.secureBoot, `${f}.secureBoot`);
    only(s, `${f}.secureBoot`, ["enabled", "PK", "KEK", "db", "dbx", "authorities"]);
    out.secureBoot = {};
    if (s.enabled !== undefined) out.secureBoot.enabled = bool(s.enabled, `${f}.secureBoot.enabled`);
    if (s.authorities !== undefined) {
      const g = `${f}.secureBoot.authorities`;
      out.secureBoot.authorities = list(s.authorities, g, (x, h) => {
        const d = hexDigest(x, h);
        if (d.length !== 64) throw new VtpmPolicyError("expected SHA-256 (64 hex digits) of a DER certificate", h);
        return d;
      });
      if (!out.secureBoot.authorities.length)
        throw new VtpmPolicyError("expected at least one certificate digest (or leave the field out)", g);
      if (out.secureBoot.enabled === false)
        throw new VtpmPolicyError("db authorities need Secure Boot enabled", `${f}.secureBoot.enabled`);
    }
    for (const k of ["PK", "KEK", "db", "dbx"] as SecureBootVariable[])
      if (s[k] !== undefined) out.secureBoot[k] = hexDigest(s[k], `${f}.secureBoot.${k}`);
  }
  if (o.pcrs !== undefined) {
    const p = obj(o.pcrs, `${f}.pcrs`);
    out.pcrs = {};
    for (const [k, x] of Object.entries(p)) {
      if (!/^(\d|1\d|2[0-3])$/.test(k)) throw new VtpmPolicyError("not a PCR index 0..23", `${f}.pcrs.${k}`);
      out.pcrs[k] = hexDigest(x, `${f}.pcrs.${k}`);
    }
  }
  return out;
}

export function parseVtpmPolicy(v: unknown, f = "vtpm"): VtpmPolicy {
  const o = obj(v, f);
  only(o, f, [
    "measuredBoot",
    "akPins",
    "allowUnauthenticatedAk",
    "nitroTpm",
    "gceAkCertificate",
    "ekNames",
    "ekPublics",
  ]);
  const out: VtpmPolicy = {};
  if (o.measuredBoot !== undefined) out.measuredBoot = parseMeasuredBootPolicy(o.measuredBoot, `${f}.measuredBoot`);
  if (o.akPins !== undefined)
    out.akPins = list(o.akPins, `${f}.akPins`, (x, g) => {
      const d = hexDigest(x, g);
      if (d.length !== 64) throw new VtpmPolicyError("expected SHA-256 (64 hex digits) of the AK's TPM2B_PUBLIC", g);
      return d;
    });
  if (o.allowUnauthenticatedAk !== undefined)
    out.allowUnauthenticatedAk = bool(o.allowUnauthenticatedAk, `${f}.allowUnauthenticatedAk`);
  if (o.ekNames !== undefined)
    out.ekNames = list(o.ekNames, `${f}.ekNames`, (x, g) => {
      if (
        typeof x !== "string" ||
        !/^(0004[0-9a-fA-F]{40}|000b[0-9a-fA-F]{64}|000c[0-9a-fA-F]{96}|000d[0-9a-fA-F]{128})$/i.test(x)
      )
        throw new VtpmPolicyError("expected a TPM Name in hex (nameAlg ‖ digest, e.g. 000b + 64 hex digits)", g);
      return x.toLowerCase();
    });
  if (o.ekPublics !== undefined) {
    out.ekPublics = list(o.ekPublics, `${f}.ekPublics`, (x, g) => {
      if (typeof x !== "string" || !/^[A-Za-z0-9+/]+={0,2}$/.test(x) || x.length > 2048)
        throw new VtpmPolicyError("expected a base64 TPMT_PUBLIC (GetInstanceTpmEkPub --key-format tpmt)", g);
      try {
        credentialEk(Buffer.from(x, "base64"), g);
      } catch (e) {
        if (e instanceof CredentialError) throw new VtpmPolicyError(e.message.slice(e.field.length + 2), e.field);
        throw e;
      }
      return x;
    });
    if (!out.ekPublics.length)
      throw new VtpmPolicyError("expected at least one EK (or leave the field out)", `${f}.ekPublics`);
  }
  if (o.nitroTpm !== undefined) {
    const n = obj(o.nitroTpm, `${f}.nitroTpm`);
    only(n, `${f}.nitroTpm`, ["instanceIds"]);
    out.nitroTpm = {};
    if (n.instanceIds !== undefined)
      out.nitroTpm.instanceIds = list(n.instanceIds, `${f}.nitroTpm.instanceIds`, (x, g) => {
        if (typeof x !== "string" || !/^i-[0-9a-f]{8,17}$/.test(x))
          throw new VtpmPolicyError("expected an EC2 instance id (i-0123456789abcdef0)", g);
        return x;
      });
  }
  if (o.gceAkCertificate !== undefined) {
    const g = obj(o.gceAkCertificate, `${f}.gceAkCertificate`);
    only(g, `${f}.gceAkCertificate`, ["projectIds", "zones", "instanceIds"]);
    out.gceAkCertificate = {};
    for (const k of ["projectIds", "zones", "instanceIds"] as const)
      if (g[k] !== undefined) out.gceAkCertificate[k] = list(g[k], `${f}.gceAkCertificate.${k}`, str);
  }
  return out;
}
