// Renders the `#cloud-config` user-data that installs and starts the enclaivelet. The output holds
// only public facts (runtime URL, CA fingerprint, workload id, what to provision where); secrets are
// refused by construction (see secret.ts). Used by the Pulumi components and `buckypaper cloud-init`.
import { createHash } from "node:crypto";
import { Document } from "yaml";
import { parseConfig, ConfigError, type EnclaiveletConfig, type ProviderName } from "../config.js";
import { assertNoSecrets, assertNoSecretShapes, assertPublicUrl, type NoSecrets } from "./secret.js";

export type CloudPlatform = "aws" | "azure" | "gcp" | "proxmox" | "qemu";
export const CLOUD_PLATFORMS: readonly CloudPlatform[] = ["aws", "azure", "gcp", "proxmox", "qemu"];
export type Tee = "snp" | "tdx";

/** The strictest platform limit (AWS EC2 user-data: 16 KB) applies to every platform, so a stack
 *  can move between clouds; Azure customData (64 KiB after base64) is checked as well. */
export const USER_DATA_LIMIT_BYTES = 16 * 1024;
export const AZURE_CUSTOM_DATA_LIMIT_BYTES = 64 * 1024;

/** How the agent reaches the guest. */
export type AgentDelivery =
  /** Downloaded at boot (every boot, unless the installed copy already has this hash) and checked
   *  against the SHA-256 pinned here. `insecureTls` skips TLS verification of the download only,
   *  which the hash pin makes safe (use it when the artifact is served by the runtime's private CA). */
  | { kind: "download"; url: string; sha256: string; insecureTls?: boolean }
  /** Baked into the image at `installDir`. */
  | { kind: "preinstalled" }
  /** The kit image runs the agent itself before cloud-init's first user stage (boot-unit.ts): the
   *  agent reads this user-data, takes its config from it and binds its SHA-256 into the evidence.
   *  The user-data then carries only the config (no unit, no runcmd) and keeps the host keys the agent
   *  has certified (ssh_deletekeys off). */
  | { kind: "image" };

export const INSTALL_DIR = "/opt/buckypaper";
export const AGENT_CONFIG_PATH = "/etc/buckypaper/enclaivelet.json";
export const UNIT_NAME = "enclaivelet.service";
export const FETCH_SCRIPT_PATH = "/usr/local/lib/buckypaper/fetch-enclaivelet.sh";
const AGENT_BIN = `${INSTALL_DIR}/enclaivelet/bin/enclaivelet`;

export interface UserDataInput {
  platform: CloudPlatform;
  runtimeUrl: string;
  /** SHA-256 hex of the runtime's TLS CA certificate (optional with runtimeAttestation; then checked in addition). */
  runtimeCaSha256?: string;
  /** Attested TLS: the enclaivelet verifies the runtime (every replica) before it sends evidence. */
  runtimeAttestation?: EnclaiveletConfig["runtimeAttestation"];
  workloadId: string;
  tee?: Tee;
  agent?: AgentDelivery;
  /** Overrides the platform's evidence provider choice. */
  evidenceProvider?: ProviderName;
  /** AWS/GCE: send a vTPM quote + event log with the SNP/TDX evidence (needs tpm2-tools in the image). */
  vtpm?: boolean;
  /** GCE with `vtpm`: quote with the AK from Google's NV template and send Google's AK certificate. */
  vtpmGoogleAk?: boolean;
  jwtRole?: string;
  /** systemd units that need the secrets: the agent runs Before= them and they Require= it. */
  servicesNeedingSecrets?: string[];
  hostname?: string;
  /** Public keys allowed to log in as the image's default user (public facts, part of the measured user-data). */
  sshAuthorizedKeys?: string[];
  /** Public provisioning plan (same shape as the agent config sections). */
  provision?: Pick<Partial<EnclaiveletConfig>, "volume" | "ssh" | "tls" | "files" | "envFiles" | "hook" | "retry">;
  /** Extra public files (e.g. application config without secrets). */
  extraFiles?: { path: string; content: string; permissions?: string; owner?: string }[];
}

export interface RenderedUserData {
  text: string;
  bytes: number;
  /** The agent configuration embedded in the user-data (validated by the agent's own parser). */
  agentConfig: EnclaiveletConfig;
}

export class UserDataError extends Error {
  override name = "UserDataError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** Evidence provider per platform: Azure CVMs only expose the paravisor's HCL report via the vTPM;
 *  TDX quotes come only through configfs-tsm; elsewhere the agent probes. */
export function defaultProvider(platform: CloudPlatform, tee: Tee | undefined): ProviderName {
  if (platform === "azure") return "azure";
  if (tee === "tdx") return "configfs-tsm";
  return "auto";
}

const HOSTNAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const UNIT_RE = /^[A-Za-z0-9@._:-]+\.(service|target|mount|socket)$/;

export function renderUserData(input: NoSecrets<UserDataInput>): RenderedUserData {
  assertNoSecrets(input, "input");
  const i = input as UserDataInput;
  if (!CLOUD_PLATFORMS.includes(i.platform))
    throw new UserDataError("platform", `must be one of ${CLOUD_PLATFORMS.join(", ")}`);
  if (i.tee !== undefined && i.tee !== "snp" && i.tee !== "tdx") throw new UserDataError("tee", "must be snp or tdx");
  if (i.vtpmGoogleAk && (i.platform !== "gcp" || !i.vtpm))
    throw new UserDataError("vtpmGoogleAk", "needs platform gcp and vtpm (Google's AK exists only in a GCE vTPM)");
  const agent: AgentDelivery = i.agent ?? { kind: "preinstalled" };
  if (agent.kind === "download") {
    if (!/^[0-9a-fA-F]{64}$/.test(agent.sha256)) throw new UserDataError("agent.sha256", "must be 64 hex digits");
    if (!/^https?:\/\/[^\s'"\\]+$/.test(agent.url))
      throw new UserDataError("agent.url", "must be an http(s) URL without quotes or spaces");
  }
  if (agent.kind === "download") assertPublicUrl(agent.url, "agent.url");
  assertPublicUrl(i.runtimeUrl, "runtimeUrl");
  if (i.hostname !== undefined) {
    assertNoSecretShapes(i.hostname, "hostname");
    if (!HOSTNAME_RE.test(i.hostname))
      throw new UserDataError("hostname", "must be a host name (letters, digits, '-' and '.', at most 253 characters)");
  }
  const units = i.servicesNeedingSecrets ?? [];
  for (const [n, u] of units.entries())
    if (!UNIT_RE.test(u)) throw new UserDataError(`servicesNeedingSecrets[${n}]`, "is not a systemd unit name");
  // sshd reads HostCertificate at start: order it after the agent and reload it on first boot.
  // (`sshd.service` is the unit on RHEL/AL2023 and an alias of ssh.service on Debian/Ubuntu.)
  const sshUnits = i.provision?.ssh ? ["sshd.service"] : [];

  // The embedded config goes through the agent's own parser, so a typo fails here, not at boot.
  const rawConfig = {
    runtimeUrl: i.runtimeUrl,
    ...(i.runtimeCaSha256 !== undefined ? { runtimeCaSha256: i.runtimeCaSha256 } : {}),
    ...(i.runtimeAttestation ? { runtimeAttestation: i.runtimeAttestation } : {}),
    workloadId: i.workloadId,
    ...(i.jwtRole ? { jwtRole: i.jwtRole } : {}),
    evidence: {
      provider: i.evidenceProvider ?? defaultProvider(i.platform, i.tee),
      // AWS: the NitroTPM attestation document (AWS-signed SHA-384 PCRs) rides along with the quote.
      ...(i.vtpm
        ? {
            vtpm: {
              tcti: "device:/dev/tpmrm0",
              ...(i.platform === "aws" ? { nitroTpm: true } : {}),
              ...(i.vtpmGoogleAk ? { googleAk: true } : {}),
            },
          }
        : {}),
    },
    ...i.provision,
  };
  let agentConfig: EnclaiveletConfig;
  try {
    agentConfig = parseConfig(JSON.parse(JSON.stringify(rawConfig)));
  } catch (e) {
    if (e instanceof ConfigError) throw new UserDataError(e.field, e.message.slice(e.field.length + 2));
    throw e;
  }
  const configText = JSON.stringify(rawConfig, null, 2) + "\n";
  assertNoSecretShapes(configText, "agent config");

  const writeFiles: Record<string, unknown>[] = [
    { path: AGENT_CONFIG_PATH, content: configText, owner: "root:root", permissions: "0600" },
  ];
  if (agent.kind !== "image")
    writeFiles.push(
      {
        path: `/etc/systemd/system/${UNIT_NAME}`,
        content: renderUnit(agent, units, sshUnits),
        owner: "root:root",
        permissions: "0644",
      },
      {
        path: "/etc/systemd/system/enclaivelet-renew.service",
        content: renderRenewService(agent),
        owner: "root:root",
        permissions: "0644",
      },
      {
        path: "/etc/systemd/system/enclaivelet-renew.timer",
        content: RENEW_TIMER,
        owner: "root:root",
        permissions: "0644",
      },
    );
  if (agent.kind === "download") {
    writeFiles.push({
      path: FETCH_SCRIPT_PATH,
      content: renderFetchScript(agent),
      owner: "root:root",
      permissions: "0755",
    });
  }
  for (const [n, f] of (i.extraFiles ?? []).entries()) {
    if (!f.path.startsWith("/")) throw new UserDataError(`extraFiles[${n}].path`, "must be an absolute path");
    if (f.permissions !== undefined && !/^0?[0-7]{3,4}$/.test(f.permissions))
      throw new UserDataError(`extraFiles[${n}].permissions`, 'must be an octal string like "0644"');
    assertNoSecretShapes(f.content, `extraFiles[${n}].content`);
    writeFiles.push({
      path: f.path,
      content: f.content,
      ...(f.owner ? { owner: f.owner } : {}),
      permissions: f.permissions ?? "0644",
    });
  }

  const doc: Record<string, unknown> = {};
  if (i.hostname) doc.hostname = i.hostname;
  for (const [n, k] of (i.sshAuthorizedKeys ?? []).entries())
    if (!/^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]+( [^\n]*)?$/.test(k))
      throw new UserDataError(`sshAuthorizedKeys[${n}]`, "must be one OpenSSH public key line");
  if (i.sshAuthorizedKeys?.length) doc.ssh_authorized_keys = i.sshAuthorizedKeys;
  // Fresh host keys per instance; the attested agent then installs the CA-signed ones. With the image's
  // agent the keys are made and certified before cloud-init runs, so cloud-init must keep them.
  doc.ssh_deletekeys = agent.kind !== "image";
  doc.ssh_genkeytypes = ["ed25519"];
  // A downloaded or preinstalled agent runs from runcmd, after cloud-init installed the packages. The image's
  // agent runs before cloud-init's user stages and quotes with the image's own tpm2-tools: installing them again
  // would come too late and only add an apt run after attestation.
  if ((agentConfig.evidence.provider === "azure" || i.vtpm) && agent.kind !== "image") doc.packages = ["tpm2-tools"];
  // configfs must be mounted for the TSM report interface; bootcmd runs early on every boot.
  doc.bootcmd = [["sh", "-c", "mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config || true"]];
  doc.write_files = writeFiles;
  if (agent.kind !== "image")
    doc.runcmd = [
      ["systemctl", "daemon-reload"],
      // `enable --now` of a oneshot waits for it: on first boot the secrets are in place before the
      // dependent services are (re)started; on later boots systemd orders them by Before=/RequiredBy=.
      ["systemctl", "enable", "--now", UNIT_NAME],
      ["systemctl", "enable", "--now", "enclaivelet-renew.timer"],
      ...units.map((u) => ["systemctl", "try-restart", u]),
      ...sshUnits.map((u) => ["systemctl", "try-reload-or-restart", u]),
    ];

  const body = new Document(doc, { version: "1.1" }).toString({ lineWidth: 0 });
  const text = `#cloud-config\n# Buckypaper enclaivelet for workload ${i.workloadId} (${i.platform}${i.tee ? `, ${i.tee}` : ""}). No secrets here.\n${body}`;
  // The final text, whatever field it came from.
  assertNoSecretShapes(text, "user-data");
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > USER_DATA_LIMIT_BYTES)
    throw new UserDataError(
      "user-data",
      `${bytes} bytes exceeds the ${USER_DATA_LIMIT_BYTES}-byte limit (AWS EC2, the strictest platform)`,
    );
  if (Math.ceil(bytes / 3) * 4 > AZURE_CUSTOM_DATA_LIMIT_BYTES)
    throw new UserDataError("user-data", "exceeds Azure's 64 KiB customData limit");
  return { text, bytes, agentConfig };
}

function renderUnit(agent: AgentDelivery, required: string[], orderedOnly: string[]): string {
  const before = [...required, ...orderedOnly];
  const lines = [
    "[Unit]",
    "Description=Buckypaper enclaivelet: attest to Nitride and provision secrets",
    "Wants=network-online.target",
    "After=network-online.target",
    ...(before.length ? [`Before=${before.join(" ")}`] : []),
    "",
    "[Service]",
    "Type=oneshot",
    "RemainAfterExit=yes",
    ...(agent.kind === "download" ? [`ExecStartPre=${FETCH_SCRIPT_PATH}`] : []),
    `ExecStart=${AGENT_BIN} run --config ${AGENT_CONFIG_PATH}`,
    // Retries with backoff live in the agent; this bounds the whole boot-time attempt.
    "TimeoutStartSec=20min",
    // On the console too: the outcome (never a secret) is visible to whoever watches the boot.
    "StandardOutput=journal+console",
    "StandardError=journal+console",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    ...(required.length ? [`RequiredBy=${required.join(" ")}`] : []),
    "",
  ];
  return lines.join("\n");
}

// Certificates are renewed by re-running the (idempotent) agent: it attests afresh and re-signs only
// what is inside its renewal window.
function renderRenewService(agent: AgentDelivery): string {
  return [
    "[Unit]",
    "Description=Buckypaper enclaivelet: renew certificates before expiry",
    "After=network-online.target enclaivelet.service",
    "",
    "[Service]",
    "Type=oneshot",
    ...(agent.kind === "download" ? [`ExecStartPre=${FETCH_SCRIPT_PATH}`] : []),
    `ExecStart=${AGENT_BIN} run --config ${AGENT_CONFIG_PATH}`,
    "",
  ].join("\n");
}

const RENEW_TIMER = [
  "[Unit]",
  "Description=Daily enclaivelet certificate renewal check",
  "",
  "[Timer]",
  "OnBootSec=1h",
  "OnUnitActiveSec=12h",
  "RandomizedDelaySec=30min",
  "Persistent=true",
  "",
  "[Install]",
  "WantedBy=timers.target",
  "",
].join("\n");

function renderFetchScript(agent: Extract<AgentDelivery, { kind: "download" }>): string {
  const sha = agent.sha256.toLowerCase();
  return `#!/bin/sh
# Installs the enclaivelet artifact (Node runtime + agent) and checks it against the
# SHA-256 pinned in this user-data before anything from it runs.
set -eu
URL='${agent.url}'
SHA='${sha}'
DEST="\${BUCKYPAPER_INSTALL_DIR:-${INSTALL_DIR}}"
if [ -f "$DEST/.artifact-sha256" ] && [ "$(cat "$DEST/.artifact-sha256")" = "$SHA" ]; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsS${agent.insecureTls ? "k" : ""} --retry 10 --retry-delay 3 --retry-all-errors -o "$tmp/a.tgz" "$URL"
echo "$SHA  $tmp/a.tgz" | sha256sum -c --quiet -
rm -rf "$DEST/enclaivelet" && mkdir -p "$DEST"
tar -xzf "$tmp/a.tgz" -C "$DEST"
echo "$SHA" > "$DEST/.artifact-sha256"
`;
}

/** Proxmox VE: user-data goes in a snippet on a storage with content type `snippets`, referenced by
 *  `cicustom`; Proxmox then builds the NoCloud seed itself. */
export function proxmoxSnippet(
  rendered: RenderedUserData,
  storage: string,
  vmName: string,
): { fileName: string; cicustom: string } {
  const fileName = `buckypaper-${vmName.replace(/[^A-Za-z0-9_.-]/g, "-")}-${createHash("sha256").update(rendered.text).digest("hex").slice(0, 12)}.yaml`;
  return { fileName, cicustom: `user=${storage}:snippets/${fileName}` };
}

/** Plain QEMU: NoCloud seed (`cidata` volume) meta-data that goes with the user-data. */
export function noCloudMetaData(instanceId: string, hostname?: string): string {
  return `instance-id: ${JSON.stringify(instanceId)}\n${hostname ? `local-hostname: ${JSON.stringify(hostname)}\n` : ""}`;
}

/** Azure customData is base64 of the user-data. */
export function azureCustomData(rendered: RenderedUserData): string {
  return Buffer.from(rendered.text, "utf8").toString("base64");
}
