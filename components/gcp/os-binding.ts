// What binds a Compute Engine confidential VM: Google's firmware by its signed launch endorsement (the measurement
// for this machine type's vCPU count, re-verified by the runtime against its GCE-cc-tcb-root at every appraisal),
// and the OS through the Shielded VM vTPM — a measured-boot policy over events, with the AK authenticated by the
// certificate Google's EK/AK CA issues for this VM's vTPM (default) or by out-of-band AK pins. Binding the AK into
// REPORT_DATA alone is refused: the guest kernel runs at VMPL0 and could bind a software TPM.
import { ConfigError } from "../common/errors.js";
import type { Policy } from "../../runtime/protocol/policy.js";
import { bindsOs } from "../../runtime/attestation/tpm/boot-policy.js";
import { parseLaunchEndorsement, verifyGceEndorsement } from "../../runtime/attestation/gce/index.js";
import { measuredBootArgs, measuredBootPolicy, type OsBindingArgs } from "../common/os-binding.js";
import { requireSignedKitDisk } from "../common/boot-chain.js";

export interface GcpOsBindingArgs extends OsBindingArgs {
  /**
   * Authenticate the vTPM AK by Google's AK certificate (NV index 0x01c10002, chained to Google's pinned EK/AK
   * roots). Default true unless akPins are set.
   */
  googleAkCertificate?: boolean;
  /**
   * With googleAkCertificate: accept only AK certificates of VMs in these projects (instance-identity extension).
   * Default: the project the component's instance is created in (read from the instance once it exists), and its
   * zone; the certificate must also be marked production.
   */
  akCertificateProjects?: string[];
  /**
   * With googleAkCertificate: pin the workload to the instance this component creates (its instance id in the AK
   * certificate, `vtpm.gceAkCertificate.instanceIds`); the workload is registered right after the instance exists.
   * Default true; `false` is the explicit opt-out (any VM of the project and zone booted from the image qualifies).
   */
  pinInstance?: boolean;
}

export function gcpOsBinding(who: string, args: GcpOsBindingArgs): Policy["vtpm"] | undefined {
  const pins = args.akPins ?? [];
  pins.forEach((p, i) => {
    if (!/^[0-9a-fA-F]{64}$/.test(p)) throw new ConfigError(who, `akPins[${i}]`, "must be 64 hex digits (SHA-256)");
  });
  const cert = args.googleAkCertificate ?? pins.length === 0;
  (args.akCertificateProjects ?? []).forEach((p, i) => {
    if (!/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/.test(p))
      throw new ConfigError(who, `akCertificateProjects[${i}]`, "must be a GCP project id (6-30 of a-z, 0-9, -)");
  });
  if (args.akCertificateProjects?.length && !cert)
    throw new ConfigError(who, "akCertificateProjects", "needs googleAkCertificate (the projects are read from it)");
  if (args.pinInstance !== undefined && typeof args.pinInstance !== "boolean")
    throw new ConfigError(who, "pinInstance", `is '${String(args.pinInstance)}'`, ["true", "false"]);
  if (args.pinInstance === true && !cert)
    throw new ConfigError(who, "pinInstance", "needs googleAkCertificate (the instance id is read from it)");
  // GCP turns Secure Boot on (settings.ts shieldedInstanceConfig): a kit disk's UKI must be signed by a db cert.
  requireSignedKitDisk(
    who,
    args.bootChain,
    "the instance runs with Secure Boot on (shieldedInstanceConfig.enableSecureBoot; the image's shieldedInstanceInitialState.dbs must hold the certificate)",
  );
  const boot = measuredBootPolicy(who, measuredBootArgs(who, args, "sha256"));
  const authenticated = pins.length > 0 || cert;
  if (!(bindsOs(boot) && authenticated) && args.allowUnboundOs !== true) {
    const why = !bindsOs(boot)
      ? "does not bind the OS: set bootChain (the image the VM boots: kit manifest or UKI) or measuredBoot with bootApplications.required / an exact PCR 4 value (PCR 11 only beside it)"
      : "binds boot events, but no vTPM attestation key is authenticated (googleAkCertificate or akPins): a guest kernel at VMPL0 could bind a software TPM and replay the expected events";
    throw new ConfigError(
      who,
      bindsOs(boot) ? "googleAkCertificate" : "measuredBoot",
      `${why}. The SNP/TDX launch digest covers only Google's firmware and the vCPU count, so any VM of this shape that knows the workload id would attest as this workload. Set allowUnboundOs: true to register it anyway`,
    );
  }
  if (!boot) return undefined;
  return {
    measuredBoot: boot,
    ...(pins.length ? { akPins: pins.map((p) => p.toLowerCase()) } : {}),
    ...(cert
      ? { gceAkCertificate: args.akCertificateProjects?.length ? { projectIds: args.akCertificateProjects } : {} }
      : {}),
    ...(authenticated ? {} : { allowUnauthenticatedAk: true }),
  };
}

export interface EndorsedFirmware {
  /** The launch digest (SNP) or MRTDs (TDX) Google endorses for this shape. */
  measurements: string[];
  /** The `gce` policy section: the runtime re-verifies the endorsement at every appraisal. */
  policy: NonNullable<Policy["gce"]>;
  svn: number;
}

/**
 * A Google launch endorsement (VMLaunchEndorsement, base64, from
 * storage.googleapis.com/gce_tcb_integrity/ovmf_x64_csm/{sevsnp,tdx}/<hex>.binarypb) → the measurement for this
 * machine type. Parsed strictly at preview; when `tcbRootPem` is given the signature and chain are verified here
 * too (the runtime always verifies them with its own configured root).
 */
export function endorsedFirmware(
  who: string,
  b64: string,
  tee: "snp" | "tdx",
  vcpus: number,
  opts: { minSvn?: number; ramGib?: number; tcbRootPem?: string } = {},
): EndorsedFirmware {
  const f = "firmwareEndorsement";
  const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(b64.trim()) ? Buffer.from(b64.trim(), "base64") : undefined;
  if (!bytes?.length) throw new ConfigError(who, f, "must be the base64 of a VMLaunchEndorsement (.binarypb)");
  let e;
  try {
    e = parseLaunchEndorsement(bytes);
  } catch (err) {
    throw new ConfigError(who, f, (err as Error).message);
  }
  if (opts.tcbRootPem !== undefined) {
    const v = verifyGceEndorsement(bytes, { tcbRoots: [Buffer.from(opts.tcbRootPem)] });
    if (!v.ok)
      throw new ConfigError(
        who,
        f,
        `does not verify: ${v.checks
          .filter((c) => !c.ok)
          .map((c) => c.detail)
          .join("; ")}`,
      );
  }
  const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
  let measurements: string[];
  let svn: number;
  if (tee === "snp") {
    const snp = e.golden.sevSnp;
    const m = snp?.measurements.get(vcpus);
    if (!snp || !m)
      throw new ConfigError(
        who,
        f,
        `endorses no SEV-SNP measurement for ${vcpus} vCPUs (endorsed: ${[...(snp?.measurements.keys() ?? [])].join(", ") || "none"})`,
      );
    measurements = [hex(m)];
    svn = snp.svn;
  } else {
    const tdx = e.golden.tdx;
    const ms = (tdx?.measurements ?? []).filter((x) => opts.ramGib === undefined || x.ramGib === opts.ramGib);
    if (!tdx || ms.length === 0) throw new ConfigError(who, f, "endorses no TDX MRTD for this machine type");
    measurements = [...new Set(ms.map((x) => hex(x.mrtd)))];
    svn = tdx.svn;
  }
  if (opts.minSvn !== undefined && svn < opts.minSvn)
    throw new ConfigError(who, "minFirmwareSvn", `the endorsed firmware has SVN ${svn}, below ${opts.minSvn}`);
  return {
    measurements,
    svn,
    policy: {
      endorsements: [bytes.toString("base64")],
      ...(tee === "snp" ? { vcpus } : {}),
      ...(opts.ramGib !== undefined ? { ramGib: opts.ramGib } : {}),
      ...(opts.minSvn !== undefined ? { minSvn: opts.minSvn } : {}),
    },
  };
}
