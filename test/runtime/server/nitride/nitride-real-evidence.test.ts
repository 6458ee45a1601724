// Real AMD evidence (Genoa, project-oak test data) through nitride/explain on the real server: the
// dry run accepts it against the matching reference value and names the failing check otherwise.
// Real hardware cannot answer a fresh challenge here, so only explain (no nonce) can use it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { noteIfSharedMissing, sharedPath } from "../../../support/shared.js";
import { startNitrideStack, type NitrideStack } from "./nitride-support.js";

const OAK_MEASUREMENT =
  "c57729018b0a6fb90dc17bb138b0aa35e4401004283ff4a2c24d3739ff3750f52384370e77b7032862a08c440a9bc4dc";

describe.runIf(noteIfSharedMissing("Nitride explain with real SNP evidence"))(
  "Nitride explain with real AMD evidence",
  () => {
    let s: NitrideStack;
    let evidence: Record<string, unknown>;
    beforeAll(async () => {
      s = await startNitrideStack();
      await s.rt.api("PUT", "nitride/config", { amd_cert_dir: sharedPath("evidence/trust/amd"), kds: "off" });
      const dir = sharedPath("evidence/snp/oak-genoa-v5");
      evidence = {
        kind: "snp",
        report: readFileSync(`${dir}/report.bin`).toString("base64"),
        vek: readFileSync(`${dir}/vcek.der`).toString("base64"),
      };
      await s.rt.api("PUT", "nitride/workloads/oak", {
        reference_values: { snp_measurements: [OAK_MEASUREMENT] },
        secrets: { kv: [] },
      });
      await s.rt.api("PUT", "nitride/workloads/oak-wrong", {
        reference_values: { snp_measurements: ["00".repeat(48)] },
        secrets: { kv: [] },
      });
    }, 60_000);
    afterAll(async () => {
      await s?.rt.close();
    });

    it("genuine evidence with its registered measurement: would accept, not simulated, Genoa chain", async () => {
      const r = await s.rt.api("POST", "nitride/explain", { workload_id: "oak", evidence });
      expect(r.status).toBe(200);
      const failed = r.body.data.verdict.checks.filter((c: { ok: boolean }) => !c.ok);
      expect(failed, JSON.stringify(failed)).toEqual([]);
      expect(r.body.data.would_accept).toBe(true);
      expect(r.body.data.verdict.simulated).toBe(false);
      expect(r.body.data.verdict.claims.measurement).toBe(OAK_MEASUREMENT);
    });

    it("the same evidence against another workload's reference value: refused, naming the check", async () => {
      const r = await s.rt.api("POST", "nitride/explain", { workload_id: "oak-wrong", evidence });
      expect(r.body.data.would_accept).toBe(false);
      const failed = r.body.data.verdict.checks.filter((c: { ok: boolean }) => !c.ok).map((c: { id: string }) => c.id);
      expect(failed).toContain("nitride.reference-values");
    });

    it("real evidence cannot pass attest: its REPORT_DATA does not bind a fresh nonce", async () => {
      const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: "oak" }, "");
      const { generateKeyPairSync } = await import("node:crypto");
      const spki = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "der", type: "spki" });
      const r = await s.rt.api(
        "POST",
        "nitride/attest",
        { workload_id: "oak", nonce: ch.body.data.nonce, ephemeral_public_key: spki.toString("base64"), evidence },
        "",
      );
      expect(r.status).toBe(403);
      const failed = r.body.data.verdict.checks.filter((c: { ok: boolean }) => !c.ok).map((c: { id: string }) => c.id);
      expect(failed).toEqual(["policy.report-data"]);
    });
  },
);
