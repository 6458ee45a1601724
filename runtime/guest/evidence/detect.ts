// Chooses the evidence provider: the configured one, or the first available of configfs-tsm
// (kernel ≥ 6.7, SNP and TDX), /dev/sev-guest (older SNP kernels), the Azure vTPM (paravisor).
// The simulator is never auto-detected: a test or the local stack asks for it explicitly.
import type { EvidenceConfig } from "../config.js";
import type { CommandRunner } from "../exec.js";
import { azureProvider } from "./azure.js";
import { configfsTsmProvider } from "./configfs-tsm.js";
import { sevGuestProvider } from "./sev-guest.js";
import { virtioPspProvider } from "./virtio-psp.js";
import { EvidenceError, type EvidenceProvider } from "./types.js";

export interface ProviderDeps {
  runner?: CommandRunner;
  /** Supplies the simulator provider (kept out of the guest bundle's default path). */
  simulator?: () => Promise<EvidenceProvider>;
}

export function candidateProviders(cfg: EvidenceConfig, deps: ProviderDeps = {}): EvidenceProvider[] {
  return [
    configfsTsmProvider({ root: cfg.configfsRoot }),
    sevGuestProvider({ device: cfg.sevGuestDevice, runner: deps.runner }),
    azureProvider({ tpmDevice: cfg.tpmDevice, runner: deps.runner }),
  ];
}

export async function selectProvider(cfg: EvidenceConfig, deps: ProviderDeps = {}): Promise<EvidenceProvider> {
  if (cfg.provider === "simulator") {
    if (!deps.simulator)
      throw new EvidenceError("simulator", "select", "the simulator provider is not available in this build");
    return deps.simulator();
  }
  // The local stack's simulated PSP (outside the guest, over virtio-serial): explicit only, like the simulator.
  if (cfg.provider === "virtio-psp") {
    const p = virtioPspProvider();
    if (!(await p.available()))
      throw new EvidenceError(p.name, "select", "configured provider is not present on this machine");
    return p;
  }
  const all = candidateProviders(cfg, deps);
  if (cfg.provider !== "auto") {
    const p = all.find((x) => x.name === cfg.provider)!;
    if (!(await p.available()))
      throw new EvidenceError(p.name, "select", "configured provider is not present on this machine");
    return p;
  }
  for (const p of all) if (await p.available()) return p;
  throw new EvidenceError(
    "auto",
    "select",
    `no evidence source found (tried ${cfg.configfsRoot}, ${cfg.sevGuestDevice}, Azure vTPM NV index 0x01400001)`,
  );
}
