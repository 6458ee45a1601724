// `buckypaper runtime verify`: attests a running runtime (every replica given) before an operator trusts it —
// its evidence must verify to the vendor root (or a listed simulated anchor), meet the policy, show an expected
// measurement and bind the TLS key of the connection it came over with a fresh nonce (runtime/client/
// attested-tls.ts) and, with --instance-id, be exactly the runtime instance bootstrapped (the Vhsm's
// `runtimeInstanceId` output): a twin of the image with the same HOST_DATA is refused (runtime.instance-id).
// With --boot-policy (AWS/GCE: the launch digest names only the provider's firmware) the runtime must also send a
// vTPM quote whose AK its REPORT_DATA binds, and its boot events must meet that measured-boot policy.
// Prints every check; exit 0 only when every URL passed, 1 when one was refused, 2 on usage.
import { parseFlags, readFlagFile } from "./args.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import type { RuntimeAttestation, SimulatedPlatformAnchor } from "../runtime/client/connection.js";

export const VERIFY_USAGE = `verify --url URL [--url URL …] (--measurement HEX … | --manifest FILE --vcpus N [--vcpu-type NAME])
                [--host-data HEX | --any-instance] [--instance-id HEX] [--anchor anchor.json …] [--amd-cert-dir DIR] [--policy FILE] [--kds online|offline|off]
                [--boot-policy FILE (--ak-pin HEX … | --ek-pub FILE … | --nitro-tpm | --gce-ak | --allow-unauthenticated-ak)]
                [--format json]
                                     attest the runtime (each replica) before trusting it; exit 0 only if all pass
                                     (--boot-policy: a measuredBoot JSON, e.g. predicted from the runtime image's disk;
                                     the runtime must send a vTPM quote meeting it, its AK authenticated as the flags say;
                                     --ek-pub: the instance's EK as \`aws ec2 get-instance-tpm-ek-pub --key-format tpmt\`
                                     returns it (base64 KeyValue, or the raw TPMT_PUBLIC): the AK must activate a
                                     credential made for it — EK credential activation)`;

const HEX48 = /^[0-9a-fA-F]{96}$/;

function anchorFile(file: string): SimulatedPlatformAnchor {
  let a: SimulatedPlatformAnchor;
  try {
    a = JSON.parse(readFlagFile("--anchor", file).toString("utf8")) as SimulatedPlatformAnchor;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--anchor ${file}: not JSON (${(e as Error).message})`);
  }
  if (!a || typeof a.ark_sha256 !== "string" || !Array.isArray(a.ca_certs))
    throw new UsageError(
      `--anchor ${file}: expected a simulated platform's anchor.json {product, ark_sha256, ca_certs}`,
    );
  return a;
}

async function manifestMeasurements(file: string, vcpus: string | undefined, vcpuType?: string): Promise<string[]> {
  if (!vcpus) throw new UsageError("--manifest needs --vcpus N (the runtime VM's vCPU count is in its measurement)");
  const counts = vcpus.split(",").map((x) => Number(x.trim()));
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 512))
    throw new UsageError(`--vcpus: '${vcpus}' is not a list of integers 1..512`);
  const { snpDigestsFromManifest } = await import("../images/guest/measure.js");
  const { ManifestError } = await import("../images/guest/manifest.js");
  try {
    const table = snpDigestsFromManifest(file, { vcpus: counts, ...(vcpuType ? { vcpu: vcpuType } : {}) });
    return [...table.values()].map((d) => d.toString("hex"));
  } catch (e) {
    if (e instanceof ManifestError) throw new UsageError(`--manifest ${file}: ${e.message}`);
    throw new UsageError(`--manifest ${file}: ${(e as Error).message}`);
  }
}

/** An EK file: the base64 KeyValue EC2 returns (--key-format tpmt), or the raw TPMT_PUBLIC → base64 TPMT_PUBLIC. */
function ekPubFile(file: string): string {
  const raw = readFlagFile("--ek-pub", file);
  const text = raw.toString("latin1").trim();
  return /^[A-Za-z0-9+/\r\n]+={0,2}$/.test(text)
    ? Buffer.from(text, "base64").toString("base64")
    : raw.toString("base64");
}

/** --boot-policy and the AK flags → the expectation's vtpm section (validated like a workload's, fields named). */
async function vtpmFlags(v: {
  "boot-policy"?: string;
  "ak-pin"?: string[];
  "ek-pub"?: string[];
  "nitro-tpm"?: boolean;
  "gce-ak"?: boolean;
  "allow-unauthenticated-ak"?: boolean;
}): Promise<import("../runtime/attestation/tpm/policy.js").VtpmPolicy | undefined> {
  const file = v["boot-policy"];
  const akFlags = ["ak-pin", "ek-pub", "nitro-tpm", "gce-ak", "allow-unauthenticated-ak"] as const;
  const given = akFlags.filter((f) => v[f] !== undefined && v[f] !== false);
  if (!file) {
    if (given.length) throw new UsageError(`--${given[0]} needs --boot-policy FILE`);
    return undefined;
  }
  if (given.length === 0)
    throw new UsageError(
      "--boot-policy: say whose attestation key counts: --ak-pin HEX (the runtime VM's vTPM AK), --ek-pub FILE (AWS: the instance's EK, EK credential activation), --nitro-tpm (AWS), --gce-ak (GCE), or --allow-unauthenticated-ak (the OS is then not bound against the guest kernel)",
    );
  let measuredBoot: unknown;
  try {
    measuredBoot = JSON.parse(readFlagFile("--boot-policy", file).toString("utf8"));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--boot-policy ${file}: not JSON (${(e as Error).message})`);
  }
  const { parseVtpmPolicy, VtpmPolicyError } = await import("../runtime/attestation/tpm/policy.js");
  try {
    return parseVtpmPolicy(
      {
        measuredBoot,
        ...(v["ak-pin"] ? { akPins: v["ak-pin"] } : {}),
        ...(v["ek-pub"] ? { ekPublics: v["ek-pub"].map(ekPubFile) } : {}),
        ...(v["nitro-tpm"] ? { nitroTpm: {} } : {}),
        ...(v["gce-ak"] ? { gceAkCertificate: {} } : {}),
        ...(v["allow-unauthenticated-ak"] ? { allowUnauthenticatedAk: true } : {}),
      },
      "vtpm",
    );
  } catch (e) {
    if (!(e instanceof VtpmPolicyError)) throw e;
    const where = e.field.replace(/^vtpm\.measuredBoot\.?/, "");
    const flag = e.field.startsWith("vtpm.akPins")
      ? "--ak-pin"
      : e.field.startsWith("vtpm.ekPublics")
        ? "--ek-pub"
        : where
          ? `--boot-policy ${file}: ${where}`
          : `--boot-policy ${file}`;
    throw new UsageError(`${flag}: ${e.reason}`);
  }
}

export async function runtimeVerify(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, {
    url: { type: "string", multiple: true },
    measurement: { type: "string", multiple: true },
    manifest: { type: "string" },
    "host-data": { type: "string" },
    "any-instance": { type: "boolean" },
    "instance-id": { type: "string" },
    vcpus: { type: "string" },
    "vcpu-type": { type: "string" },
    anchor: { type: "string", multiple: true },
    "amd-cert-dir": { type: "string" },
    policy: { type: "string" },
    kds: { type: "string" },
    "boot-policy": { type: "string" },
    "ak-pin": { type: "string", multiple: true },
    "ek-pub": { type: "string", multiple: true },
    "nitro-tpm": { type: "boolean" },
    "gce-ak": { type: "boolean" },
    "allow-unauthenticated-ak": { type: "boolean" },
    format: { type: "string" },
  });
  const urls = values.url ?? [];
  if (urls.length === 0) throw new UsageError("verify: --url URL is required (repeat it for every replica)");
  if (values.format && values.format !== "json" && values.format !== "table")
    throw new UsageError("--format: json or table");
  if (values.measurement && values.manifest)
    throw new UsageError("--measurement and --manifest are alternatives; give one");
  let measurements: string[];
  if (values.manifest) measurements = await manifestMeasurements(values.manifest, values.vcpus, values["vcpu-type"]);
  else {
    measurements = values.measurement ?? [];
    if (measurements.length === 0)
      throw new UsageError(
        "verify: --measurement HEX or --manifest FILE is required: without an expected measurement any genuine VM would pass (no trust on first use)",
      );
    for (const m of measurements)
      if (!HEX48.test(m)) throw new UsageError(`--measurement: '${m.slice(0, 20)}…' is not 96 hex digits (48 bytes)`);
  }
  const attestation: RuntimeAttestation = {
    snpMeasurements: measurements.map((m) => m.toLowerCase()),
    kds: values.kds ?? "online",
    ...(values["host-data"] !== undefined ? { snpHostData: values["host-data"] } : {}),
    // Without --host-data a real (non-simulated) runtime is refused unless this is said explicitly.
    ...(values["any-instance"] ? { allowAnyInstance: true } : {}),
    ...(values["instance-id"] !== undefined ? { runtimeInstanceId: values["instance-id"].toLowerCase() } : {}),
    ...(values.anchor ? { simulatedAnchors: values.anchor.map(anchorFile) } : {}),
    ...(values.policy ? { policy: readFlagFile("--policy", values.policy).toString("utf8") } : {}),
  };
  const { runtimeExpectation, verifyRuntime, RuntimeAttestationError } =
    await import("../runtime/client/attested-tls.js");
  let expected;
  try {
    expected = runtimeExpectation(attestation, "flags");
  } catch (e) {
    if (e instanceof RuntimeAttestationError)
      throw new UsageError(e.reason.replace(/^flags\.runtimeInstanceId/, "--instance-id").replace(/^flags\./, "--"));
    throw e;
  }
  if (values["amd-cert-dir"]) expected.trust.snp = { ...expected.trust.snp, certDir: values["amd-cert-dir"] };
  const vtpm = await vtpmFlags(values);
  if (vtpm) {
    if (expected.policy.vtpm) throw new UsageError("--boot-policy: --policy has a vtpm section too; give one");
    expected.policy.vtpm = vtpm;
  }

  const results = [];
  for (const url of urls) results.push(await verifyRuntime({ url, expected }));
  const ok = results.every((r) => r.ok);
  if (values.format === "json") {
    io.out(
      JSON.stringify(
        {
          ok,
          runtimes: results.map((r) => ({
            url: r.url,
            ok: r.ok,
            reason: r.reason ?? null,
            spki_sha256: r.spkiSha256 ?? null,
            measurement: r.measurement ?? null,
            instance_id: r.instanceId ?? null,
            simulated: r.simulated,
            checks: r.checks,
          })),
        },
        null,
        2,
      ),
    );
  } else {
    const lines: string[] = [];
    for (const r of results) {
      lines.push(`${r.url}`);
      for (const c of r.checks) lines.push(`  ${c.ok ? "ok  " : "FAIL"} ${c.id}: ${c.detail}`);
      lines.push(
        r.ok
          ? `  VERIFIED${r.simulated ? " (SIMULATED platform: not hardware evidence)" : ""}: measurement ${r.measurement}; TLS key SPKI SHA-256 ${r.spkiSha256}${r.instanceId ? `; instance ${r.instanceId}` : ""}`
          : `  REFUSED: ${r.reason}`,
        "",
      );
    }
    lines.push(
      ok
        ? `all ${results.length} runtime(s) verified`
        : `${results.filter((r) => !r.ok).length} of ${results.length} runtime(s) refused`,
    );
    io.out(lines.join("\n"));
  }
  return ok ? Exit.ok : Exit.rejected;
}
