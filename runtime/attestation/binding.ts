// How a workload binds Nitride's nonce, its ephemeral public key and (when the workload registers one)
// the SHA-256 of the user-data it booted with into the 64-byte REPORT_DATA:
//   v1 (no user-data bound): SHA-512( "buckypaper-v1" ‖ nonce ‖ SPKI-DER(ephemeral public key) )
//   v2 (user-data bound):    SHA-512( "buckypaper-v2" ‖ u32be(len nonce) ‖ nonce ‖ SHA-256(user-data) ‖ SPKI-DER )
// A domain-separation prefix keeps these bytes from meaning anything in another protocol (and v1 from
// ever equalling v2); SHA-512 fills the 64 bytes exactly, so no padding convention is needed. The
// user-data hash is fixed-length and the nonce length-prefixed, so no two inputs share an encoding.
// reportDataCheck compares the evidence's REPORT_DATA with what the caller expects (this binding, or a value).
import { createHash, timingSafeEqual, X509Certificate } from "node:crypto";
import type { Check } from "./types.js";
import type { Policy } from "./policy.js";
import type { AppraiseOptions } from "./options.js";

const DOMAIN_V1 = Buffer.from("buckypaper-v1", "utf8");
const DOMAIN_V2 = Buffer.from("buckypaper-v2", "utf8");

export function reportDataFor(nonce: Uint8Array, ephemeralSpkiDer: Uint8Array, userDataSha256?: Uint8Array): Buffer {
  if (userDataSha256 === undefined)
    return createHash("sha512").update(DOMAIN_V1).update(nonce).update(ephemeralSpkiDer).digest();
  if (userDataSha256.length !== 32) throw new Error(`userDataSha256 must be 32 bytes, got ${userDataSha256.length}`);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(nonce.length);
  return createHash("sha512")
    .update(DOMAIN_V2)
    .update(len)
    .update(nonce)
    .update(userDataSha256)
    .update(ephemeralSpkiDer)
    .digest();
}

export function reportDataMatches(
  reportData: Uint8Array,
  nonce: Uint8Array,
  ephemeralSpkiDer: Uint8Array,
  userDataSha256?: Uint8Array,
): boolean {
  const want = reportDataFor(nonce, ephemeralSpkiDer, userDataSha256);
  return reportData.length === 64 && timingSafeEqual(Buffer.from(reportData), want);
}

/**
 * Azure CVMs: the hardware REPORT_DATA is the paravisor's (SHA-256 of its runtime claims, which carry the vTPM AK), so
 * what the guest chooses rides on the vTPM quote the AK signs: its qualifying data (extraData) is
 *   SHA-256( reportDataFor(nonce, key, userDataSha256) )
 * i.e. the domain-separated binding above (v1 "buckypaper-v1" without user-data, v2 "buckypaper-v2" with the SHA-256 of
 * the user-data), hashed to 32 bytes so that it fits any TPM's TPM2B_DATA. The same 64-byte value is also written to
 * NV 0x01400002 and reappears in the (hardware-bound) runtime claims' "user-data". The enclaivelet
 * (runtime/guest/evidence/azure.ts) and the verifier (azure/appraise.ts) both call this one function; the verifier
 * recomputes it from Nitride's nonce, the workload's key and the REGISTERED user-data hash.
 */
export function azureQuoteExtraData(reportData: Uint8Array): Buffer {
  if (reportData.length !== 64) throw new Error(`REPORT_DATA must be 64 bytes, got ${reportData.length}`);
  return createHash("sha256").update(reportData).digest();
}

const HYBRID_DOMAIN = Buffer.from("buckypaper-hybrid-v1", "utf8");

/**
 * The key material bound in REPORT_DATA when the workload also holds an ML-KEM-768 key (hybrid PQ sealing):
 *   "buckypaper-hybrid-v1" ‖ u32 len ‖ SPKI-DER(P-384 key) ‖ u32 len ‖ ML-KEM-768 encapsulation key
 * It takes the SPKI's place in reportDataFor / reportDataForVtpm, so every platform's appraisal binds both
 * keys unchanged. It cannot be confused with a classical SPKI: a DER SPKI starts with 0x30 ('0'), this with 'b'.
 * The classical binding (SPKI alone) is unchanged.
 */
export function hybridBindingMaterial(ephemeralSpkiDer: Uint8Array, mlkemEncapsulationKey: Uint8Array): Buffer {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  return Buffer.concat([
    HYBRID_DOMAIN,
    u32(ephemeralSpkiDer.length),
    Buffer.from(ephemeralSpkiDer),
    u32(mlkemEncapsulationKey.length),
    Buffer.from(mlkemEncapsulationKey),
  ]);
}

const VTPM_DOMAIN = Buffer.from("buckypaper-vtpm-v1", "utf8");
const VTPM_DOMAIN_V2 = Buffer.from("buckypaper-vtpm-v2", "utf8");

/**
 * REPORT_DATA when a vTPM rides along (AWS/GCE): the attestation key is bound too, so the quote it signs is
 * tied to this hardware report. The TPM quote's qualifying data is SHA-256 of this value.
 *   v1 (no user-data bound): SHA-512("buckypaper-vtpm-v1" ‖ nonce ‖ u32 len ‖ SPKI ‖ SHA-256(AK TPM2B_PUBLIC))
 *   v2 (user-data bound):    SHA-512("buckypaper-vtpm-v2" ‖ u32 len ‖ nonce ‖ u32 len ‖ SPKI ‖ SHA-256(AK TPM2B_PUBLIC)
 *                                     ‖ SHA-256(user-data))
 * v2 is what makes measured user-data mean anything on a cloud: cloud-init runs the user-data as root, so a
 * workload that binds its OS through the vTPM but not its user-data lets the cloud operator inject a runcmd.
 * Both variable-length fields of v2 are length-prefixed and the two digests are fixed-length, so no two
 * inputs share an encoding; the domains differ, so a v1 value never equals a v2 one.
 */
export function reportDataForVtpm(
  nonce: Uint8Array,
  ephemeralSpkiDer: Uint8Array,
  akPublic: Uint8Array,
  userDataSha256?: Uint8Array,
): Buffer {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const akDigest = createHash("sha256").update(akPublic).digest();
  if (userDataSha256 === undefined)
    return createHash("sha512")
      .update(VTPM_DOMAIN)
      .update(nonce)
      .update(u32(ephemeralSpkiDer.length))
      .update(ephemeralSpkiDer)
      .update(akDigest)
      .digest();
  if (userDataSha256.length !== 32) throw new Error(`userDataSha256 must be 32 bytes, got ${userDataSha256.length}`);
  return createHash("sha512")
    .update(VTPM_DOMAIN_V2)
    .update(u32(nonce.length))
    .update(nonce)
    .update(u32(ephemeralSpkiDer.length))
    .update(ephemeralSpkiDer)
    .update(akDigest)
    .update(userDataSha256)
    .digest();
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** The expected 64-byte REPORT_DATA of an appraisal (zero-padded on the right); a string explains a bad value. */
function expectedData(opts: AppraiseOptions): Uint8Array | undefined | string {
  if (opts.binding) return reportDataFor(opts.binding.nonce, opts.binding.publicKeySpki, opts.binding.userDataSha256);
  const e = opts.expectedReportData;
  if (!e) return undefined;
  if (e.length > 64) return `expected REPORT_DATA is ${e.length} bytes; at most 64`;
  const out = new Uint8Array(64);
  out.set(e);
  return out;
}

/** policy.report-data: exact comparison of REPORT_DATA with the caller's expected value. */
export function reportDataCheck(actualHex: string | undefined, policy: Policy, opts: AppraiseOptions): Check {
  const id = "policy.report-data";
  const want = expectedData(opts);
  if (typeof want === "string") return { id, ok: false, detail: want };
  if (!want) {
    return policy.requireReportDataBinding
      ? {
          id,
          ok: false,
          detail: "the policy requires REPORT_DATA to be bound to a fresh nonce, but no expected value was given",
        }
      : { id, ok: true, detail: "REPORT_DATA not checked: no expected value given" };
  }
  if (actualHex === undefined) return { id, ok: false, detail: "REPORT_DATA unavailable (evidence did not parse)" };
  const actual = Buffer.from(actualHex, "hex");
  const ok = actual.length === 64 && timingSafeEqual(actual, Buffer.from(want));
  return {
    id,
    ok,
    detail: ok
      ? `REPORT_DATA equals the expected binding (nonce + key${opts.binding?.userDataSha256 ? " + user-data" : ""})`
      : `REPORT_DATA ${actualHex.slice(0, 16)}… does not match the expected ${hex(want).slice(0, 16)}…`,
  };
}

const RUNTIME_TLS_DOMAIN = Buffer.from("buckypaper-runtime-tls-v2", "utf8");

/** Nonce lengths a runtime attestation request may carry (bytes): long enough to be fresh, short enough to be cheap. */
export const RUNTIME_TLS_NONCE_BYTES = { min: 16, max: 64 } as const;

/**
 * REPORT_DATA of the runtime's attested TLS (GET /v1/sys/attestation, docs/runtime-api.md):
 *   SHA-512( "buckypaper-runtime-tls-v2" ‖ u32be(len nonce) ‖ nonce ‖ SHA-256(SPKI-DER of the TLS key)
 *            ‖ 0x00                       (sealed or not initialised: no instance)
 *            ‖ 0x01 ‖ instance id (32)    (unsealed: runtimeInstanceId of the secret in its barrier) )
 * The runtime always puts its own listener key and its own instance in; a caller only chooses the nonce, so the
 * endpoint can never be used to have the security processor sign data of the caller's choice. The domain
 * differs from every workload binding above in its 12th byte, so a runtime report can never pass as a
 * workload's evidence or the reverse. The instance id names WHICH initialised runtime answers (a twin launched
 * from the same image with the same HOST_DATA has another one): docs/trust-bootstrap.md "Instance identity".
 */
export function runtimeTlsReportData(nonce: Uint8Array, spkiSha256: Uint8Array, instanceId?: Uint8Array): Buffer {
  if (nonce.length < RUNTIME_TLS_NONCE_BYTES.min || nonce.length > RUNTIME_TLS_NONCE_BYTES.max)
    throw new Error(
      `nonce must be ${RUNTIME_TLS_NONCE_BYTES.min}..${RUNTIME_TLS_NONCE_BYTES.max} bytes, got ${nonce.length}`,
    );
  if (spkiSha256.length !== 32) throw new Error(`spkiSha256 must be 32 bytes, got ${spkiSha256.length}`);
  if (instanceId !== undefined && instanceId.length !== 32)
    throw new Error(`instanceId must be 32 bytes, got ${instanceId.length}`);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(nonce.length);
  const h = createHash("sha512").update(RUNTIME_TLS_DOMAIN).update(len).update(nonce).update(spkiSha256);
  if (instanceId === undefined) h.update(Buffer.from([0]));
  else h.update(Buffer.from([1])).update(instanceId);
  return h.digest();
}

const RUNTIME_TLS_VTPM_DOMAIN = Buffer.from("buckypaper-runtime-tls-vtpm-v1", "utf8");

/**
 * REPORT_DATA of the runtime's attested TLS when a vTPM rides along (`attestation { vtpm { … } }`, AWS/GCE where the
 * launch digest names only the provider's firmware, so the OS must be bound through a measured-boot quote):
 *   SHA-512( "buckypaper-runtime-tls-vtpm-v1" ‖ u32be(len nonce) ‖ nonce ‖ SHA-256(SPKI-DER of the TLS key)
 *            ‖ SHA-256(AK TPM2B_PUBLIC)
 *            ‖ 0x00 | 0x01 ‖ instance id (32) )
 * and the TPM quote's qualifying data is SHA-256 of these 64 bytes (as for workloads), so report and quote are
 * tied both ways: the report names the AK, the quote names the report. Its own domain: it differs from
 * "buckypaper-runtime-tls-v2" in its 25th byte and from every workload and peer binding earlier, so a runtime
 * vTPM report never passes as a runtime report without a vTPM (a verifier that requires the boot policy could
 * otherwise be shown a report whose AK half was simply left out), nor as a workload's or peer's evidence. All
 * fields after the length-prefixed nonce are fixed-length, so no two inputs share an encoding.
 */
export function runtimeTlsVtpmReportData(
  nonce: Uint8Array,
  spkiSha256: Uint8Array,
  akSha256: Uint8Array,
  instanceId?: Uint8Array,
): Buffer {
  if (nonce.length < RUNTIME_TLS_NONCE_BYTES.min || nonce.length > RUNTIME_TLS_NONCE_BYTES.max)
    throw new Error(
      `nonce must be ${RUNTIME_TLS_NONCE_BYTES.min}..${RUNTIME_TLS_NONCE_BYTES.max} bytes, got ${nonce.length}`,
    );
  if (spkiSha256.length !== 32) throw new Error(`spkiSha256 must be 32 bytes, got ${spkiSha256.length}`);
  if (akSha256.length !== 32) throw new Error(`akSha256 must be 32 bytes, got ${akSha256.length}`);
  if (instanceId !== undefined && instanceId.length !== 32)
    throw new Error(`instanceId must be 32 bytes, got ${instanceId.length}`);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(nonce.length);
  const h = createHash("sha512")
    .update(RUNTIME_TLS_VTPM_DOMAIN)
    .update(len)
    .update(nonce)
    .update(spkiSha256)
    .update(akSha256);
  if (instanceId === undefined) h.update(Buffer.from([0]));
  else h.update(Buffer.from([1])).update(instanceId);
  return h.digest();
}

/** SHA-256 of an AK's TPM2B_PUBLIC: the AK's identity in runtimeTlsVtpmReportData (and vtpm.akPins). */
export function akSha256(akPublic: Uint8Array): Buffer {
  return createHash("sha256").update(akPublic).digest();
}

const RUNTIME_INSTANCE_DOMAIN = Buffer.from("buckypaper-runtime-instance-v1", "utf8");

/**
 * The public instance id of an initialised runtime: SHA-256("buckypaper-runtime-instance-v1" ‖ secret), where
 * the 32-byte secret is drawn at sys/init inside the barrier and never leaves it. Public, so it may sit in
 * Pulumi state and user-data; unforgeable, because whoever initialised a twin (and so can write anything into
 * the twin's barrier) still needs a preimage of the original's id to make the genuine code report it.
 */
export function runtimeInstanceId(secret: Uint8Array): Buffer {
  if (secret.length !== 32) throw new Error(`instance secret must be 32 bytes, got ${secret.length}`);
  return createHash("sha256").update(RUNTIME_INSTANCE_DOMAIN).update(secret).digest();
}

const REPLICA_SET_DOMAIN = Buffer.from("buckypaper-replica-set-instance-v1", "utf8");

/**
 * The launch-time field that names a replica set's runtime instance (peer unseal with `launch_binds_instance_id`):
 * SEV-SNP HOST_DATA = SHA-256("buckypaper-replica-set-instance-v1" ‖ 0x00 ‖ instance id), 32 bytes; TDX MRCONFIGID =
 * SHA-384(the same), 48 bytes. The launcher sets it after the first replica's sys/init made the id; a sealed replica
 * reads it from its own report and so knows, measured, which instance it may be unsealed into
 * (docs/trust-bootstrap.md "Peer unseal", "The replica set's launch names its instance").
 */
export function replicaSetLaunchBinding(instanceId: Uint8Array, platform: "snp" | "tdx"): Buffer {
  if (instanceId.length !== 32) throw new Error(`instanceId must be 32 bytes, got ${instanceId.length}`);
  return createHash(platform === "snp" ? "sha256" : "sha384")
    .update(REPLICA_SET_DOMAIN)
    .update(Buffer.from([0]))
    .update(instanceId)
    .digest();
}

/** SHA-256 of a SubjectPublicKeyInfo (DER): the TLS key's identity in runtimeTlsReportData. */
export function spkiSha256(spkiDer: Uint8Array): Buffer {
  return createHash("sha256").update(spkiDer).digest();
}

/** SHA-256 (hex) of a certificate's SubjectPublicKeyInfo: the TLS key a REPORT_DATA binds and a client pins. */
export function certSpkiSha256(cert: X509Certificate | string | Uint8Array): string {
  const c = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  return spkiSha256(c.publicKey.export({ type: "spki", format: "der" })).toString("hex");
}

const PEER_UNSEAL_DOMAIN = Buffer.from("buckypaper-peer-unseal-v1", "utf8");

/**
 * REPORT_DATA of a sealed replica asking an unsealed peer for its unseal-key share (sys/peer-unseal/share,
 * docs/trust-bootstrap.md "Peer unseal"):
 *   SHA-512( "buckypaper-peer-unseal-v1" ‖ u32be(len nonce) ‖ nonce ‖ SHA-256(key material) )
 * The nonce is the peer's (single use, short-lived); the key material is hybridBindingMaterial of the requester's
 * ephemeral P-384 and ML-KEM-768 keys, the keys the share is sealed to. Its own domain, so this evidence never
 * passes as a workload's (buckypaper-v1/v2) or as a runtime's attested TLS (buckypaper-runtime-tls-v2).
 */
export function peerUnsealReportData(nonce: Uint8Array, keyMaterial: Uint8Array): Buffer {
  if (nonce.length !== 32) throw new Error(`nonce must be 32 bytes, got ${nonce.length}`);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(nonce.length);
  const keyDigest = createHash("sha256").update(keyMaterial).digest();
  return createHash("sha512").update(PEER_UNSEAL_DOMAIN).update(len).update(nonce).update(keyDigest).digest();
}
