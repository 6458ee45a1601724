// The runtime's side of the vTPM half of attested TLS: `attestation { vtpm { … } }` makes GET /v1/sys/attestation
// collect a real TPM quote (swtpm) over SHA-256(REPORT_DATA) and the event log, with REPORT_DATA =
// runtimeTlsVtpmReportData(nonce, own SPKI, AK, instance id) — a domain of its own.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { parseConfig } from "../../../../runtime/server/http/config.js";
import { parseReport } from "../../../../runtime/attestation/snp/abi.js";
import {
  peerUnsealReportData,
  reportDataFor,
  reportDataForVtpm,
  runtimeTlsReportData,
  runtimeTlsVtpmReportData,
} from "../../../../runtime/attestation/binding.js";
import { verifyTpmEvidence } from "../../../../runtime/attestation/tpm/verify.js";
import { decodeEvidence } from "../../../../runtime/protocol/evidence.js";
import type { RunningServer } from "../../../../runtime/server/http/server.js";
import { haveSwtpm } from "../../../support/swtpm.js";
import { freePort } from "../../../support/net.js";
import { initUnseal, insecureGet, startAttestedRuntime } from "../../attested-runtime-support.js";
import { bootTpm, type BootedTpm } from "../../vtpm-runtime-support.js";

const base = 'storage "inmem" {}\nlistener "tcp" { address = "127.0.0.1:0" }\n';

describe("attestation vtpm setting", () => {
  it("parses the block, `vtpm = true` and the JSON form with the device default", () => {
    expect(parseConfig(base + 'attestation "sev-guest" {\n vtpm {}\n }').attestation).toEqual({
      type: "sev-guest",
      device: "/dev/sev-guest",
      vtpm: { tcti: "device:/dev/tpmrm0" },
    });
    expect(parseConfig(base + 'attestation "configfs-tsm" { vtpm = true }').attestation?.vtpm).toEqual({
      tcti: "device:/dev/tpmrm0",
    });
    expect(
      parseConfig(base + 'attestation "sev-guest" {\n vtpm {\n device = "/dev/tpm0"\n nitro_tpm = true\n }\n }')
        .attestation?.vtpm,
    ).toEqual({ tcti: "device:/dev/tpm0", nitroTpm: true });
    const json = parseConfig(
      JSON.stringify({
        storage: { inmem: {} },
        listener: { tcp: { address: "127.0.0.1:0" } },
        attestation: { "sev-guest": { vtpm: { google_ak: true, event_log: "/x/log" } } },
      }),
    );
    expect(json.attestation?.vtpm).toEqual({ tcti: "device:/dev/tpmrm0", eventLog: "/x/log", googleAk: true });
    expect(parseConfig(base + 'attestation "sev-guest" {}').attestation?.vtpm).toBeUndefined();
  });

  it("names unknown or contradictory settings", () => {
    const bad: [string, RegExp][] = [
      ['vtpm {\n dev = "/x"\n }', /attestation.sev-guest.vtpm: unknown setting 'dev' \(device, tcti, event_log/],
      ['vtpm {\n device = "/a"\n tcti = "device:/b"\n }', /vtpm: give device or tcti, not both/],
      ["vtpm {\n nitro_tpm = true\n google_ak = true\n }", /nitro_tpm \(AWS\) and google_ak \(GCE\)/],
      ['vtpm {\n nitro_tpm = "yes"\n }', /vtpm.nitro_tpm: must be true or false/],
      ['vtpm = "on"', /vtpm: must be a block, an object or true/],
      ["vtpm {}\n vtpm {}", /at most one vtpm setting/],
      ["tpm {}", /attestation.sev-guest: unknown block 'tpm' \(vtpm\)/],
      ['vtpm {\n tcti = "/dev/tpm0"\n }', /vtpm.tcti: expected a tpm2-tools TCTI/],
    ];
    for (const [inner, want] of bad)
      expect(() => parseConfig(base + `attestation "sev-guest" {\n ${inner}\n }`), inner).toThrow(want);
  });
});

describe("runtime vTPM REPORT_DATA binding", () => {
  it("is its own domain: never equal to the plain runtime, workload or peer bindings over the same inputs", () => {
    const nonce = randomBytes(32);
    const spki = randomBytes(32);
    const ak = randomBytes(32);
    const id = randomBytes(32);
    const v = runtimeTlsVtpmReportData(nonce, spki, ak, id);
    expect(v).toHaveLength(64);
    for (const other of [
      runtimeTlsReportData(nonce, spki, id),
      runtimeTlsReportData(nonce, spki),
      runtimeTlsVtpmReportData(nonce, spki, ak),
      runtimeTlsVtpmReportData(nonce, spki, randomBytes(32), id),
      reportDataFor(nonce, spki),
      reportDataForVtpm(nonce, spki, ak),
      peerUnsealReportData(nonce, spki),
    ])
      expect(v.equals(other)).toBe(false);
    expect(() => runtimeTlsVtpmReportData(nonce, spki, randomBytes(31))).toThrow(/akSha256 must be 32 bytes/);
    expect(() => runtimeTlsVtpmReportData(randomBytes(8), spki, ak)).toThrow(/nonce must be 16..64 bytes/);
  });
});

describe.runIf(haveSwtpm())("GET /v1/sys/attestation with a vTPM", () => {
  let tpm: BootedTpm;
  let doomed: BootedTpm;
  let server: RunningServer;
  let broken: RunningServer;

  beforeAll(async () => {
    tpm = await bootTpm();
    ({ server } = await startAttestedRuntime({ attestationBody: tpm.stanza }));
    // A vTPM that goes away after the start: the answer is a 503 naming it, never evidence without its half.
    doomed = await bootTpm();
    ({ server: broken } = await startAttestedRuntime({ attestationBody: doomed.stanza }));
    await doomed.stop();
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await broken?.close();
    await tpm?.stop();
  });

  async function attest(nonce: Buffer) {
    const r = await insecureGet(server.url, `/v1/sys/attestation?nonce=${nonce.toString("hex")}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const d = r.body.data;
    const ev = decodeEvidence(d.evidence, "evidence");
    if (ev.kind !== "snp" || !ev.vtpm) throw new Error("expected snp evidence with a vTPM part");
    return { d, ev, vtpm: ev.vtpm, reportData: Buffer.from(parseReport(ev.report).reportData) };
  }

  it("binds nonce, own SPKI and the quoting AK into REPORT_DATA; the quote is over SHA-256(REPORT_DATA)", async () => {
    const nonce = randomBytes(32);
    const { d, vtpm, reportData } = await attest(nonce);
    expect(d.binding).toBe("buckypaper-runtime-tls-vtpm-v1");
    expect(d.spki_sha256).toBe(server.attestedSpkiSha256);
    expect(d.instance_id).toBeNull();
    const akDigest = createHash("sha256").update(vtpm.akPublic).digest();
    expect(d.ak_sha256).toBe(akDigest.toString("hex"));
    expect(d.ak_sha256).toBe(tpm.akSha256);
    const want = runtimeTlsVtpmReportData(nonce, Buffer.from(server.attestedSpkiSha256!, "hex"), akDigest);
    expect(reportData.equals(want)).toBe(true);
    expect(d.report_data).toBe(want.toString("hex"));
    const t = verifyTpmEvidence(vtpm, { nonce: createHash("sha256").update(want).digest() });
    expect(t.checks.filter((c) => !c.ok)).toEqual([]);
    expect(t.checks.map((c) => c.id)).toEqual(
      expect.arrayContaining(["tpm.quote-signature", "tpm.nonce", "tpm.pcr-digest", "tpm.event-log-replay"]),
    );
  }, 60_000);

  it("binds the instance id once unsealed, and the quote follows REPORT_DATA", async () => {
    await initUnseal(server);
    const nonce = randomBytes(16);
    const { d, vtpm, reportData } = await attest(nonce);
    expect(d.instance_id).toMatch(/^[0-9a-f]{64}$/);
    const want = runtimeTlsVtpmReportData(
      nonce,
      Buffer.from(server.attestedSpkiSha256!, "hex"),
      Buffer.from(d.ak_sha256, "hex"),
      Buffer.from(d.instance_id, "hex"),
    );
    expect(reportData.equals(want)).toBe(true);
    const t = verifyTpmEvidence(vtpm, { nonce: createHash("sha256").update(want).digest() });
    expect(t.checks.find((c) => c.id === "tpm.nonce")?.ok).toBe(true);
    // Another REPORT_DATA's digest does not pass as this quote's qualifying data.
    const stale = verifyTpmEvidence(vtpm, { nonce: createHash("sha256").update(randomBytes(64)).digest() });
    expect(stale.checks.find((c) => c.id === "tpm.nonce")?.ok).toBe(false);
  }, 60_000);

  it("concurrent requests each get a quote over their own REPORT_DATA", async () => {
    const nonces = [randomBytes(32), randomBytes(32), randomBytes(32)];
    const answers = await Promise.all(nonces.map((n) => attest(n)));
    for (const { vtpm, reportData } of answers) {
      const t = verifyTpmEvidence(vtpm, { nonce: createHash("sha256").update(reportData).digest() });
      expect(t.checks.filter((c) => !c.ok)).toEqual([]);
    }
  }, 90_000);

  it("a runtime whose vTPM cannot be reached does not start, naming it", async () => {
    const port = await freePort();
    await expect(
      startAttestedRuntime({ attestationBody: `vtpm {\n tcti = "swtpm:host=127.0.0.1,port=${port}"\n }` }),
    ).rejects.toThrow(
      new RegExp(`attestation\\.vtpm: no attestation key from vtpm \\(swtpm:host=127\\.0\\.0\\.1,port=${port}\\)`),
    );
  }, 60_000);

  it("a vTPM lost after the start answers 503 naming it, not evidence without the vTPM half", async () => {
    const r = await insecureGet(broken.url, `/v1/sys/attestation?nonce=${"11".repeat(32)}`);
    expect(r.status).toBe(503);
    expect(r.body.errors[0]).toMatch(/evidence source vtpm \(swtpm:host=127\.0\.0\.1/);
    expect(r.body.data).toBeUndefined();
  }, 60_000);
});
