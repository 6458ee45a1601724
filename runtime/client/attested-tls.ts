// Attested TLS, the verifier's side: trust the runtime because it proved what it runs, not because a fingerprint
// was copied. verifyRuntime opens a TLS connection (the certificate carries no trust: it is self-signed), reads
// the SubjectPublicKeyInfo the peer presented, asks THAT connection for GET /v1/sys/attestation with a fresh
// nonce, and accepts only when the evidence
//   - verifies to a vendor root (or a listed simulated anchor) and meets the policy, incl. an expected
//     measurement (none given = refused: no trust on first use);
//   - has REPORT_DATA = runtimeTlsReportData(our nonce, SHA-256(SPKI of this connection), instance id it reports);
//   - reports exactly the expected instance id, when one is given (after bootstrap: a twin of the runtime
//     launched from the same image with the same HOST_DATA and initialised by someone else has another one).
//   - with a vTPM expectation (policy.vtpm with a measuredBoot policy: AWS/GCE, where the launch digest names
//     only the provider's firmware): carries a TPM quote whose AK REPORT_DATA binds (runtimeTlsVtpmReportData),
//     signed by that AK over SHA-256(REPORT_DATA), whose PCRs the event log replays to and whose boot events
//     meet the policy — the same appraisal (runtime/attestation/tpm) Nitride gives a workload's evidence.vtpm;
//     with policy.vtpm.ekPublics (EK credential activation: AWS, the instance's EK from GetInstanceTpmEkPub) the AK
//     must then open a credential made for that EK (POST /v1/sys/attestation/activate, activationRoundTrip).
// A man in the middle relaying the real runtime's evidence presents its own key and fails the second; replayed
// evidence carries an old nonce and fails it too; a quote from another TPM is signed by an AK REPORT_DATA
// does not name (binding.vtpm-ak). The returned SPKI hash is then the pin for every later
// connection (connectPinned): a request is sent only on a connection whose peer presented exactly that key.
import http from "node:http";
import tls from "node:tls";
import { isIP } from "node:net";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { appraise } from "../attestation/appraise.js";
import { akSha256, certSpkiSha256, runtimeTlsReportData, runtimeTlsVtpmReportData } from "../attestation/binding.js";
import { parsePolicy, PolicyError, type Policy, type TrustConfig } from "../attestation/policy.js";
import type { Check, Evidence, Verdict } from "../attestation/types.js";
import { parseReport, productFromName } from "../attestation/snp/abi.js";
import { parseQuote } from "../attestation/tdx/abi.js";
import { parseHclReport } from "../attestation/azure/abi.js";
import { parseTpmPublic, parseTpmsAttest } from "../attestation/tpm/abi.js";
import { makeCredential } from "../attestation/tpm/credential.js";
import { bindsOs } from "../attestation/tpm/boot-policy.js";
import {
  EK_CREDENTIAL_CHECK,
  ekCredentialPending,
  ekCredentialTarget,
  settleEkCredential,
} from "../attestation/tpm/ek-credential.js";
import { decodeEvidence } from "../protocol/evidence.js";
import { WireFormatError } from "../protocol/errors.js";
import type { RuntimeAttestation } from "./connection.js";

/** What the runtime must prove: an appraisal policy (with a measurement allow-list) and the roots to trust. */
export interface RuntimeExpectation {
  /**
   * With a `vtpm` section (tpm/policy.ts VtpmPolicy: measuredBoot — e.g. images/ predictFromDisk of the runtime
   * image — and whose AK counts: akPins, nitroTpm, gceAkCertificate, or the loud allowUnauthenticatedAk) the
   * runtime must send the vTPM half (`attestation { vtpm { … } }`) and it is appraised as a workload's is.
   */
  policy: Policy;
  trust: TrustConfig;
  /**
   * Accept any instance of the expected SEV-SNP image (no HOST_DATA required). Without it, an expectation
   * with SNP measurements must pin HOST_DATA unless it trusts only simulated anchors: the measurement names
   * the image, and anyone can launch the same image (see instanceBindingCheck).
   */
  allowAnyInstance?: boolean;
  /** The runtime instance (32-byte hex, runtimeInstanceId) that must answer; a sealed runtime reports none. */
  instanceId?: string;
}

export interface VerifyRuntimeOptions {
  /** Base URL (https://host:port). */
  url: string;
  expected: RuntimeExpectation;
  /** Default: 32 fresh random bytes. */
  nonce?: Uint8Array;
  timeoutMs?: number;
  /** Verification time (certificate validity). */
  now?: Date;
}

export interface RuntimeVerification {
  ok: boolean;
  url: string;
  /** SHA-256 (hex) of the SPKI the connection presented: the pin, when ok. */
  spkiSha256?: string;
  /** Every check, passed or not, in order (the appraisal's own checks included). */
  checks: Check[];
  /** The first failed check, "id: detail", when not ok. */
  reason?: string;
  /** The evidence chains to a simulated root (tests, local stack). */
  simulated: boolean;
  measurement?: string;
  /** The instance id the evidence binds (hex); absent when the runtime is sealed or not initialised. */
  instanceId?: string;
  verdict?: Verdict;
}

/** The runtime did not prove what it must: names the failed check. Never retried as if transient. */
export class RuntimeAttestationError extends Error {
  override name = "RuntimeAttestationError";
  constructor(
    readonly url: string,
    readonly reason: string,
    readonly verification?: RuntimeVerification,
  ) {
    super(`runtime ${url} refused by attested TLS: ${reason}`);
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const HEX48 = /^[0-9a-f]{96}$/;

/** The plain (JSON, Pulumi input, user-data) form → policy and trust. Throws RuntimeAttestationError naming the field. */
export function runtimeExpectation(a: RuntimeAttestation, field = "attestation"): RuntimeExpectation {
  const bad = (f: string, why: string) => new RuntimeAttestationError("(config)", `${field}.${f}: ${why}`);
  let policy: Policy = {};
  if (a.policy !== undefined && a.policy !== "") {
    try {
      policy = parsePolicy(JSON.parse(a.policy));
    } catch (e) {
      throw bad("policy", e instanceof PolicyError || e instanceof SyntaxError ? e.message : String(e));
    }
  }
  const list = (v: unknown, f: string): string[] | undefined => {
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length === 0) throw bad(f, "must be a non-empty list of 96-hex-digit values");
    return v.map((m, i) => {
      const x = typeof m === "string" ? m.toLowerCase() : "";
      if (!HEX48.test(x)) throw bad(`${f}[${i}]`, "must be 96 hex digits (48 bytes)");
      return x;
    });
  };
  const snp = list(a.snpMeasurements, "snpMeasurements");
  const mrTd = list(a.tdxMrTd, "tdxMrTd");
  if (snp) {
    if (policy.snp?.measurements) throw bad("snpMeasurements", "also given in policy.snp.measurements; give one");
    policy.snp = { ...policy.snp, measurements: snp };
  }
  if (a.allowAnyInstance !== undefined && typeof a.allowAnyInstance !== "boolean")
    throw bad("allowAnyInstance", "must be true or false");
  if (a.snpHostData !== undefined) {
    const hd = typeof a.snpHostData === "string" ? a.snpHostData.toLowerCase() : "";
    if (!/^[0-9a-f]{64}$/.test(hd)) throw bad("snpHostData", "must be 64 hex digits (32 bytes)");
    if (policy.snp?.hostData) throw bad("snpHostData", "also given in policy.snp.hostData; give one");
    policy.snp = { ...policy.snp, hostData: hd };
  }
  if (mrTd) {
    if (policy.tdx?.mrTd) throw bad("tdxMrTd", "also given in policy.tdx.mrTd; give one");
    policy.tdx = { ...policy.tdx, mrTd };
  }
  const rid = a.runtimeInstanceId;
  if (rid !== undefined && !(typeof rid === "string" && /^[0-9a-f]{64}$/.test(rid)))
    throw bad("runtimeInstanceId", "must be 64 lower-case hex digits (32 bytes)");
  policy.requireReportDataBinding = true;
  const kds = a.kds ?? "online";
  if (kds !== "online" && kds !== "offline" && kds !== "off") throw bad("kds", "must be online, offline or off");
  const trust: TrustConfig = { snp: {}, tdx: { fetchCollateral: kds === "online" } };
  if (kds !== "off") trust.snp!.kds = { offline: kds === "offline" };
  if (a.simulatedAnchors?.length) {
    trust.snp!.simulated = a.simulatedAnchors.map((x, i) => {
      const product = productFromName(String(x?.product ?? ""));
      if (!product) throw bad(`simulatedAnchors[${i}].product`, "must be Milan, Genoa or Turin");
      if (!/^[0-9a-f]{64}$/.test(String(x.ark_sha256)))
        throw bad(`simulatedAnchors[${i}].ark_sha256`, "must be 64 lowercase hex digits");
      if (!Array.isArray(x.ca_certs) || x.ca_certs.some((c) => typeof c !== "string"))
        throw bad(`simulatedAnchors[${i}].ca_certs`, "must be a list of base64 DER certificates");
      return {
        simulated: true as const,
        product,
        arkSha256: x.ark_sha256,
        caCerts: x.ca_certs.map((c) => new Uint8Array(Buffer.from(c, "base64"))),
      };
    });
  }
  return {
    policy,
    trust,
    ...(a.allowAnyInstance ? { allowAnyInstance: true } : {}),
    ...(rid ? { instanceId: rid } : {}),
  };
}

/**
 * Does the expectation pin WHICH instance of the image? A measurement proves the code; two VMs launched
 * from the same image are indistinguishable by it — a runtime another party launched and initialised
 * from the kit's public image would pass. The deployer sets HOST_DATA at launch (e.g. SHA-256 of an
 * instance identity it chose) and requires it here; on TDX the launch-time equivalents are MRCONFIGID, MROWNER
 * and MROWNERCONFIG. Required against real roots; optional when only simulated anchors are trusted (tests; the
 * local stack still sets it); `allowAnyInstance` is the explicit opt-out for platforms where the deployer cannot
 * choose them.
 */
function instanceBindingCheck(e: RuntimeExpectation, simulated: boolean): Check {
  const id = "runtime.instance-binding";
  const snp = e.policy.snp;
  const tdx = e.policy.tdx;
  const snpExpected = !!snp?.measurements?.length;
  const tdxExpected = !!tdx?.mrTd?.length;
  if (!snpExpected && !tdxExpected) return { id, ok: true, detail: "no SEV-SNP or TDX expectation" };
  const snpOpen = snpExpected && !snp?.hostData;
  const tdxOpen = tdxExpected && !tdx?.mrConfigId && !tdx?.mrOwner && !tdx?.mrOwnerConfig;
  if (!snpOpen && !tdxOpen)
    return {
      id,
      ok: true,
      detail: [
        snpExpected ? `HOST_DATA must be ${snp!.hostData!.slice(0, 16)}…` : "",
        tdxExpected ? "TDX MRCONFIGID/MROWNER/MROWNERCONFIG pinned" : "",
      ]
        .filter(Boolean)
        .join("; "),
    };
  if (e.allowAnyInstance) return { id, ok: true, detail: "any instance of the image accepted (allowAnyInstance)" };
  if (simulated)
    return {
      id,
      ok: true,
      detail: `simulated evidence: ${snpOpen ? "HOST_DATA" : "MRCONFIGID/MROWNER/MROWNERCONFIG"} not required`,
    };
  return {
    id,
    ok: false,
    detail: snpOpen
      ? "no HOST_DATA (snpHostData) given: the measurement names the image, not the instance, so any VM launched from it would pass; set HOST_DATA at launch and give it, or set allowAnyInstance where the platform cannot"
      : "no TDX MRCONFIGID, MROWNER or MROWNERCONFIG pinned (policy.tdx): MRTD and the RTMRs name the image, not the instance, so any TD launched from it would pass; set one at launch and pin it, or set allowAnyInstance",
  };
}

/**
 * Is it THE runtime the deployer initialised, not a twin? The measurement and HOST_DATA name the image and a
 * public launch parameter; the instance id is the hash of a secret the runtime drew at sys/init behind its own
 * barrier, and the genuine (measured) code binds only its own into REPORT_DATA. Without an expected id (before
 * bootstrap, or a verifier that opts out) the reported one is recorded, not required.
 */
function instanceCheck(want: string | undefined, reported: string | undefined, bound: boolean): Check {
  const id = "runtime.instance-id";
  if (!want)
    return {
      id,
      ok: true,
      detail: reported
        ? `instance ${reported.slice(0, 16)}… reported (no instance id expected)`
        : "the runtime reports no instance (sealed or not initialised; none expected)",
    };
  if (!reported)
    return {
      id,
      ok: false,
      detail: `expected instance ${want.slice(0, 16)}…, but the runtime reports none (sealed or not initialised: not the runtime that was bootstrapped, or not unsealed yet)`,
    };
  if (reported !== want)
    return {
      id,
      ok: false,
      detail: `the runtime is instance ${reported.slice(0, 16)}…, not the expected ${want.slice(0, 16)}…: another runtime launched from the same image (a twin), refused`,
    };
  if (!bound) return { id, ok: false, detail: "the reported instance id is not the one REPORT_DATA binds" };
  return { id, ok: true, detail: `REPORT_DATA binds the expected instance ${want.slice(0, 16)}…` };
}

/** REPORT_DATA as the report's bytes say (unverified): names a refusal's cause, never decides acceptance. */
function rawReportData(e: Evidence): Buffer | undefined {
  try {
    if (e.kind === "snp") return Buffer.from(parseReport(e.report).reportData);
    if (e.kind === "tdx") return Buffer.from(parseQuote(e.quote).body.reportData);
    // Azure: the binding is the hardware-signed runtime claims' user-data (the hardware REPORT_DATA is their hash).
    if (e.kind === "azure-snp" || e.kind === "azure-tdx") {
      const ud = parseHclReport(e.hclReport).runtimeClaims["user-data"];
      return typeof ud === "string" && /^[0-9a-fA-F]{128}$/.test(ud) ? Buffer.from(ud, "hex") : undefined;
    }
  } catch {
    /* unparseable: the appraisal said so */
  }
  return undefined;
}

/** The hardware part alone (a verifier without a vtpm policy does not appraise the quote). */
function withoutVtpm(e: Evidence): Evidence {
  if (e.kind !== "snp" && e.kind !== "tdx") return e;
  const { vtpm: _quote, ...hardware } = e;
  return hardware;
}

/** A vtpm expectation must constrain the OS (measuredBoot) and say whose AK counts. */
function vtpmExpectationCheck(v: NonNullable<Policy["vtpm"]>): Check {
  const id = "runtime.vtpm-policy";
  if (!v.measuredBoot)
    return {
      id,
      ok: false,
      detail: "policy.vtpm has no measuredBoot section: the runtime's OS would not be checked (give its boot policy)",
    };
  return {
    id,
    ok: true,
    detail: v.ekPublics?.length
      ? "the runtime must send a vTPM quote meeting the measured-boot policy, by an AK that activates a credential made for a registered EK"
      : "the runtime must send a vTPM quote meeting the measured-boot policy",
  };
}

/**
 * Azure evidence: the SNP measurement is the paravisor's (Microsoft's firmware, the same for every CVM of the size),
 * so what names the runtime's OS is the vTPM: the expectation must bind it — by events (policy.azure.measuredBoot,
 * e.g. predicted from the runtime disk's UKI: the event log replayed to the HCL AK's quote, the UKI's Authenticode
 * digest required in PCR 4, which covers kernel, initrd and the command line with the dm-verity root; bindsOs), or by
 * a PCR 4 value (policy.azure.pcrs). PCR 11 alone binds nothing (any OS can extend it to a published value). Judged on
 * the evidence's kind, not the expectation's shape: a verifier expecting SNP evidence that is sent Azure evidence is
 * held to it too.
 */
function azureOsBindingCheck(p: Policy): Check {
  const id = "runtime.azure-os-binding";
  if (bindsOs(p.azure?.measuredBoot))
    return {
      id,
      ok: true,
      detail: "the boot events (replayed to the HCL AK's quote) must meet the measured-boot policy",
    };
  if ((p.azure?.pcrs?.["4"]?.length ?? 0) > 0)
    return { id, ok: true, detail: "the vTPM quote's PCR 4 must be one of the expected values (the runtime's UKI)" };
  return {
    id,
    ok: false,
    detail:
      "Azure evidence, but the expectation does not bind the OS: the SNP measurement is the paravisor's, the same for every Azure CVM of the size; give policy.azure.measuredBoot (with a required boot application, e.g. predicted from the runtime disk) or policy.azure.pcrs with PCR 4",
  };
}

/** Does the policy pin what the runtime runs? Without it any genuine VM would do: refused (no TOFU). */
function measurementCheck(p: Policy): Check {
  const id = "runtime.expected-measurement";
  const snp = p.snp?.measurements?.length ?? 0,
    tdx = p.tdx?.mrTd?.length ?? 0;
  // MRTD measures the TD firmware only: the kernel is in RTMR1, its command line (with the verity root) and the
  // initrd in RTMR2. Without them any OS booted by that firmware would pass as the runtime.
  if (tdx > 0 && !(p.tdx?.rtmr1?.length && p.tdx?.rtmr2?.length))
    return {
      id,
      ok: false,
      detail:
        "a TDX expectation of MRTD alone names only the TD firmware: pin RTMR1 (the kernel) and RTMR2 (its command line with the verity root, and the initrd) as well (policy.tdx.rtmr1, policy.tdx.rtmr2; `buckypaper measure tdx` prints them)",
    };
  return snp + tdx > 0
    ? { id, ok: true, detail: `expecting one of ${snp} SNP measurement(s) / ${tdx} TDX MRTD(s)` }
    : {
        id,
        ok: false,
        detail: "no expected measurement (snp measurements or tdx MRTD) given: refusing to trust on first use",
      };
}

function target(url: string): { host: string; port: number; base: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RuntimeAttestationError(url, "url: not a URL");
  }
  if (u.protocol !== "https:") throw new RuntimeAttestationError(url, "url: attested TLS needs an https:// URL");
  return {
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: Number(u.port || 443),
    base: u.pathname.replace(/\/+$/, ""),
  };
}

/** A TLS connection whose certificate is not judged here; the SPKI hash of what the peer presented. */
export function openTls(url: string, timeoutMs = 15_000): Promise<{ socket: tls.TLSSocket; spkiSha256: string }> {
  const t = target(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: t.host,
      port: t.port,
      servername: isIP(t.host) ? undefined : t.host,
      // Trust is decided by the attested key below, not by a chain: the certificate is self-signed.
      rejectUnauthorized: false,
      timeout: timeoutMs,
    });
    const fail = (e: Error) => {
      socket.destroy();
      reject(e);
    };
    socket.once("timeout", () => fail(new Error(`TLS handshake with ${t.host}:${t.port} timed out`)));
    socket.once("error", (e: NodeJS.ErrnoException) =>
      reject(new Error(`cannot reach ${url}: ${e.code ?? e.message}`)),
    );
    socket.once("secureConnect", () => {
      socket.setTimeout(0);
      const cert = socket.getPeerX509Certificate();
      if (!cert) return fail(new Error(`${url}: the server presented no certificate`));
      resolve({ socket, spkiSha256: certSpkiSha256(cert) });
    });
  });
}

export interface PinnedResponse {
  status: number;
  text: string;
}

/** One HTTP request over an already open (and already judged) TLS socket; the socket is closed afterwards. */
export function requestOver(
  socket: tls.TLSSocket,
  url: string,
  method: string,
  path: string,
  o: { headers?: Record<string, string>; body?: Buffer; timeoutMs?: number } = {},
): Promise<PinnedResponse> {
  const t = target(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        method,
        host: t.host,
        port: t.port,
        path: `${t.base}${path}`,
        headers: { ...o.headers, connection: "close" },
        createConnection: () => socket,
        timeout: o.timeoutMs ?? 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("error", reject);
        res.on("end", () => {
          socket.destroy();
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer`)));
    req.on("error", (e) => {
      socket.destroy();
      reject(e);
    });
    req.end(o.body);
  });
}

/** Verifies the runtime at `url` (see the file comment). Never throws for a refusal: `ok` and `reason` say it. */
export async function verifyRuntime(o: VerifyRuntimeOptions): Promise<RuntimeVerification> {
  const checks: Check[] = [];
  const out = (extra: Partial<RuntimeVerification> = {}): RuntimeVerification => {
    // A REPORT_DATA mismatch is named by the binding.* check that says which part is wrong (nonce, key, AK); the
    // appraisal's generic mismatches (REPORT_DATA, the AK binding, the quote's qualifying data) then step aside.
    const specific = checks.some((c) => !c.ok && c.id.startsWith("binding."));
    const generic = ["policy.report-data", "vtpm.ak-binding", "tpm.nonce", "vtpm.nonce"];
    // Azure: the PCR values and boot events of a quote that did not verify are not read ("not covered by the verified
    // TPM quote", boot.event-log); the quote's own failure (or the binding.* that caused it) is the cause.
    const quoteFailed = checks.some((c) => !c.ok && (c.id.startsWith("vtpm.") || c.id.startsWith("binding.")));
    const consequence = (c: Check) =>
      (specific && generic.includes(c.id)) ||
      (quoteFailed && (/^policy\.pcr\d+$/.test(c.id) || c.id === "boot.event-log"));
    const failed = checks.find((c) => !c.ok && !consequence(c));
    return {
      ok: !failed && checks.length > 0,
      url: o.url,
      checks,
      simulated: false,
      ...extra,
      ...(failed ? { reason: `${failed.id}: ${failed.detail}` } : {}),
    };
  };
  // Before contacting the runtime when no simulated anchor could make the evidence simulated; after the
  // appraisal otherwise (then it is known whether the evidence chained to a vendor root).
  checks.push(measurementCheck(o.expected.policy));
  const vtpmWanted = o.expected.policy.vtpm;
  if (vtpmWanted) checks.push(vtpmExpectationCheck(vtpmWanted));
  const simulatedTrust = !!o.expected.trust.snp?.simulated?.length || !!o.expected.trust.tdx?.simulatedRoots?.length;
  if (!simulatedTrust) checks.push(instanceBindingCheck(o.expected, false));
  if (checks.some((c) => !c.ok)) return out();
  const nonce = Buffer.from(o.nonce ?? randomBytes(32));
  let conn: { socket: tls.TLSSocket; spkiSha256: string };
  try {
    target(o.url);
    conn = await openTls(o.url, o.timeoutMs);
  } catch (e) {
    checks.push({ id: "tls.connect", ok: false, detail: (e as Error).message });
    return out();
  }
  checks.push({ id: "tls.connect", ok: true, detail: `peer key SPKI SHA-256 ${conn.spkiSha256}` });

  let res: PinnedResponse;
  try {
    res = await requestOver(conn.socket, o.url, "GET", `/v1/sys/attestation?nonce=${nonce.toString("hex")}`, {
      headers: { accept: "application/json" },
      timeoutMs: o.timeoutMs,
    });
  } catch (e) {
    checks.push({ id: "runtime.evidence", ok: false, detail: `GET sys/attestation: ${(e as Error).message}` });
    return out({ spkiSha256: conn.spkiSha256 });
  }
  let data: Record<string, unknown> | undefined;
  try {
    data = (JSON.parse(res.text) as { data?: Record<string, unknown> }).data;
  } catch {
    /* reported below */
  }
  if (res.status !== 200 || !data || typeof data !== "object") {
    let errs = "";
    try {
      errs = ((JSON.parse(res.text) as { errors?: string[] }).errors ?? []).join("; ");
    } catch {
      /* not JSON */
    }
    const why =
      res.status === 404
        ? "HTTP 404: the runtime serves no attestation (no `attestation` stanza in its config?)"
        : `HTTP ${res.status}${errs ? `: ${errs}` : ""}`;
    checks.push({ id: "runtime.evidence", ok: false, detail: `GET sys/attestation: ${why}` });
    return out({ spkiSha256: conn.spkiSha256 });
  }
  let evidence;
  try {
    evidence = decodeEvidence(data.evidence, "evidence");
  } catch (e) {
    checks.push({
      id: "runtime.evidence",
      ok: false,
      detail: e instanceof WireFormatError ? e.message : `evidence: ${(e as Error).message}`,
    });
    return out({ spkiSha256: conn.spkiSha256 });
  }
  checks.push({
    id: "runtime.evidence",
    ok: true,
    detail: `${evidence.kind} evidence from ${typeof data.evidence_source === "string" ? data.evidence_source : "?"}`,
  });
  if (evidence.kind === "azure-snp" || evidence.kind === "azure-tdx") {
    const c = azureOsBindingCheck(o.expected.policy);
    checks.push(c);
    if (!c.ok) return out({ spkiSha256: conn.spkiSha256 });
  }

  // The instance id the runtime says it is: authenticated only by REPORT_DATA binding it (checked below).
  const rawInstance = data.instance_id ?? null;
  if (rawInstance !== null && !(typeof rawInstance === "string" && /^[0-9a-f]{64}$/.test(rawInstance))) {
    checks.push({ id: "runtime.evidence", ok: false, detail: "instance_id: must be null or 64 hex digits" });
    return out({ spkiSha256: conn.spkiSha256 });
  }
  const claimedInstance = rawInstance === null ? undefined : rawInstance;
  const instanceBytes = claimedInstance ? Buffer.from(claimedInstance, "hex") : undefined;
  // The vTPM half: the AK that signed the quote is what REPORT_DATA must name (runtimeTlsVtpmReportData).
  const vtpm = (evidence.kind === "snp" || evidence.kind === "tdx") && evidence.vtpm ? evidence.vtpm : undefined;
  const quoteAk = vtpm ? akSha256(vtpm.akPublic).toString("hex") : undefined;
  if (vtpmWanted && !vtpm) {
    checks.push({
      id: "runtime.vtpm-missing",
      ok: false,
      detail:
        "the expectation has a measured-boot (vtpm) policy, but the runtime sent no vTPM quote and event log: " +
        "without them nothing binds its OS where the launch digest names only the provider's firmware " +
        "(the runtime needs `attestation { vtpm { … } }`)",
    });
    return out({ spkiSha256: conn.spkiSha256 });
  }
  if (vtpm)
    checks.push({
      id: "runtime.vtpm",
      ok: true,
      detail: vtpmWanted
        ? `vTPM quote by AK ${quoteAk!.slice(0, 16)}… and event log, appraised against the measured-boot policy`
        : `vTPM quote by AK ${quoteAk!.slice(0, 16)}… sent; the expectation has no vtpm policy, so only its binding is checked`,
    });
  const bind = (spkiHex: string, akHex: string | undefined) =>
    akHex === undefined
      ? runtimeTlsReportData(nonce, Buffer.from(spkiHex, "hex"), instanceBytes)
      : runtimeTlsVtpmReportData(nonce, Buffer.from(spkiHex, "hex"), Buffer.from(akHex, "hex"), instanceBytes);
  const expected = bind(conn.spkiSha256, quoteAk);
  // Without a vtpm policy the quote is not appraised (nothing changes for such a verifier): the hardware part is,
  // over the AK-bound REPORT_DATA.
  const verdict = vtpmWanted
    ? await appraise(evidence, o.expected.policy, {
        trust: o.expected.trust,
        vtpmReportData: (ak) => bind(conn.spkiSha256, akSha256(ak).toString("hex")),
        ...(o.now ? { now: o.now } : {}),
      })
    : await appraise(withoutVtpm(evidence), o.expected.policy, {
        trust: o.expected.trust,
        expectedReportData: expected,
        ...(o.now ? { now: o.now } : {}),
      });
  checks.push(...verdict.checks);
  if (simulatedTrust) checks.push(instanceBindingCheck(o.expected, verdict.simulated));

  // The appraisal's policy.report-data says "mismatch"; these say which part is wrong, so a refusal names
  // a man in the middle, a replay or a relayed quote rather than a bare hash difference.
  // From the verified claims; when the appraisal withheld them (a vTPM check failed, so the verdict is refused
  // anyway) from the report's own bytes — only to name which part is wrong, never to accept.
  const actual = verdict.claims?.reportData
    ? Buffer.from(verdict.claims.reportData, "hex")
    : verdict.checks.some((c) => !c.ok)
      ? rawReportData(evidence)
      : undefined;
  const eq = (a: Buffer | undefined, b: Buffer) => !!a && a.length === b.length && timingSafeEqual(a, b);
  const claimedSpki =
    typeof data.spki_sha256 === "string" && /^[0-9a-f]{64}$/.test(data.spki_sha256) ? data.spki_sha256 : undefined;
  const claimedNonce = typeof data.nonce === "string" ? data.nonce : "";
  const claimedAk =
    vtpm && typeof data.ak_sha256 === "string" && /^[0-9a-f]{64}$/.test(data.ak_sha256) ? data.ak_sha256 : undefined;
  const akCandidates = vtpm ? [...new Set([quoteAk, ...(claimedAk ? [claimedAk] : [])])] : [undefined];
  const spkiCandidates = [...new Set([conn.spkiSha256, ...(claimedSpki ? [claimedSpki] : [])])];
  const boundWith = (spkiHex: string) => akCandidates.some((ak) => eq(actual, bind(spkiHex, ak)));
  const boundToOurNonce = spkiCandidates.some(boundWith);
  const boundToOurKey = boundWith(conn.spkiSha256);
  // Our nonce and this connection's key (and the quote's AK), as the answer says, and still no match: what is
  // left is the instance id the answer claims — REPORT_DATA binds another (a forged instance_id).
  if (
    !eq(actual, expected) &&
    claimedNonce === nonce.toString("hex") &&
    claimedSpki === conn.spkiSha256 &&
    (!vtpm || claimedAk === quoteAk)
  )
    checks.push({
      id: "binding.instance-id",
      ok: false,
      detail: `the answer claims ${claimedInstance ? `instance ${claimedInstance.slice(0, 16)}…` : "no instance"}, but REPORT_DATA does not bind that (forged instance_id)`,
    });
  checks.push(
    boundToOurNonce
      ? { id: "binding.nonce-fresh", ok: true, detail: "REPORT_DATA covers the fresh nonce of this request" }
      : {
          id: "binding.nonce-fresh",
          ok: false,
          detail:
            claimedNonce && claimedNonce !== nonce.toString("hex")
              ? `the evidence answers nonce ${claimedNonce.slice(0, 16)}…, not this request's ${nonce.toString("hex").slice(0, 16)}… (replayed evidence)`
              : "REPORT_DATA is not bound to this request's nonce (replayed or foreign evidence)",
        },
  );
  checks.push(
    boundToOurKey
      ? {
          id: "binding.tls-key",
          ok: true,
          detail: `REPORT_DATA binds the TLS key this connection presented (SPKI SHA-256 ${conn.spkiSha256.slice(0, 16)}…)`,
        }
      : {
          id: "binding.tls-key",
          ok: false,
          detail:
            boundToOurNonce && claimedSpki && claimedSpki !== conn.spkiSha256
              ? `the evidence binds TLS key ${claimedSpki.slice(0, 16)}… but this connection presented ${conn.spkiSha256.slice(0, 16)}…: a man in the middle relaying genuine evidence`
              : `REPORT_DATA does not bind the TLS key this connection presented (${conn.spkiSha256.slice(0, 16)}…)`,
        },
  );
  if (vtpm)
    checks.push(
      eq(actual, expected)
        ? {
            id: "binding.vtpm-ak",
            ok: true,
            detail: `REPORT_DATA binds the AK that signed the quote (${quoteAk!.slice(0, 16)}…)`,
          }
        : {
            id: "binding.vtpm-ak",
            ok: false,
            detail:
              boundToOurKey && claimedAk && claimedAk !== quoteAk
                ? `REPORT_DATA binds AK ${claimedAk.slice(0, 16)}…, but the quote is signed by AK ${quoteAk!.slice(0, 16)}…: a quote from another TPM relayed with genuine hardware evidence`
                : `REPORT_DATA does not bind the AK that signed the quote (${quoteAk!.slice(0, 16)}…)`,
          },
    );
  checks.push(instanceCheck(o.expected.instanceId, claimedInstance, eq(actual, expected)));
  // EK credential activation, only once everything else holds (the AK is the one REPORT_DATA binds and signed the
  // quote): otherwise the verdict is refused anyway and the TPM is not asked.
  let settled = verdict;
  const pendingOnly = checks.filter((c) => !c.ok);
  if (
    vtpm &&
    vtpmWanted?.ekPublics?.length &&
    pendingOnly.length === 1 &&
    pendingOnly[0].id === EK_CREDENTIAL_CHECK &&
    ekCredentialPending(verdict)
  ) {
    const outcome = await activationRoundTrip(o, conn.spkiSha256, vtpm, vtpmWanted.ekPublics);
    settled = settleEkCredential(verdict, outcome);
    const i = checks.findIndex((c) => c.id === EK_CREDENTIAL_CHECK);
    checks[i] = outcome;
  }
  return out({
    spkiSha256: conn.spkiSha256,
    simulated: verdict.simulated,
    verdict: settled,
    ...(claimedInstance && eq(actual, expected) ? { instanceId: claimedInstance } : {}),
    ...(verdict.claims ? { measurement: verdict.claims.measurement } : {}),
  });
}

/**
 * The second round trip of EK credential activation (runtime/attestation/tpm/ek-credential.ts): a fresh secret in a
 * credential made (TPM2_MakeCredential in software) for the registered EK and the Name of the AK that signed the
 * quote, sent on a new connection pinned to the attested TLS key. Only a TPM holding that EK's private key and an
 * object of that Name opens it, and only the runtime holding the attested key answers on that connection; the
 * secret is drawn per verification, so an answer recorded in another session does not match.
 */
async function activationRoundTrip(
  o: VerifyRuntimeOptions,
  spkiSha256: string,
  vtpm: { akPublic: Uint8Array; quote: Uint8Array },
  ekPublics: string[],
): Promise<Check> {
  const id = EK_CREDENTIAL_CHECK;
  let qualifiedSigner: Uint8Array | undefined;
  try {
    qualifiedSigner = parseTpmsAttest(vtpm.quote).qualifiedSigner;
  } catch {
    qualifiedSigner = undefined;
  }
  const t = ekCredentialTarget(ekPublics, parseTpmPublic(vtpm.akPublic), qualifiedSigner);
  const ek = `EK ${Buffer.from(t.ek.name).toString("hex").slice(0, 16)}…`;
  const secret = randomBytes(32);
  const made = makeCredential(t.ek, t.akName, secret);
  let res: PinnedResponse;
  try {
    const socket = await connectPinned(o.url, spkiSha256, o.timeoutMs);
    res = await requestOver(socket, o.url, "POST", "/v1/sys/attestation/activate", {
      headers: { "content-type": "application/json", accept: "application/json" },
      body: Buffer.from(
        JSON.stringify({
          ek_name: Buffer.from(t.ek.name).toString("hex"),
          credential_blob: made.credentialBlob.toString("base64"),
          encrypted_secret: made.encryptedSecret.toString("base64"),
        }),
      ),
      timeoutMs: o.timeoutMs,
    });
  } catch (e) {
    return { id, ok: false, detail: `POST sys/attestation/activate: ${(e as Error).message}` };
  }
  let body: { data?: { secret?: unknown }; errors?: unknown } = {};
  try {
    body = JSON.parse(res.text) as typeof body;
  } catch {
    /* judged below */
  }
  if (res.status !== 200) {
    const errs = Array.isArray(body.errors) ? body.errors.map(String).join("; ") : "";
    return {
      id,
      ok: false,
      detail:
        res.status === 404
          ? "POST sys/attestation/activate: HTTP 404 (the runtime offers no EK credential activation)"
          : `the runtime could not activate the credential for the registered ${ek} (HTTP ${res.status}${errs ? `: ${errs}` : ""}): its AK does not live in that TPM`,
    };
  }
  const got = typeof body.data?.secret === "string" ? Buffer.from(body.data.secret, "base64") : Buffer.alloc(0);
  if (got.length !== secret.length || !timingSafeEqual(got, secret))
    return {
      id,
      ok: false,
      detail: `the answer is not this verification's credential secret: the AK does not live in the TPM of the registered ${ek} (another TPM, or an answer replayed from another session)`,
    };
  return {
    id,
    ok: true,
    detail: `the AK activated a credential made for the registered ${ek} on the attested connection: it is a key of that TPM (the EK itself is vouched for by its registration, e.g. the EC2 API)`,
  };
}

/** Verifies every replica; all must pass (one failure refuses the set). */
export async function verifyReplicas(
  urls: string[],
  o: Omit<VerifyRuntimeOptions, "url" | "nonce">,
): Promise<RuntimeVerification[]> {
  const out: RuntimeVerification[] = [];
  for (const url of urls) out.push(await verifyRuntime({ ...o, url }));
  return out;
}

/** A TLS connection to `url` whose peer presented exactly the pinned SPKI; nothing has been sent on it. */
export async function connectPinned(url: string, spkiSha256: string, timeoutMs?: number): Promise<tls.TLSSocket> {
  const c = await openTls(url, timeoutMs);
  if (c.spkiSha256 !== spkiSha256.toLowerCase()) {
    c.socket.destroy();
    throw new RuntimeAttestationError(
      url,
      `tls.pinned-key: the server presented key ${c.spkiSha256.slice(0, 16)}…, not the attested ${spkiSha256.slice(0, 16)}…`,
    );
  }
  return c.socket;
}

/**
 * Attested connections for a process (the provider, the enclaivelet): a runtime key is verified once per
 * (expectation, SPKI) and every request travels on a connection pinned to a verified key. A new key (the runtime
 * restarted and generated another) is verified afresh before anything is sent to it.
 */
export class AttestedRuntimes {
  readonly #verified = new Map<string, RuntimeVerification>();
  /** Verifications under way: concurrent requests to a new key wait for the one verification (one report). */
  readonly #inflight = new Map<string, Promise<RuntimeVerification>>();
  constructor(readonly timeoutMs = 15_000) {}

  static key(url: string, expected: RuntimeExpectation, spkiSha256: string): string {
    const e = JSON.stringify(expected, (_k, v: unknown) => (v instanceof Uint8Array ? hex(v) : v));
    return `${new URL(url).origin}\0${createHash("sha256").update(e).digest("hex")}\0${spkiSha256}`;
  }

  /** Verifies `url` unless a verdict for the key it presents is cached; throws RuntimeAttestationError. */
  async ensure(url: string, expected: RuntimeExpectation): Promise<RuntimeVerification> {
    const probe = await openTls(url, this.timeoutMs);
    probe.socket.destroy();
    const k = AttestedRuntimes.key(url, expected, probe.spkiSha256);
    const cached = this.#verified.get(k);
    if (cached) return cached;
    let running = this.#inflight.get(k);
    if (!running) {
      running = (async () => {
        const v = await verifyRuntime({ url, expected, timeoutMs: this.timeoutMs });
        if (!v.ok || !v.spkiSha256) throw new RuntimeAttestationError(url, v.reason ?? "not verified", v);
        this.#verified.set(AttestedRuntimes.key(url, expected, v.spkiSha256), v);
        return v;
      })().finally(() => this.#inflight.delete(k));
      this.#inflight.set(k, running);
    }
    return running;
  }

  /** A socket to `url` pinned to a verified key (verifying first when the key is new). Nothing sent yet. */
  async connect(url: string, expected: RuntimeExpectation): Promise<tls.TLSSocket> {
    const c = await openTls(url, this.timeoutMs);
    if (this.#verified.has(AttestedRuntimes.key(url, expected, c.spkiSha256))) return c.socket;
    c.socket.destroy();
    const v = await this.ensure(url, expected);
    return connectPinned(url, v.spkiSha256!, this.timeoutMs);
  }
}
