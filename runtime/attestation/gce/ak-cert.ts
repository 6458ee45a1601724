// A GCE vTPM's attestation key is authenticated by its AK certificate: Google's EK/AK CA issues one per VM
// (NV index 0x01c10000 for the RSA AK, 0x01c10002 for ECC; also GetShieldedInstanceIdentity) and puts the
// instance's zone, project and instance id in extension 1.3.6.1.4.1.11129.2.1.21. Verifying it — chain to a
// pinned Google root, and the certified key IS the key that signed the quote — is what stops a guest kernel
// (VMPL0) from binding a software TPM's AK into REPORT_DATA. Binding alone proves only "same VM launch".
import "reflect-metadata";
import { X509Certificate, type KeyObject } from "node:crypto";
import * as x509 from "@peculiar/x509";
import type { Check } from "../types.js";
import { EvidenceFormatError } from "../types.js";
import { children, readTlv, type Tlv } from "../tdx/der.js";
import { GCE_AK_INTERMEDIATES, GCE_AK_ROOT_FINGERPRINTS, GCE_AK_ROOTS } from "./ak-roots.js";
import { certFingerprint, verifyChain } from "./x509.js";

export const GCE_INSTANCE_INFO_OID = "1.3.6.1.4.1.11129.2.1.21";
/** NV indices where a GCE vTPM keeps its AK certificates (go-tpm-tools client/handles.go). */
export const GCE_AK_CERT_NV_INDEX = { rsa: 0x01c10000, ecc: 0x01c10002 } as const;
/** NV indices of the AK templates the certified AKs are created from (primary keys, endorsement hierarchy). */
export const GCE_AK_TEMPLATE_NV_INDEX = { rsa: 0x01c10001, ecc: 0x01c10003 } as const;

export interface GceInstanceInfo {
  zone: string;
  projectNumber: string;
  projectId: string;
  instanceId: string;
  instanceName: string;
  securityVersion?: string;
  isProduction: boolean;
}

export interface GceAkCertOptions {
  /** Intermediates that came with the evidence (added to the bundled ones). */
  intermediates?: Uint8Array[];
  now?: Date;
  /** Tests only: other roots and fingerprints instead of Google's. */
  roots?: { certs: Uint8Array[]; fingerprints: string[]; intermediates?: Uint8Array[] };
}

export interface GceAkCertResult {
  check: Check;
  instance?: GceInstanceInfo;
}

const W = "ak_cert.gce_instance_info";

function utf8(t: Tlv, f: string): string {
  if (t.tag !== 0x0c)
    throw new EvidenceFormatError(`${W}.${f}: tag 0x${t.tag.toString(16)} is not UTF8String`, `${W}.${f}`);
  return Buffer.from(t.value).toString("utf8");
}

function int(t: Tlv, f: string): bigint {
  if (t.tag !== 0x02 || t.value.length === 0 || t.value.length > 9 || t.value[0] & 0x80)
    throw new EvidenceFormatError(`${W}.${f}: not a non-negative INTEGER`, `${W}.${f}`);
  return BigInt("0x" + Buffer.from(t.value).toString("hex"));
}

/** The instance-identity extension (go-tpm-tools server/verify.go gceInstanceInfo), strictly. */
export function parseGceInstanceInfo(ext: Uint8Array): GceInstanceInfo {
  const seq = readTlv(ext, 0, W);
  if (seq.tag !== 0x30 || seq.end !== ext.length) throw new EvidenceFormatError(`${W}: not one SEQUENCE`, W);
  const f = children(seq.value, W);
  if (f.length < 5 || f.length > 6) throw new EvidenceFormatError(`${W}: ${f.length} fields (5 or 6 expected)`, W);
  const info: GceInstanceInfo = {
    zone: utf8(f[0], "zone"),
    projectNumber: int(f[1], "project_number").toString(),
    projectId: utf8(f[2], "project_id"),
    instanceId: int(f[3], "instance_id").toString(),
    instanceName: utf8(f[4], "instance_name"),
    isProduction: false,
  };
  if (f[5]) {
    // [0] EXPLICIT SecurityProperties SEQUENCE { [0] EXPLICIT INTEGER version, [1] EXPLICIT BOOLEAN production, … }
    if (f[5].tag !== 0xa0)
      throw new EvidenceFormatError(`${W}.security_properties: unexpected tag`, `${W}.security_properties`);
    const inner = children(f[5].value, W);
    if (inner.length !== 1 || inner[0].tag !== 0x30)
      throw new EvidenceFormatError(`${W}.security_properties: not a SEQUENCE`, `${W}.security_properties`);
    for (const p of children(inner[0].value, W)) {
      const [v] = children(p.value, W);
      if (p.tag === 0xa0) info.securityVersion = int(v, "security_version").toString();
      if (p.tag === 0xa1) {
        if (v?.tag !== 0x01 || v.value.length !== 1)
          throw new EvidenceFormatError(`${W}.is_production: not a BOOLEAN`, W);
        info.isProduction = v.value[0] !== 0;
      }
    }
  }
  return info;
}

/**
 * Verifies a GCE AK certificate: it chains to a pinned Google EK/AK root, is valid now, is an end-entity
 * signing certificate, and certifies exactly `akKey` (SPKI equality). Never throws.
 */
export function verifyGceAkCertificate(
  certDer: Uint8Array,
  akKey: KeyObject,
  opts: GceAkCertOptions = {},
): GceAkCertResult {
  const id = "vtpm.ak-certificate";
  const roots = opts.roots?.certs ?? [...GCE_AK_ROOTS];
  const prints = opts.roots?.fingerprints ?? [...GCE_AK_ROOT_FINGERPRINTS];
  const inter = [...(opts.roots?.intermediates ?? GCE_AK_INTERMEDIATES), ...(opts.intermediates ?? [])];
  const chain = verifyChain(certDer, inter, roots, prints, opts.now ?? new Date());
  if (!chain.ok) return { check: { id, ok: false, detail: `AK certificate: ${chain.detail}` } };
  const certSpki = (chain.leaf as X509Certificate).publicKey.export({ type: "spki", format: "der" });
  const akSpki = akKey.export({ type: "spki", format: "der" });
  if (!certSpki.equals(akSpki))
    return {
      check: {
        id,
        ok: false,
        detail: "the AK certificate is Google's, but it certifies another key than the one that signed the quote",
      },
    };
  let instance: GceInstanceInfo | undefined;
  try {
    const ext = new x509.X509Certificate(certDer).extensions.find((e) => e.type === GCE_INSTANCE_INFO_OID);
    if (ext) instance = parseGceInstanceInfo(new Uint8Array(ext.value));
  } catch (e) {
    return { check: { id, ok: false, detail: `AK certificate instance identity: ${(e as Error).message}` } };
  }
  const who = instance
    ? ` for instance ${instance.instanceName} (${instance.instanceId}) in ${instance.projectId}/${instance.zone}${instance.isProduction ? "" : ", NOT marked production"}`
    : "";
  return {
    check: { id, ok: true, detail: `AK certified by Google (${chain.path!.slice(1).join(" ← ")})${who}` },
    instance,
  };
}

/** What a vTPM policy asks of a GCE AK certificate (tpm/policy.ts gceAkCertificate). */
export interface GceAkRequirement {
  projectIds?: string[];
  zones?: string[];
  instanceIds?: string[];
}

/**
 * The appraisal's view: `vtpm.ak-certificate` (when the evidence carries a certificate or the policy requires
 * one) and whether the AK is thereby authenticated. `simulatedRoots` (tests, local stack) are trusted in addition
 * to Google's and named as SIMULATED in the detail.
 */
export function appraiseGceAkCertificate(
  cert: Uint8Array | undefined,
  intermediates: Uint8Array[] | undefined,
  akKey: KeyObject | undefined,
  want: GceAkRequirement | undefined,
  opts: { now?: Date; simulatedRoots?: Uint8Array[] } = {},
): { checks: Check[]; authenticated: boolean; instance?: GceInstanceInfo } {
  const id = "vtpm.ak-certificate";
  if (!cert) {
    if (!want) return { checks: [], authenticated: false };
    return {
      checks: [{ id, ok: false, detail: "the policy requires a Google AK certificate; the evidence carries none" }],
      authenticated: false,
    };
  }
  if (!akKey)
    return {
      checks: [{ id, ok: false, detail: "no usable attestation key to compare the certificate with" }],
      authenticated: false,
    };
  let r = verifyGceAkCertificate(cert, akKey, { now: opts.now, intermediates });
  if (!r.check.ok && opts.simulatedRoots?.length) {
    const sim = verifyGceAkCertificate(cert, akKey, {
      now: opts.now,
      intermediates,
      roots: { certs: opts.simulatedRoots, fingerprints: opts.simulatedRoots.map(certFingerprint), intermediates: [] },
    });
    if (sim.check.ok)
      r = { ...sim, check: { ...sim.check, detail: `${sim.check.detail} — SIMULATED AK root, not Google's` } };
  }
  const checks = [r.check];
  let ok = r.check.ok;
  if (ok && want && (want.projectIds || want.zones || want.instanceIds)) {
    const i = r.instance;
    const problems: string[] = [];
    if (!i) problems.push("the certificate has no instance-identity extension");
    else {
      if (!i.isProduction) problems.push("the certificate is not marked production");
      if (want.projectIds && !want.projectIds.includes(i.projectId))
        problems.push(`project ${i.projectId} is not allowed`);
      if (want.zones && !want.zones.includes(i.zone)) problems.push(`zone ${i.zone} is not allowed`);
      if (want.instanceIds && !want.instanceIds.includes(i.instanceId))
        problems.push(`instance ${i.instanceId} is not allowed`);
    }
    ok = problems.length === 0;
    checks.push({
      id: "vtpm.gce-instance",
      ok,
      detail: ok
        ? `instance ${i!.instanceName} (${i!.instanceId}) of project ${i!.projectId} in ${i!.zone} is allowed`
        : problems.join("; "),
    });
  }
  // A certificate the policy did not ask for is checked and listed but authenticates nothing: only a
  // policy that names Google's CA (vtpm.gceAkCertificate) trusts it, as vtpm.nitroTpm does for AWS.
  return { checks, authenticated: ok && !!want, instance: r.instance };
}
