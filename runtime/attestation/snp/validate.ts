// SEV-SNP policy checks on a parsed (and separately verified) report. Every policy field yields one check,
// constrained or not, so a verdict always shows what was and was not required.
import type { Check } from "../types.js";
import { PLATFORM_FEATURES, type SnpPolicy } from "../policy.js";
import {
  decodeTcb,
  formatTcb,
  hwIdOf,
  tcbComponents,
  type SnpProduct,
  type SnpReport,
  type TcbVersion,
} from "./abi.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const short = (h: string) => (h.length > 24 ? `${h.slice(0, 16)}…` : h);

function tcbBelow(actual: TcbVersion, min: Partial<TcbVersion>, product: SnpProduct): string[] {
  return tcbComponents(product)
    .filter((k) => min[k] !== undefined && (actual[k] ?? 0) < (min[k] ?? 0))
    .map((k) => `${k} ${actual[k] ?? 0} < ${min[k]}`);
}

export function validateSnpPolicy(r: SnpReport, product: SnpProduct, signer: "vcek" | "vlek", p: SnpPolicy): Check[] {
  const out: Check[] = [];
  const add = (id: string, ok: boolean, detail: string) => out.push({ id, ok, detail });
  const free = (id: string, what: string) => add(id, true, `${what}: not constrained by the policy`);
  const bits = r.policyBits;

  add(
    "policy.debug",
    !bits.debug || p.allowDebug === true,
    bits.debug
      ? p.allowDebug
        ? "guest was launched with DEBUG=1, allowed by the policy"
        : "guest was launched with DEBUG=1 (hypervisor can read its memory); the policy forbids debug guests"
      : "debug disabled (POLICY.DEBUG=0)",
  );

  add(
    "policy.migration-agent",
    !bits.migrateMa || p.allowMigrationAgent === true,
    bits.migrateMa
      ? p.allowMigrationAgent
        ? "a migration agent may be associated (MIGRATE_MA=1), allowed by the policy"
        : "a migration agent may be associated (MIGRATE_MA=1); the policy forbids it"
      : "no migration agent (MIGRATE_MA=0)",
  );

  if (p.allowSmt === undefined) free("policy.smt", `SMT ${bits.smt ? "allowed" : "not allowed"} by the guest policy`);
  else
    add(
      "policy.smt",
      p.allowSmt || !bits.smt,
      bits.smt && !p.allowSmt
        ? "guest policy allows SMT; the policy requires SMT to be disallowed"
        : `SMT ${bits.smt ? "allowed" : "disallowed"} by the guest policy`,
    );

  if (!p.requireSingleSocket) free("policy.single-socket", `SINGLE_SOCKET=${bits.singleSocket ? 1 : 0}`);
  else
    add(
      "policy.single-socket",
      bits.singleSocket,
      bits.singleSocket
        ? "guest is restricted to a single socket"
        : "SINGLE_SOCKET=0; the policy requires a single-socket guest",
    );

  if (p.vmpl === undefined) free("policy.vmpl", `VMPL ${r.vmpl}`);
  else
    add(
      "policy.vmpl",
      r.vmpl === p.vmpl,
      r.vmpl === p.vmpl ? `VMPL ${r.vmpl}` : `report requested at VMPL ${r.vmpl}; the policy requires VMPL ${p.vmpl}`,
    );

  const m = hex(r.measurement);
  if (!p.measurements) free("policy.measurement", `MEASUREMENT ${m}`);
  else
    add(
      "policy.measurement",
      p.measurements.includes(m),
      p.measurements.includes(m)
        ? `MEASUREMENT ${m} is allowed`
        : `MEASUREMENT ${m} is not among the ${p.measurements.length} allowed value(s)`,
    );

  const reported = decodeTcb(r.reportedTcb, product);
  if (!p.minTcb) free("policy.min-tcb", `REPORTED_TCB ${formatTcb(reported)}`);
  else {
    const low = tcbBelow(reported, p.minTcb, product);
    add(
      "policy.min-tcb",
      low.length === 0,
      low.length === 0
        ? `REPORTED_TCB ${formatTcb(reported)} meets the minimum`
        : `REPORTED_TCB below the minimum: ${low.join(", ")}`,
    );
  }
  const launch = decodeTcb(r.launchTcb, product);
  if (!p.minLaunchTcb) free("policy.min-launch-tcb", `LAUNCH_TCB ${formatTcb(launch)}`);
  else {
    const low = tcbBelow(launch, p.minLaunchTcb, product);
    add(
      "policy.min-launch-tcb",
      low.length === 0,
      low.length === 0
        ? `LAUNCH_TCB ${formatTcb(launch)} meets the minimum`
        : `LAUNCH_TCB below the minimum: ${low.join(", ")}`,
    );
  }

  if (p.minGuestSvn === undefined) free("policy.guest-svn", `GUEST_SVN ${r.guestSvn}`);
  else
    add(
      "policy.guest-svn",
      r.guestSvn >= p.minGuestSvn,
      r.guestSvn >= p.minGuestSvn
        ? `GUEST_SVN ${r.guestSvn} ≥ ${p.minGuestSvn}`
        : `GUEST_SVN ${r.guestSvn} is below the minimum ${p.minGuestSvn}`,
    );

  const hd = hex(r.hostData);
  if (p.hostData === undefined) free("policy.host-data", `HOST_DATA ${short(hd)}`);
  else
    add(
      "policy.host-data",
      hd === p.hostData,
      hd === p.hostData ? "HOST_DATA matches" : `HOST_DATA ${hd} differs from the required ${p.hostData}`,
    );

  const idk = hex(r.idKeyDigest);
  const ak = hex(r.authorKeyDigest);
  if (!p.trustedIdKeyDigests && !p.trustedAuthorKeyDigests) free("policy.id-key", `ID_KEY_DIGEST ${short(idk)}`);
  else {
    const idOk = p.trustedIdKeyDigests?.includes(idk) ?? false;
    const authorOk = r.authorKeyEn && (p.trustedAuthorKeyDigests?.includes(ak) ?? false);
    add(
      "policy.id-key",
      idOk || authorOk,
      idOk
        ? `ID_KEY_DIGEST ${short(idk)} is trusted`
        : authorOk
          ? `AUTHOR_KEY_DIGEST ${short(ak)} is trusted`
          : `neither ID_KEY_DIGEST ${short(idk)} nor ${r.authorKeyEn ? `AUTHOR_KEY_DIGEST ${short(ak)}` : "an author key (AUTHOR_KEY_EN=0)"} is trusted`,
    );
  }

  for (const [id, name, actual, want] of [
    ["policy.family-id", "FAMILY_ID", hex(r.familyId), p.familyId],
    ["policy.image-id", "IMAGE_ID", hex(r.imageId), p.imageId],
  ] as const) {
    if (want === undefined) free(id, `${name} ${actual}`);
    else
      add(
        id,
        actual === want,
        actual === want ? `${name} matches` : `${name} ${actual} differs from the required ${want}`,
      );
  }

  if (!p.allowedChipIds) free("policy.chip-id", "CHIP_ID");
  else {
    const mine = hex(hwIdOf(r.chipId, product));
    const ok = p.allowedChipIds.some((id) => id.slice(0, mine.length) === mine && !/^0+$/.test(mine));
    add(
      "policy.chip-id",
      ok,
      ok
        ? `CHIP_ID ${short(mine)} is allowed`
        : `CHIP_ID ${short(mine)} is not in the allow-list${/^0+$/.test(mine) ? " (it is masked)" : ""}`,
    );
  }

  if (!p.minAbi) free("policy.abi", `guest ABI ${bits.abiMajor}.${bits.abiMinor}`);
  else {
    const ok = bits.abiMajor > p.minAbi.major || (bits.abiMajor === p.minAbi.major && bits.abiMinor >= p.minAbi.minor);
    add(
      "policy.abi",
      ok,
      ok
        ? `guest ABI ${bits.abiMajor}.${bits.abiMinor} meets ${p.minAbi.major}.${p.minAbi.minor}`
        : `guest ABI ${bits.abiMajor}.${bits.abiMinor} is below ${p.minAbi.major}.${p.minAbi.minor}`,
    );
  }

  const fw = r.currentVersion;
  if (!p.minFirmware) free("policy.firmware", `firmware ${fw.major}.${fw.minor} build ${fw.build}`);
  else {
    const w = p.minFirmware;
    const ok =
      fw.major !== w.major
        ? fw.major > w.major
        : fw.minor !== w.minor
          ? fw.minor > w.minor
          : fw.build >= (w.build ?? 0);
    add(
      "policy.firmware",
      ok,
      ok
        ? `firmware ${fw.major}.${fw.minor} build ${fw.build} meets the minimum`
        : `firmware ${fw.major}.${fw.minor} build ${fw.build} is below ${w.major}.${w.minor}${w.build !== undefined ? ` build ${w.build}` : ""}`,
    );
  }

  if (!p.products) free("policy.product", product);
  else
    add(
      "policy.product",
      p.products.includes(product),
      p.products.includes(product)
        ? `${product} is allowed`
        : `${product} is not among the allowed products (${p.products.join(", ")})`,
    );

  const pi = r.platformInfo;
  const has = (bit: number) => ((pi >> BigInt(bit)) & 1n) === 1n;
  if (!p.requirePlatform?.length && p.allowPlatformSmt !== false)
    free("policy.platform", `PLATFORM_INFO 0x${pi.toString(16)}`);
  else {
    const missing = (p.requirePlatform ?? []).filter((f) => !has(PLATFORM_FEATURES[f]));
    const smtBad = p.allowPlatformSmt === false && has(0);
    const problems = [...missing.map((f) => `${f} not enabled`), ...(smtBad ? ["SMT enabled on the host"] : [])];
    add(
      "policy.platform",
      problems.length === 0,
      problems.length === 0
        ? `PLATFORM_INFO 0x${pi.toString(16)} has what the policy requires`
        : `PLATFORM_INFO 0x${pi.toString(16)}: ${problems.join(", ")}`,
    );
  }

  const cv = r.committedVersion;
  if (!p.requireCommittedFirmware)
    free("policy.committed-firmware", `committed firmware ${cv.major}.${cv.minor}.${cv.build}`);
  else {
    const same =
      Buffer.from(r.committedTcb).equals(Buffer.from(r.currentTcb)) &&
      cv.major === fw.major &&
      cv.minor === fw.minor &&
      cv.build === fw.build;
    add(
      "policy.committed-firmware",
      same,
      same
        ? "running firmware is committed (COMMITTED = CURRENT)"
        : `provisional firmware: current ${fw.major}.${fw.minor}.${fw.build} TCB ${formatTcb(decodeTcb(r.currentTcb, product))}, committed ${cv.major}.${cv.minor}.${cv.build} TCB ${formatTcb(decodeTcb(r.committedTcb, product))}`,
    );
  }

  add(
    "policy.signer",
    signer === "vcek" || p.allowVlek !== false,
    signer === "vlek"
      ? p.allowVlek === false
        ? "report is signed by a cloud provider's VLEK; the policy accepts only chip-bound VCEKs"
        : "report is signed by a cloud provider's VLEK"
      : "report is signed by the chip's VCEK",
  );
  return out;
}
