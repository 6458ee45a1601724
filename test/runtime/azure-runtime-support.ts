// A runtime on a simulated Azure confidential VM, for attested TLS tests: a real software TPM (swtpm) holding an
// RSA attestation key at the HCL's handle 0x81000003 and "booted" with a synthetic measured boot (tpm-fixtures.ts
// buildBootLog: PCRs extended, event log written); a simulated paravisor answering the HCL-report read
// (tpm2_nvread of NV 0x01400001) with a report around a simulated SNP report whose REPORT_DATA is SHA-256 of
// runtime claims carrying that AK, the vm-configuration and the 64 bytes the runtime REALLY wrote into the TPM's NV
// 0x01400002 — as Azure's paravisor does. Everything else goes to the TPM through tpm2-tools unchanged; the runtime
// server is the real one (`attestation "azure"`), its source the real collector (runtime/guest/evidence/azure.ts).
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { SnpSimulator } from "../../runtime/sim/snp.js";
import { HCL_REPORT_NV_INDEX, HCL_USERDATA_NV_INDEX } from "../../runtime/guest/evidence/azure.js";
import { spawnRunner, type CommandRunner } from "../../runtime/guest/exec.js";
import { azureRuntimeSource } from "../../runtime/server/http/azure-evidence.js";
import { parseConfig } from "../../runtime/server/http/config.js";
import { startServer, type RunningServer } from "../../runtime/server/http/server.js";
import type { AttestedListener } from "../../runtime/server/http/attested-tls.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import type { MeasuredBootPolicy } from "../../runtime/attestation/tpm/boot-policy.js";
import { SwTpm } from "../support/swtpm.js";
import { persistHclAk, tpmTool } from "../support/azure-hcl-ak.js";
import { hclReport } from "./attestation/azure-fixtures.js";
import { buildBootLog, type BootSpec } from "./attestation/tpm-fixtures.js";
import { platform } from "./attested-runtime-support.js";

/** The paravisor's launch digest in these tests (on Azure: Microsoft's HCL firmware, the same for every CVM). */
export const PARAVISOR_MEASUREMENT = "a5".repeat(48);
/** The device the runtime's config names; the simulated paravisor maps it to the swtpm. */
export const AZURE_TPM_DEVICE = "/dev/tpmrm0";

export interface AzureVm {
  tpm: SwTpm;
  /** The TPM's PCR values after the synthetic boot (SHA-256, hex). */
  pcrs: Record<number, string>;
  eventLog: string;
  /** The measured-boot policy this boot meets (what images/ predictFromDisk gives for the kit's image). */
  bootPolicy: MeasuredBootPolicy;
  /** tpm2-tools against the swtpm, the paravisor's HCL-report refresh simulated. */
  runner: CommandRunner;
  /** What the paravisor published last (the HCL report bytes). */
  lastHcl?: Buffer;
  stop(): Promise<void>;
}

const pem = (der: Uint8Array) =>
  `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString("base64")}\n-----END CERTIFICATE-----\n`;

export async function bootAzureVm(
  sim: SnpSimulator,
  o: {
    boot?: BootSpec;
    /** A prebuilt boot (e.g. azure-boot-log.ts azureBootLog of a real UKI) instead of `boot`. */
    bootLog?: { log: Buffer; extends: [number, Buffer][] };
    vmConfiguration?: Record<string, unknown>;
    measurement?: string;
  } = {},
): Promise<AzureVm> {
  const tpm = await SwTpm.start();
  const dir = mkdtempSync(path.join(tmpdir(), "bk-azure-rt-"));
  const tool = tpmTool(tpm);
  const ak = persistHclAk(tpm, dir);
  const built = o.bootLog ? undefined : buildBootLog(o.boot ?? {});
  const boot = o.bootLog ?? built!;
  for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
  const eventLog = path.join(dir, "binary_bios_measurements");
  writeFileSync(eventLog, boot.log);
  tool(["tpm2_pcrread", "sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23", "-o", `${dir}/p`]);
  const raw = readFileSync(`${dir}/p`);
  const pcrs: Record<number, string> = {};
  for (let i = 0; i < 24; i++) pcrs[i] = raw.subarray(i * 32, i * 32 + 32).toString("hex");

  const vm: AzureVm = {
    tpm,
    pcrs,
    eventLog,
    bootPolicy: built?.policy ?? {},
    runner: {
      async run(argv, opts) {
        const args = argv.map((a) => (a === `device:${AZURE_TPM_DEVICE}` ? tpm.tcti : a));
        if (args[0] === "tpm2_nvread" && args.at(-1) === HCL_REPORT_NV_INDEX) {
          const written = path.join(dir, "nv-userdata.bin");
          tool(["tpm2_nvread", "-C", "o", "-s", "64", "-o", written, HCL_USERDATA_NV_INDEX]);
          const jwk = ak.export({ format: "jwk" });
          const json = Buffer.from(
            JSON.stringify({
              keys: [{ kid: "HCLAkPub", key_ops: ["sign"], kty: "RSA", e: jwk.e, n: jwk.n }],
              "vm-configuration": o.vmConfiguration ?? {
                "console-enabled": false,
                "secure-boot": true,
                "tpm-enabled": true,
              },
              "user-data": readFileSync(written).toString("hex").toUpperCase(),
            }),
          );
          const reportData = Buffer.concat([createHash("sha256").update(json).digest(), Buffer.alloc(32)]);
          const r = await sim.report({ measurement: o.measurement ?? PARAVISOR_MEASUREMENT, reportData, vmpl: 0 });
          vm.lastHcl = hclReport(r.report, 2, json, 1);
          writeFileSync(args[args.indexOf("-o") + 1], vm.lastHcl);
          return { code: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
        }
        return spawnRunner.run(args, opts);
      },
    },
    stop: async () => {
      await tpm.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return vm;
}

/** The real runtime server with `attestation "azure"`, its collector running over `vm`'s TPM and paravisor. */
export async function startAzureRuntime(
  vm: AzureVm,
  o: { listener?: AttestedListener } = {},
): Promise<{ server: RunningServer; sim: SnpSimulator }> {
  const sim = await platform();
  const cfg = parseConfig(`
    storage "inmem" {}
    listener "tcp" { address = "127.0.0.1:0" }
    attestation "azure" { device = "${AZURE_TPM_DEVICE}" }
  `);
  const server = await startServer(cfg, {
    ...(o.listener ? { attestedListener: o.listener } : {}),
    // The VCEK chain as Azure's IMDS (THIM) would hand it over: the simulated platform's.
    evidenceSource: azureRuntimeSource({
      device: AZURE_TPM_DEVICE,
      runner: vm.runner,
      refreshDelayMs: 1,
      eventLog: vm.eventLog,
      fetchVcekChain: async () => {
        const r = await sim.report({ vmpl: 0 });
        return pem(r.vek) + pem(sim.caCerts.ask) + pem(sim.caCerts.ark);
      },
    }),
  });
  return { server, sim };
}

/** What the Vhsm on Azure registers (components/azure/vhsm-guest.ts), for the simulated platform. */
export function azureExpectation(
  sim: SnpSimulator,
  o: {
    /** The OS by events (what the Vhsm predicts from the runtime disk). */
    measuredBoot?: MeasuredBootPolicy;
    /** The OS by PCR 4 value. */
    pcr4?: string[];
    measurements?: string[];
    policy?: Record<string, unknown>;
  } = {},
): RuntimeAttestation {
  const a = sim.trustAnchor;
  return {
    snpMeasurements: o.measurements ?? [PARAVISOR_MEASUREMENT],
    allowAnyInstance: true,
    policy: JSON.stringify(
      o.policy ?? {
        snp: { allowDebug: false, allowMigrationAgent: false, vmpl: 0 },
        azure: {
          requireSecureBoot: true,
          forbidConsole: true,
          ...(o.pcr4 ? { pcrs: { "4": o.pcr4 } } : {}),
          ...(o.measuredBoot ? { measuredBoot: o.measuredBoot } : {}),
        },
      },
    ),
    simulatedAnchors: [
      {
        product: a.product,
        ark_sha256: a.arkSha256,
        ca_certs: a.caCerts.map((c) => Buffer.from(c).toString("base64")),
      },
    ],
    kds: "off",
  };
}
