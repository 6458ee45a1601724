// Azure measured boot over events (policy azure.measuredBoot, runtime/attestation/azure/boot.ts): the guest's TCG
// event log must replay to the PCRs of the HCL-bound, nonce-bound AK quote, then the same boot policy as AWS/GCE
// (tpm/boot-policy.ts) reads its events — the UKI's Authenticode digest in PCR 4, Secure Boot and the db certificate
// that verified the boot in PCR 7. Evidence is built around the SEV-SNP and TDX simulators with a log laid out as
// Azure's UEFI logs a kit UKI boot (azure-boot-log.ts), the quote over exactly the PCRs that log produces. One thing
// changes per negative; every bit of the log is flipped once; the wire form is fuzzed.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseAzurePolicy, verifyAzure, type AzureEvidence } from "../../../runtime/attestation/azure/index.js";
import { appraise } from "../../../runtime/attestation/appraise.js";
import { parsePolicy, type Policy } from "../../../runtime/attestation/policy.js";
import { parseEventLog } from "../../../runtime/attestation/tpm/index.js";
import { decodeEvidence, encodeEvidence } from "../../../runtime/protocol/evidence.js";
import { WireFormatError } from "../../../runtime/protocol/errors.js";
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import { TdxSimulator } from "../../../runtime/sim/tdx.js";
import { certificateSha256 } from "../../../images/vtpm/secure-boot.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { dbKeyPair } from "../../support/db-key.js";
import { buildAzureSnpEvidence, buildAzureTdxEvidence } from "./azure-fixtures.js";
import { azureBootLog, type AzureBootSpec } from "./azure-boot-log.js";

const ready = requireTool("openssl (test certificates)", haveCommand("openssl", ["version"]));
const dir = mkdtempSync(path.join(tmpdir(), "bk-azure-boot-"));
const cert = (cn: string) => Buffer.from(new X509Certificate(readFileSync(dbKeyPair(dir, cn, 3650).cert)).raw);
const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);
const ids = (v: { checks: { id: string }[] }) => v.checks.map((c) => c.id);
const digest = (s: string) => createHash("sha256").update(s).digest("hex");

const UKI = digest("authenticode: the kit's signed UKI");
const NONCE = Buffer.from("azure-boot-nonce");

describe.runIf(ready)("Azure: measured boot over events (azure.measuredBoot)", () => {
  let snp: SnpSimulator;
  let db: Buffer;
  let other: Buffer;
  let policy: Policy;
  const trust = () => ({ trust: { snp: { simulated: [snp.trustAnchor] } }, tpmNonce: NONCE });

  /** Azure SNP evidence whose quote covers the PCRs `spec`'s boot produces (or `pcrsOf`'s), with `log` sent. */
  async function evidence(
    spec: Partial<AzureBootSpec> = {},
    o: { log?: Buffer | null; pcrsOf?: Partial<AzureBootSpec> } = {},
  ) {
    const boot = azureBootLog({ uki: UKI, dbCert: db, ...spec });
    const quoted = o.pcrsOf ? azureBootLog({ uki: UKI, dbCert: db, ...o.pcrsOf }).pcrs : boot.pcrs;
    return buildAzureSnpEvidence(snp, {
      nonce: NONCE,
      pcrs: quoted,
      ...(o.log === null ? {} : { eventLog: o.log ?? boot.log }),
    });
  }

  beforeAll(async () => {
    snp = await createSnpSimulator();
    db = cert("customer db");
    other = cert("someone else's db");
    policy = parsePolicy({
      azure: {
        requireSecureBoot: true,
        measuredBoot: {
          bootApplications: { allowed: [UKI], required: [UKI] },
          secureBoot: { enabled: true, authorities: [certificateSha256(db)] },
        },
      },
    });
  });

  it("accepted: the log replays to the HCL-bound quote's PCRs and shows the UKI verified by the registered db certificate", async () => {
    const v = await verifyAzure(await evidence(), policy, trust());
    expect(failed(v)).toEqual([]);
    expect(v.accepted).toBe(true);
    for (const id of [
      "vtpm.quote-signature",
      "vtpm.nonce",
      "tpm.event-log",
      "tpm.event-log-replay",
      "boot.separators",
      "boot.applications",
      "boot.secure-boot",
      "boot.secure-boot-authority",
    ])
      expect(ids(v)).toContain(id);
    // The same through the one entry point Nitride uses.
    const a = await appraise(await evidence(), policy, {
      trust: { snp: { simulated: [snp.trustAnchor] } },
      tpmNonce: NONCE,
    } as never);
    expect(failed(a)).toEqual([]);
  });

  it("refused: another UKI (its log and PCRs consistent) → boot.applications", async () => {
    const v = await verifyAzure(await evidence({ uki: digest("another UKI") }), policy, trust());
    expect(failed(v)).toEqual(["boot.applications"]);
  });

  it("refused: booted under another db certificate → boot.secure-boot-authority", async () => {
    const v = await verifyAzure(await evidence({ authority: other }), policy, trust());
    expect(failed(v)).toEqual(["boot.secure-boot-authority"]);
  });

  it("refused: Secure Boot off → boot.secure-boot and boot.secure-boot-authority", async () => {
    const v = await verifyAzure(await evidence({ secureBoot: 0 }), policy, trust());
    expect(failed(v)).toEqual(["boot.secure-boot", "boot.secure-boot-authority"]);
  });

  it("refused: no event log → tpm.event-log (and nothing about the boot is believed)", async () => {
    const v = await verifyAzure(await evidence({}, { log: null }), policy, trust());
    expect(failed(v)).toEqual(["tpm.event-log", "boot.event-log"]);
    expect(v.accepted).toBe(false);
  });

  it("refused: an event log that does not match the quote → tpm.event-log-replay", async () => {
    // The registered boot's log sent beside a quote of another boot (another UKI ran; its PCR 4 is quoted).
    const v = await verifyAzure(await evidence({}, { pcrsOf: { uki: digest("another UKI") } }), policy, trust());
    expect(failed(v)).toEqual(["tpm.event-log-replay", "boot.event-log"]);
    // A log cut short after the UKI's event (the PCR 5 exit-boot-services events dropped).
    const full = azureBootLog({ uki: UKI, dbCert: db });
    const cut = full.log.subarray(0, eventOffset(full.log, parseEventLog(full.log).events.length - 2));
    const c = await verifyAzure(await evidence({}, { log: cut }), policy, trust());
    expect(failed(c)).toContain("tpm.event-log-replay");
    expect(c.accepted).toBe(false);
  });

  it("refused: a quote that did not verify → no boot event is believed", async () => {
    const v = await verifyAzure(await evidence(), policy, { ...trust(), tpmNonce: Buffer.from("another nonce") });
    expect(failed(v)).toEqual(["vtpm.nonce", "boot.event-log"]);
  });

  it("without azure.measuredBoot the log is carried but not read (PCR-value policies as before)", async () => {
    const v = await verifyAzure(
      await evidence({ uki: digest("anything") }),
      parsePolicy({ azure: { requireSecureBoot: true } }),
      trust(),
    );
    expect(failed(v)).toEqual([]);
    expect(ids(v).filter((i) => i.startsWith("boot.") || i.startsWith("tpm."))).toEqual([]);
  });

  it("azure.pcrs and azure.measuredBoot together: both apply", async () => {
    const boot = azureBootLog({ uki: UKI, dbCert: db });
    const both = parsePolicy({
      azure: { ...policy.azure, pcrs: { "4": ["00".repeat(32)] } },
    });
    const v = await verifyAzure(await evidence(), both, trust());
    expect(failed(v)).toEqual(["policy.pcr4"]);
    const ok = parsePolicy({ azure: { ...policy.azure, pcrs: { "4": [boot.pcrs[4].toString("hex")] } } });
    expect(failed(await verifyAzure(await evidence(), ok, trust()))).toEqual([]);
  });

  it("TDX behind the HCL: the same checks", async () => {
    const sim = await TdxSimulator.create();
    const boot = azureBootLog({ uki: UKI, dbCert: db });
    const fx = buildAzureTdxEvidence(sim, { nonce: NONCE, pcrs: boot.pcrs, eventLog: boot.log });
    const o = { trust: { tdx: { simulatedRoots: [sim.rootFingerprint] } }, tpmNonce: NONCE };
    expect(failed(await verifyAzure(fx.evidence, policy, o))).toEqual([]);
    const bad = azureBootLog({ uki: UKI, dbCert: db, authority: other });
    const fb = buildAzureTdxEvidence(sim, { nonce: NONCE, pcrs: bad.pcrs, eventLog: bad.log });
    expect(failed(await verifyAzure(fb.evidence, policy, o))).toEqual(["boot.secure-boot-authority"]);
  });

  it("a vtpm section (AWS/GCE) on Azure evidence is refused, not ignored", async () => {
    const p = parsePolicy({
      ...policy,
      vtpm: { measuredBoot: { bootApplications: { allowed: [UKI], required: [UKI] } } },
    });
    const v = await verifyAzure(await evidence(), p, trust());
    expect(failed(v)).toEqual(["azure.vtpm-policy"]);
  });

  it("policy: azure.measuredBoot is parsed strictly (the shared parser), sha256 only", () => {
    expect(parseAzurePolicy({ measuredBoot: { bootApplications: { allowed: [UKI] } } }).measuredBoot).toEqual({
      bootApplications: { allowed: [UKI] },
    });
    expect(() => parseAzurePolicy({ measuredBoot: { bank: "sha384" } })).toThrow(/azure\.measuredBoot\.bank.*sha256/);
    expect(() => parseAzurePolicy({ measuredBoot: { bootApplications: { allowed: ["xyz"] } } })).toThrow(
      /azure\.measuredBoot\.bootApplications\.allowed\[0\]/,
    );
    expect(() => parseAzurePolicy({ measuredBoot: { secureBoot: { authorities: [] } } })).toThrow(
      /azure\.measuredBoot\.secureBoot\.authorities/,
    );
    expect(() => parseAzurePolicy({ measuredBoot: { whatever: 1 } })).toThrow(/azure\.measuredBoot\.whatever/);
    expect(() => parsePolicy({ azure: { measuredBoot: [] } })).toThrow(/azure\.measuredBoot/);
  });

  it("one-bit flips: every flipped bit of the log is refused unless it leaves every SHA-256 extend as it was", async () => {
    const boot = azureBootLog({ uki: UKI, dbCert: db });
    const base = await evidence();
    const want = measured(boot.log);
    let refused = 0;
    let harmless = 0;
    for (let bit = 0; bit < boot.log.length * 8; bit += 3) {
      const log = Buffer.from(boot.log);
      log[bit >> 3] ^= 1 << (bit & 7);
      const v = await verifyAzure({ ...base, eventLog: log }, policy, trust());
      if (!v.accepted) refused++;
      else {
        // Accepted only where the flip touched data no rule believes: every extend is unchanged.
        expect(measured(log), `bit ${bit}`).toEqual(want);
        harmless++;
      }
    }
    expect(refused).toBeGreaterThan(harmless);
  }, 120_000);

  it("fuzz: a mutated wire event_log decodes strictly or is refused by the verifier, never crashes", async () => {
    const base = await evidence();
    const wire = encodeEvidence(base) as { event_log?: string };
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 40 }), fc.nat(), async (junk, at) => {
        const s = wire.event_log!;
        const i = at % s.length;
        const mutated = { ...wire, event_log: s.slice(0, i) + junk + s.slice(i + junk.length) };
        let e: AzureEvidence;
        try {
          e = decodeEvidence(mutated) as AzureEvidence;
        } catch (err) {
          expect(err).toBeInstanceOf(WireFormatError);
          return;
        }
        const v = await verifyAzure(e, policy, trust());
        if (v.accepted) expect(measured(Buffer.from(e.eventLog!))).toEqual(measured(Buffer.from(base.eventLog!)));
      }),
      { numRuns: 150 },
    );
  }, 120_000);
});

/** Every SHA-256 extend of a log (PCR, digest: what the quote binds), or "unparseable". */
function measured(log: Buffer): string[] | string {
  try {
    return parseEventLog(log).events.map((e) => `${e.pcr}:${Buffer.from(e.digests.sha256 ?? []).toString("hex")}`);
  } catch {
    return "unparseable";
  }
}

/** Byte offset where event `n` (0-based, after the Spec ID header) starts. */
function eventOffset(log: Buffer, n: number): number {
  // TCG_PCR_EVENT header (Spec ID event): pcr, type, sha1 digest, size, data.
  let p = 32 + log.readUInt32LE(28);
  for (let k = 0; k < n; k++) {
    const count = log.readUInt32LE(p + 8);
    let q = p + 12;
    for (let j = 0; j < count; j++) {
      const alg = log.readUInt16LE(q);
      q += 2 + (alg === 0x0004 ? 20 : alg === 0x000b ? 32 : alg === 0x000c ? 48 : 64);
    }
    p = q + 4 + log.readUInt32LE(q);
  }
  return p;
}
