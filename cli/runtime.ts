// `buckypaper runtime`: run and operate the bundled vHSM runtime, with Vault's lifecycle:
//   runtime server --config FILE          start (sealed until unsealed)
//   runtime dev [--listen H:P] [--tls]    in-memory, unsealed, prints the root token
//   runtime init [--key-shares N] [--key-threshold T] [--recovery-keys F1,F2,…] [--root-token-key F] [--peer-threshold K]
//                                         shares (and root token) encrypted to operator keys, or in clear to a terminal once
//   runtime unseal KEY                    (repeat until the threshold is reached)
//   runtime unseal --share JWE --recovery-key FILE   a share encrypted to this operator's key
//   runtime recovery-key --out FILE       a new operator key pair: private JWK to FILE (0600), public JWK printed
//   runtime generate-root --init | --nonce N --share JWE --recovery-key FILE | --decode E --otp O
//                                         a new root token from a quorum of shares (Vault's sys/generate-root)
//   runtime rekey --init [--key-shares N] [--key-threshold T] [--verify] | --nonce N --share JWE --recovery-key FILE
//                 [--recovery-keys F1,…]  new unseal key shares from a quorum of the current ones (Vault's sys/rekey)
//   runtime rekey --verify (--status | --cancel | --nonce V (KEY | --share JWE --recovery-key FILE))
//                                         the new shares' holders confirm them (Vault's sys/rekey/verify)
//   runtime root-token --jwe JWE --recovery-key FILE   open a root token encrypted by init --root-token-key
//   runtime status
//   runtime verify --url URL --measurement HEX   attested TLS: check the runtime before trusting it
// Client commands take --address (or BUCKYPAPER_ADDR / VAULT_ADDR), and for HTTPS --ca-cert FILE,
// --ca-fingerprint SHA256 (pin) or --tls-skip-verify.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseFlags, readFlagFile } from "./args.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import { VERIFY_USAGE } from "./runtime-verify.js";

const CLIENT_FLAGS = `client flags: --address URL (default $BUCKYPAPER_ADDR, $VAULT_ADDR, https://127.0.0.1:8200)
              --ca-cert FILE | --ca-fingerprint SHA256 | --tls-skip-verify`;

/** One usage text per subcommand, so `runtime <sub> --help` answers (not "Unknown option"). */
const SUB_USAGE: Record<string, string> = {
  server: `server --config FILE               run the runtime from an HCL/JSON config (starts sealed)`,
  dev: `dev [--listen 127.0.0.1:8200] [--tls] [--root-token-id ID]
                                     in-memory runtime, unsealed, KV v2 at secret/ (not for production)`,
  init: `init [--key-shares 5] [--key-threshold 3] [--recovery-keys PUB1,PUB2,…] [--root-token-key PUB]
       [--peer-threshold K] [--format json]
                                     each share encrypted to one operator's public JWK (runtime recovery-key),
                                     the root token to PUB; what stays in clear is printed only to a terminal
                                     (--insecure-print-to-pipe: also to a pipe or file, for throwaway runtimes);
                                     --peer-threshold K: a replica set's sealed replica is unsealed by K attested
                                     peers (their shares stay in the barrier; config peer_unseal)`,
  unseal: `unseal KEY | unseal --share JWE|FILE --recovery-key FILE | unseal --reset`,
  "generate-root": `generate-root --init | --status | --cancel | --nonce N (KEY | --share JWE --recovery-key FILE)
              | --decode ENCODED --otp OTP   a new root token from a quorum of shares (Vault's sys/generate-root)`,
  rekey: `rekey --init [--key-shares 5] [--key-threshold 3] [--verify] | --status | --cancel --nonce N
        | --nonce N (KEY | --share JWE --recovery-key FILE) [--recovery-keys PUB1,PUB2,…]
        | --verify (--status | --cancel | --nonce V (KEY | --share JWE --recovery-key FILE))
                                     new unseal key shares from a quorum of the current ones (Vault's sys/rekey);
                                     the holder giving the last share gets the new shares: each encrypted to one
                                     operator's public JWK (--recovery-keys), or in clear only to a terminal.
                                     --init --verify: the new shares take effect only once a threshold of them is
                                     given back with --verify --nonce V (Vault's sys/rekey/verify); until then the
                                     new key is only in the runtime's memory (a restart or seal discards it)`,
  "root-token": `root-token --jwe JWE|FILE --recovery-key FILE   open a root token encrypted by init --root-token-key`,
  "recovery-key": `recovery-key --out FILE          new operator recovery key: private JWK to FILE (0600),
                                     public JWK on stdout (give it to Vhsm recoveryKeys)`,
  status: `status [--format json]             exit 0 unsealed, 1 sealed or not initialized`,
  verify: VERIFY_USAGE,
};
const CLIENT_SUBS = new Set(["init", "unseal", "status", "generate-root", "rekey"]);

const USAGE = `usage: buckypaper runtime <server|dev|init|unseal|generate-root|rekey|root-token|recovery-key|status|verify> [flags]

${Object.values(SUB_USAGE)
  .map((u) => `  ${u}`)
  .join("\n")}

${CLIENT_FLAGS}`;

function subUsage(sub: string): string {
  return `usage: buckypaper runtime ${SUB_USAGE[sub]}${CLIENT_SUBS.has(sub) ? `\n\n${CLIENT_FLAGS}` : ""}`;
}

const clientFlags = {
  address: { type: "string" },
  "ca-cert": { type: "string" },
  "ca-fingerprint": { type: "string" },
  "tls-skip-verify": { type: "boolean" },
  format: { type: "string" },
} as const;

type ClientValues = {
  address?: string;
  "ca-cert"?: string;
  "ca-fingerprint"?: string;
  "tls-skip-verify"?: boolean;
  format?: string;
};

async function client(v: ClientValues) {
  const { runtimeRequest } = await import("../runtime/client/request.js");
  const address = v.address ?? process.env.BUCKYPAPER_ADDR ?? process.env.VAULT_ADDR ?? "https://127.0.0.1:8200";
  try {
    new URL(address);
  } catch {
    throw new UsageError(`--address: '${address}' is not a URL`);
  }
  const caPem = v["ca-cert"] ? readFlagFile("--ca-cert", v["ca-cert"]).toString("utf8") : undefined;
  if (v.format && v.format !== "json" && v.format !== "table") throw new UsageError("--format: json or table");
  return (method: string, p: string, body?: unknown) =>
    runtimeRequest(address, method, p, body, {
      caPem,
      caFingerprint: v["ca-fingerprint"],
      insecure: v["tls-skip-verify"],
    });
}

function statusLines(s: Record<string, unknown>): string {
  const rows: Array<[string, unknown]> = [
    ["Seal Type", s.type],
    ["Initialized", s.initialized],
    ["Sealed", s.sealed],
    ["Total Shares", s.n],
    ["Threshold", s.t],
  ];
  if (s.sealed) rows.push(["Unseal Progress", `${s.progress}/${s.t}`]);
  rows.push(["Version", s.version], ["Storage Type", s.storage_type]);
  return rows.map(([k, v]) => `${k.padEnd(16)} ${String(v)}`).join("\n");
}

/**
 * The key share a command was given: KEY as an argument, or --share JWE --recovery-key FILE (opened here), the two
 * flags only together. Undefined when neither was given.
 */
async function shareFromFlags(
  command: string,
  positional: string | undefined,
  values: { share?: string; "recovery-key"?: string },
): Promise<string | undefined> {
  if (values.share === undefined && values["recovery-key"] === undefined) return positional;
  if (!values.share || !values["recovery-key"])
    throw new UsageError(
      `${command}: --share and --recovery-key go together (an encrypted share and your private JWK)`,
    );
  return openShare(values.share, values["recovery-key"]);
}

/** An operator's share: the JWE (or its file) opened with the operator's private JWK file. */
async function openShare(share: string, recoveryKey: string): Promise<string> {
  const { decryptShare } = await import("../runtime/client/recovery-share.js");
  const { readPrivateFile } = await import("../runtime/client/deployer.js");
  const jwe = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*){4}$/.test(share.trim())
    ? share
    : readFlagFile("--share", share).toString("utf8");
  let jwk;
  try {
    jwk = JSON.parse(readPrivateFile(recoveryKey, "--recovery-key"));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  try {
    return (await decryptShare(jwe, jwk)).key;
  } catch (e) {
    throw new UsageError(`--share: ${(e as Error).message}`);
  }
}

function failIfError(r: { status: number; body: { errors?: string[] } | undefined }, io: CliIo): boolean {
  if (r.status < 400) return false;
  io.err(`Error (${r.status}): ${(r.body?.errors ?? []).join("; ") || "request failed"}`);
  return true;
}

/** One line for a listener that cannot bind: which address, why, and what to do. */
function listenFailure(err: NodeJS.ErrnoException, addr: string, fix: string): string {
  if (err.code === "EADDRINUSE")
    return `listener address ${addr} is already in use (another runtime or the local stack?); stop it or choose another with ${fix}`;
  if (err.code === "EACCES") return `not allowed to listen on ${addr}; choose a port above 1023 with ${fix}`;
  return `cannot listen on ${addr} (${err.code}): not an address of this machine; choose another with ${fix}`;
}

/** A start-up failure as one line (no stack trace); BUCKYPAPER_DEBUG=1 keeps the stack. */
function startFailure(e: unknown, addr: string, fix: string): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === "EADDRINUSE" || err.code === "EACCES" || err.code === "EADDRNOTAVAIL")
    return listenFailure(err, addr, fix);
  return `cannot start: ${err.message ?? String(e)}`;
}

async function waitForSignal(close: () => Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  await close();
}

const stderrLogger = (io: CliIo) => ({
  info: (m: string) => io.err(`[info] ${m}`),
  warn: (m: string) => io.err(`[warn] ${m}`),
  error: (m: string) => io.err(`[error] ${m}`),
});

/**
 * `attestation "simulated"`: this entry point (not the server, which never carries simulator code) loads the
 * simulated platform and signs with the measurement the config names — honest only as a stand-in: the process
 * states its own measurement, and only verifiers that list the platform's anchor accept it (marked simulated).
 */
async function simulatedEvidence(cfg: import("../runtime/server/http/config.js").RuntimeConfig) {
  const a = cfg.attestation;
  if (a?.type !== "simulated") return {};
  if (!a.platformDir || !a.measurement)
    throw new UsageError(
      'attestation "simulated": platform_dir (from `buckypaper simulate platform`) and measurement are required',
    );
  const { loadPlatform } = await import("../runtime/sim/localvm/platform.js");
  const { simulatorProvider } = await import("../runtime/sim/localvm/evidence.js");
  const platform = await loadPlatform(a.platformDir);
  return {
    evidenceSource: simulatorProvider(platform, { measurement: a.measurement }),
    // Peer unseal: replicas on the same simulated platform trust each other's evidence (and only that platform's).
    peerTrust: { snp: { simulated: [platform.trustAnchor] } },
  };
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === "--help" || sub === "-h") {
    io.out(USAGE);
    return sub ? Exit.ok : Exit.usage;
  }
  if (SUB_USAGE[sub] && rest.some((a) => a === "--help" || a === "-h")) {
    io.out(subUsage(sub));
    return Exit.ok;
  }

  if (sub === "server") {
    const { values } = parseFlags(rest, { config: { type: "string" } });
    if (!values.config) throw new UsageError("server: --config FILE is required");
    const { parseConfig, ConfigError } = await import("../runtime/server/http/config.js");
    const text = readFlagFile("--config", values.config).toString("utf8");
    let cfg;
    try {
      cfg = parseConfig(text, path.dirname(path.resolve(values.config)));
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message);
      throw e;
    }
    let srv: {
      url: string;
      attestedSpkiSha256?: string;
      bootstrapFingerprint?: string;
      bootstrapCaFile?: string;
      initialized: () => Promise<boolean>;
      close: () => Promise<void>;
    };
    try {
      if (cfg.workers > 1) {
        const { runCluster } = await import("../runtime/server/http/cluster.js");
        const c = await runCluster(cfg, stderrLogger(io));
        srv = { ...c, initialized: async () => c.initialized };
      } else {
        const { startServer } = await import("../runtime/server/http/server.js");
        const s = await startServer(cfg, { logger: stderrLogger(io), ...(await simulatedEvidence(cfg)) });
        srv = {
          url: s.url,
          attestedSpkiSha256: s.attestedSpkiSha256,
          bootstrapFingerprint: s.bootstrapFingerprint,
          bootstrapCaFile: s.bootstrapCaFile,
          initialized: () => s.core.initialized(),
          close: s.close,
        };
      }
    } catch (e) {
      // Storage that cannot be opened (corrupt file, unreachable database) or a taken port: say
      // which, without a stack trace and without echoing connection strings (they may hold passwords).
      const err = e as NodeJS.ErrnoException;
      const what =
        err.name === "StorageCorruptionError"
          ? err.message
          : err.code === "EADDRINUSE" || err.code === "EACCES" || err.code === "EADDRNOTAVAIL"
            ? listenFailure(err, `${cfg.listener.host}:${cfg.listener.port}`, "the listener's address in the config")
            : err.code === "ECONNREFUSED" ||
                err.code === "ENOTFOUND" ||
                /password authentication|database .* does not exist/.test(err.message)
              ? `cannot open ${cfg.storage.type} storage: ${err.code ?? err.message}`
              : `cannot start: ${err.message}`;
      io.err(`buckypaper runtime server: ${what}`);
      return Exit.rejected;
    }
    const initialized = await srv.initialized();
    const workers = cfg.workers > 1 ? `; ${cfg.workers} workers` : "";
    io.out(
      `Buckypaper runtime listening on ${srv.url} (storage: ${cfg.storage.type}; ${initialized ? "initialized, sealed" : "not initialized"}${workers})`,
    );
    if (srv.attestedSpkiSha256)
      io.out(
        `Attested TLS: listener key in memory, SPKI SHA-256 ${srv.attestedSpkiSha256}; clients verify it with 'buckypaper runtime verify --url ${srv.url} --measurement …'`,
      );
    if (srv.bootstrapFingerprint)
      io.out(`Bootstrap TLS certificate SHA-256 (pin it for 'runtime init'): ${srv.bootstrapFingerprint}`);
    if (srv.bootstrapCaFile)
      io.out(`Bootstrap CA certificate (vault CLI: VAULT_CACERT=${srv.bootstrapCaFile} vault operator init)`);
    await waitForSignal(srv.close);
    return Exit.ok;
  }

  if (sub === "dev") {
    const { values } = parseFlags(rest, {
      listen: { type: "string" },
      tls: { type: "boolean" },
      "root-token-id": { type: "string" },
    });
    const { parseAddress, ConfigError } = await import("../runtime/server/http/config.js");
    let hp;
    try {
      hp = parseAddress(values.listen ?? "127.0.0.1:8200", "--listen");
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message);
      throw e;
    }
    const { startDevRuntime } = await import("../runtime/server/http/dev.js");
    let rt;
    try {
      rt = await startDevRuntime({
        host: hp.host,
        port: hp.port,
        tls: values.tls,
        logger: stderrLogger(io),
        rootTokenId: values["root-token-id"],
      });
    } catch (e) {
      io.err(`buckypaper runtime dev: ${startFailure(e, `${hp.host}:${hp.port}`, "--listen")}`);
      return Exit.rejected;
    }
    io.out(
      [
        "WARNING! dev mode is enabled: storage is in memory, the runtime starts unsealed with one key share.",
        "",
        `Api Address: ${rt.url}`,
        `Unseal Key: ${Buffer.from(rt.unsealKey, "hex").toString("base64")}`,
        `Root Token: ${rt.rootToken}`,
        ...(rt.caPem ? [`Runtime CA SHA-256: ${rt.caFingerprint}`, "", rt.caPem.trim()] : []),
        "",
        `export VAULT_ADDR='${rt.url}'`,
      ].join("\n"),
    );
    await waitForSignal(rt.close);
    return Exit.ok;
  }

  if (sub === "init") {
    const { values } = parseFlags(rest, {
      ...clientFlags,
      "key-shares": { type: "string" },
      "key-threshold": { type: "string" },
      "recovery-keys": { type: "string" },
      "root-token-key": { type: "string" },
      "peer-threshold": { type: "string" },
      "insecure-print-to-pipe": { type: "boolean" },
    });
    const n = Number(values["key-shares"] ?? 5),
      t = Number(values["key-threshold"] ?? 3);
    if (!Number.isInteger(n) || n < 1 || n > 255) throw new UsageError("--key-shares: an integer 1..255");
    if (!Number.isInteger(t) || t < 1 || t > n) throw new UsageError("--key-threshold: an integer 1..key-shares");
    const peerThreshold = values["peer-threshold"] === undefined ? undefined : Number(values["peer-threshold"]);
    if (peerThreshold !== undefined && (!Number.isInteger(peerThreshold) || peerThreshold < 1 || peerThreshold > 255))
      throw new UsageError("--peer-threshold: an integer 1..255 (attested replicas needed to unseal another)");
    // Everything is checked before sys/init: a refusal afterwards would lose the only copy of the shares.
    const { parseRecoveryPublicKey, encryptShare, encryptRootToken } =
      await import("../runtime/client/recovery-share.js");
    const publicKey = (flag: string, file: string) => {
      try {
        return parseRecoveryPublicKey(readFlagFile(flag, file).toString("utf8"), `${flag} ${file}`);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    };
    const shareKeys = values["recovery-keys"]
      ?.split(",")
      .map((f) => f.trim())
      .filter(Boolean)
      .map((f) => publicKey("--recovery-keys", f));
    if (shareKeys && shareKeys.length !== n)
      throw new UsageError(`--recovery-keys: ${shareKeys.length} keys for ${n} key shares (one key per share)`);
    const rootKey = values["root-token-key"] ? publicKey("--root-token-key", values["root-token-key"]) : undefined;
    const clear = [...(shareKeys ? [] : ["the unseal key shares"]), ...(rootKey ? [] : ["the root token"])];
    if (clear.length && !io.isTerminal?.() && !values["insecure-print-to-pipe"])
      throw new UsageError(
        `init: standard output is not a terminal, and ${clear.join(" and ")} would be written there in clear ` +
          `(into a file, a pipe or a CI log). Encrypt them to operator keys (--recovery-keys, --root-token-key; ` +
          `'buckypaper runtime recovery-key' makes a key pair), run init in a terminal, or pass ` +
          `--insecure-print-to-pipe for a throwaway runtime. Nothing was initialized.`,
      );
    const call = await client(values);
    const r = await call("PUT", "sys/init", {
      secret_shares: n,
      secret_threshold: t,
      ...(peerThreshold !== undefined ? { peer_threshold: peerThreshold } : {}),
    });
    if (failIfError(r, io)) return Exit.rejected;
    const b64 = r.body.keys_base64 as string[];
    const jwes = shareKeys
      ? await Promise.all(
          b64.map((key, i) => encryptShare({ v: 1, index: i + 1, shares: n, threshold: t, key }, shareKeys[i])),
        )
      : undefined;
    const rootJwe = rootKey ? await encryptRootToken(String(r.body.root_token), rootKey) : undefined;
    if (clear.length)
      io.err(
        `WARNING! ${clear.join(" and ")} ${clear.length > 1 ? "are" : "is"} printed below in clear, this once: the ` +
          `runtime keeps no copy. Give each share to a different operator and store none of them in a file, ` +
          `a ticket or Pulumi state; revoke the root token once set up ('sys/generate-root' mints a new one ` +
          `from a quorum of shares).`,
      );
    if (values.format === "json") {
      io.out(
        JSON.stringify(
          {
            ...(jwes ? { unseal_keys_jwe: jwes } : { unseal_keys_b64: b64, unseal_keys_hex: r.body.keys }),
            unseal_shares: n,
            unseal_threshold: t,
            ...(peerThreshold !== undefined ? { peer_threshold: peerThreshold } : {}),
            ...(rootJwe ? { root_token_jwe: rootJwe } : { root_token: r.body.root_token }),
            runtime_ca_sha256: r.body.runtime_ca_sha256 ?? null,
            runtime_ca_pem: r.body.runtime_ca_pem ?? null,
          },
          null,
          2,
        ),
      );
      return Exit.ok;
    }
    const lines = (jwes ?? b64).map((k, i) => `Unseal Key ${i + 1}${jwes ? " (encrypted)" : ""}: ${k}`);
    lines.push(
      "",
      rootJwe ? `Initial Root Token (encrypted): ${rootJwe}` : `Initial Root Token: ${r.body.root_token}`,
      "",
    );
    if (r.body.runtime_ca_sha256)
      lines.push(
        `Runtime CA SHA-256: ${r.body.runtime_ca_sha256}`,
        "(guests pin this fingerprint; the CA certificate follows)",
        "",
        String(r.body.runtime_ca_pem).trim(),
        "",
      );
    lines.push(
      `The runtime is initialized with ${n} key shares and a key threshold of ${t}. It is sealed: unseal it with ${t} of the keys (${jwes ? "'buckypaper runtime unseal --share JWE --recovery-key PRIVATE_JWK'" : "'buckypaper runtime unseal KEY'"}).`,
    );
    if (rootJwe)
      lines.push("The root token opens with 'buckypaper runtime root-token --jwe JWE --recovery-key PRIVATE_JWK'.");
    io.out(lines.join("\n"));
    return Exit.ok;
  }

  if (sub === "generate-root") {
    const { values, positionals } = parseFlags(
      rest,
      {
        ...clientFlags,
        init: { type: "boolean" },
        status: { type: "boolean" },
        cancel: { type: "boolean" },
        nonce: { type: "string" },
        share: { type: "string" },
        "recovery-key": { type: "string" },
        decode: { type: "string" },
        otp: { type: "string" },
      },
      true,
    );
    if (values.decode !== undefined) {
      if (!values.otp) throw new UsageError("generate-root: --decode needs --otp (the OTP --init printed)");
      const { decodeRootToken } = await import("../runtime/server/vault/generate-root.js");
      try {
        io.out(decodeRootToken(values.decode, values.otp));
      } catch (e) {
        throw new UsageError(`--decode: ${(e as Error).message}`);
      }
      return Exit.ok;
    }
    const call = await client(values);
    const show = (b: Record<string, unknown>) =>
      showStatus(
        io,
        values.format,
        b,
        [
          ["Nonce", b.nonce],
          ["Started", b.started],
          ["Progress", `${String(b.progress)}/${String(b.required)}`],
          ["Complete", b.complete],
          ...(b.encoded_token ? ([["Encoded Token", b.encoded_token]] as const) : []),
          ...(b.otp ? ([["OTP", b.otp]] as const) : []),
        ],
        14,
      );
    let r;
    if (values.init) r = await call("PUT", "sys/generate-root/attempt", {});
    else if (values.cancel) r = await call("DELETE", "sys/generate-root/attempt");
    else if (values.status) r = await call("GET", "sys/generate-root/attempt");
    else {
      if (!values.nonce) throw new UsageError("generate-root: --nonce (the attempt's, from its initiator) is required");
      const key = await shareFromFlags("generate-root", positionals[0], values);
      if (!key) throw new UsageError("generate-root: give a key share (KEY, or --share JWE --recovery-key FILE)");
      r = await call("PUT", "sys/generate-root/update", { key, nonce: values.nonce });
    }
    if (failIfError(r, io)) return Exit.rejected;
    if (r.status !== 204) show(r.body as Record<string, unknown>);
    if (values.init && (r.body as { otp?: string }).otp)
      io.err(
        "Keep the OTP: with it the encoded token of the completed attempt decodes to the new root token (--decode).",
      );
    return Exit.ok;
  }

  if (sub === "rekey") return rekey(rest, io);

  if (sub === "root-token") {
    const { values } = parseFlags(rest, { jwe: { type: "string" }, "recovery-key": { type: "string" } });
    if (!values.jwe || !values["recovery-key"])
      throw new UsageError("root-token: --jwe (the encrypted root token, or its file) and --recovery-key go together");
    const { decryptRootToken } = await import("../runtime/client/recovery-share.js");
    const { readPrivateFile } = await import("../runtime/client/deployer.js");
    const jwe = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*){4}$/.test(values.jwe.trim())
      ? values.jwe
      : readFlagFile("--jwe", values.jwe).toString("utf8");
    let jwk;
    try {
      jwk = JSON.parse(readPrivateFile(values["recovery-key"], "--recovery-key"));
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    try {
      // On stdout as asked (e.g. VAULT_TOKEN=$(…)): the operator holding the private key chose where it goes.
      io.out(await decryptRootToken(jwe, jwk));
    } catch (e) {
      throw new UsageError(`--jwe: ${(e as Error).message}`);
    }
    return Exit.ok;
  }

  if (sub === "recovery-key") {
    const { values } = parseFlags(rest, { out: { type: "string" } });
    if (!values.out) throw new UsageError("recovery-key: --out FILE is required (where the private key goes)");
    const { generateRecoveryKey } = await import("../runtime/client/recovery-share.js");
    const { writePrivateFile } = await import("../runtime/client/deployer.js");
    const { publicJwk, privateJwk } = await generateRecoveryKey();
    try {
      writePrivateFile(path.resolve(values.out), `${JSON.stringify(privateJwk)}\n`);
    } catch (e) {
      throw new UsageError(`--out: ${(e as Error).message}`);
    }
    io.out(JSON.stringify(publicJwk));
    return Exit.ok;
  }

  if (sub === "unseal") {
    const { values, positionals } = parseFlags(
      rest,
      { ...clientFlags, reset: { type: "boolean" }, share: { type: "string" }, "recovery-key": { type: "string" } },
      true,
    );
    let key = await shareFromFlags("unseal", positionals[0], values);
    if (!key && !values.reset) {
      if (process.stdin.isTTY) throw new UsageError("unseal: pass the key share as an argument or on stdin");
      key = readFileSync(0, "utf8").trim();
      if (!key) throw new UsageError("unseal: no key share given");
    }
    const call = await client(values);
    const r = await call("PUT", "sys/unseal", values.reset ? { reset: true } : { key });
    if (failIfError(r, io)) return Exit.rejected;
    io.out(values.format === "json" ? JSON.stringify(r.body, null, 2) : statusLines(r.body));
    return Exit.ok;
  }

  if (sub === "status") {
    const { values } = parseFlags(rest, clientFlags);
    const call = await client(values);
    const r = await call("GET", "sys/seal-status");
    if (failIfError(r, io)) return Exit.rejected;
    io.out(values.format === "json" ? JSON.stringify(r.body, null, 2) : statusLines(r.body));
    return r.body.sealed || !r.body.initialized ? Exit.rejected : Exit.ok;
  }

  if (sub === "verify") {
    const { runtimeVerify } = await import("./runtime-verify.js");
    return runtimeVerify(rest, io);
  }

  throw new UsageError(`unknown subcommand '${sub}'\n\n${USAGE}`);
}

/** Operator public JWKs from a comma-separated list of files (init's and rekey's --recovery-keys). */
async function recoveryPublicKeys(list: string | undefined) {
  if (list === undefined) return undefined;
  const { parseRecoveryPublicKey } = await import("../runtime/client/recovery-share.js");
  return list
    .split(",")
    .map((f) => f.trim())
    .filter(Boolean)
    .map((f) => {
      try {
        return parseRecoveryPublicKey(readFlagFile("--recovery-keys", f).toString("utf8"), `--recovery-keys ${f}`);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    });
}

/**
 * `runtime rekey`: Vault's sys/rekey for operators holding JWE shares. The holder whose share completes the
 * quorum receives the new shares; before sending it the CLI asks the status, so the new shares are either
 * encrypted to the operators' keys (--recovery-keys, one per new share, checked against the attempt's `n` before
 * anything is sent) or printed in clear only to a terminal — never into a pipe, file or CI log.
 */
async function rekey(rest: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(
    rest,
    {
      ...clientFlags,
      init: { type: "boolean" },
      status: { type: "boolean" },
      cancel: { type: "boolean" },
      verify: { type: "boolean" },
      "key-shares": { type: "string" },
      "key-threshold": { type: "string" },
      nonce: { type: "string" },
      share: { type: "string" },
      "recovery-key": { type: "string" },
      "recovery-keys": { type: "string" },
      "insecure-print-to-pipe": { type: "boolean" },
    },
    true,
  );
  const call = await client(values);
  const show = (b: Record<string, unknown>) =>
    showStatus(
      io,
      values.format,
      b,
      [
        ["Nonce", b.nonce],
        ["Started", b.started],
        ...(b.started
          ? ([
              ["Rekey Progress", `${String(b.progress)}/${String(b.required)}`],
              ["New Shares", b.n],
              ["New Threshold", b.t],
              ["Verification Required", b.verification_required],
              ...(b.verification_nonce ? ([["Verification Nonce", b.verification_nonce]] as const) : []),
            ] as const)
          : []),
      ],
      21,
    );
  if (values.verify && !values.init) return rekeyVerify(values, positionals[0], call, io);
  let r;
  if (values.init) {
    const n = Number(values["key-shares"] ?? 5),
      t = Number(values["key-threshold"] ?? 3);
    if (!Number.isInteger(n) || n < 1 || n > 255) throw new UsageError("--key-shares: an integer 1..255");
    if (!Number.isInteger(t) || t < 1 || t > n) throw new UsageError("--key-threshold: an integer 1..key-shares");
    r = await call("PUT", "sys/rekey/init", {
      secret_shares: n,
      secret_threshold: t,
      ...(values.verify ? { require_verification: true } : {}),
    });
  } else if (values.status) r = await call("GET", "sys/rekey/init");
  else if (values.cancel) {
    if (!values.nonce) throw new UsageError("rekey: --cancel needs --nonce (the attempt's, shown by --status)");
    r = await call("DELETE", "sys/rekey/init", { nonce: values.nonce });
  } else {
    if (!values.nonce) throw new UsageError("rekey: --nonce (the attempt's, from its initiator) is required");
    const key = await shareFromFlags("rekey", positionals[0], values);
    if (!key) throw new UsageError("rekey: give a key share (KEY, or --share JWE --recovery-key FILE)");
    // Would this share complete the quorum? Then the new shares come back here: check where they would go first.
    const st = await call("GET", "sys/rekey/init");
    if (failIfError(st, io)) return Exit.rejected;
    const s = st.body as { started: boolean; nonce: string; n: number; t: number; progress: number; required: number };
    if (!s.started) throw new UsageError("rekey: no rekey is in progress (start one with --init)");
    const round = (st.body as { verification_nonce?: string }).verification_nonce;
    if (round)
      throw new UsageError(
        `rekey: this rekey's quorum is complete and awaits verification: the new shares' holders give them with --verify --nonce ${round}`,
      );
    const shareKeys = await recoveryPublicKeys(values["recovery-keys"]);
    if (shareKeys && shareKeys.length !== s.n)
      throw new UsageError(`--recovery-keys: ${shareKeys.length} keys for ${s.n} new key shares (one key per share)`);
    const last = s.progress + 1 >= s.required;
    if (last && !shareKeys && !io.isTerminal?.() && !values["insecure-print-to-pipe"])
      throw new UsageError(
        "rekey: this share completes the quorum, and the new unseal key shares would be written to standard output " +
          "in clear, which is not a terminal. Encrypt them to the operators' keys (--recovery-keys, one public JWK " +
          "per new share), run this in a terminal, or pass --insecure-print-to-pipe. Your share was not sent.",
      );
    r = await call("PUT", "sys/rekey/update", { key, nonce: values.nonce });
    if (failIfError(r, io)) return Exit.rejected;
    const done = r.body as {
      complete?: boolean;
      keys_base64?: string[];
      nonce?: string;
      verification_required?: boolean;
      verification_nonce?: string;
    };
    const verifyNonce = done.verification_required ? done.verification_nonce : undefined;
    if (done.complete && done.keys_base64) {
      const b64 = done.keys_base64;
      const { encryptShare } = await import("../runtime/client/recovery-share.js");
      // A race (another holder's share landed first) can complete here without keys to encrypt to: the shares
      // exist nowhere else, so they are printed all the same, with the warning.
      const jwes =
        shareKeys && shareKeys.length === b64.length
          ? await Promise.all(
              b64.map((k, i) =>
                encryptShare({ v: 1, index: i + 1, shares: b64.length, threshold: s.t, key: k }, shareKeys[i]),
              ),
            )
          : undefined;
      if (!jwes)
        io.err(
          "WARNING! The new unseal key shares are printed below in clear, this once: the runtime keeps no copy. " +
            (verifyNonce
              ? "Give each to a different operator; they take effect only once verified (see below)."
              : "Give each to a different operator; the old shares no longer unseal this runtime."),
        );
      if (values.format === "json") {
        io.out(
          JSON.stringify(
            {
              ...(jwes ? { unseal_keys_jwe: jwes } : { unseal_keys_b64: b64 }),
              unseal_shares: b64.length,
              unseal_threshold: s.t,
              nonce: done.nonce,
              ...(verifyNonce ? { verification_required: true, verification_nonce: verifyNonce } : {}),
            },
            null,
            2,
          ),
        );
      } else {
        const lines = (jwes ?? b64).map((k, i) => `Key ${i + 1}${jwes ? " (encrypted)" : ""}: ${k}`);
        lines.push(
          "",
          `Operation nonce: ${String(done.nonce)}`,
          "",
          verifyNonce
            ? `These ${b64.length} new key shares (threshold ${s.t}) are NOT in force yet: the old shares still unseal the ` +
                `runtime. ${s.t} holders of the new shares confirm them with 'buckypaper runtime rekey --verify ` +
                `--nonce ${verifyNonce} (KEY | --share JWE --recovery-key FILE)'; a restart or seal before that discards them.`
            : `The runtime is rekeyed with ${b64.length} key shares and a key threshold of ${s.t}; the old shares no longer unseal it.`,
        );
        io.out(lines.join("\n"));
      }
      return Exit.ok;
    }
  }
  if (failIfError(r, io)) return Exit.rejected;
  if (r.status !== 204) show(r.body as Record<string, unknown>);
  else io.out("Rekey cancelled.");
  return Exit.ok;
}

/**
 * `runtime rekey --verify`: Vault's sys/rekey/verify — the holders of the new shares give a threshold of them back
 * (each opened from its JWE here, like any share); the runtime puts the new key in force only then. --cancel
 * restarts the round (a new verification nonce), as `vault operator rekey -cancel -verify`.
 */
async function rekeyVerify(
  values: {
    status?: boolean;
    cancel?: boolean;
    nonce?: string;
    share?: string;
    "recovery-key"?: string;
    format?: unknown;
  },
  positional: string | undefined,
  call: Awaited<ReturnType<typeof client>>,
  io: CliIo,
): Promise<number> {
  let r;
  if (values.status) r = await call("GET", "sys/rekey/verify");
  else if (values.cancel) r = await call("DELETE", "sys/rekey/verify");
  else {
    if (!values.nonce) throw new UsageError("rekey --verify: --nonce (the verification nonce) is required");
    const key = await shareFromFlags("rekey", positional, values);
    if (!key) throw new UsageError("rekey --verify: give a new key share (KEY, or --share JWE --recovery-key FILE)");
    r = await call("PUT", "sys/rekey/verify", { key, nonce: values.nonce });
  }
  if (failIfError(r, io)) return Exit.rejected;
  const b = r.body as Record<string, unknown>;
  if (b.complete === true) {
    if (values.format === "json") io.out(JSON.stringify(b, null, 2));
    else io.out("Rekey verification successful: the new key shares are in force; the old ones no longer unseal it.");
    return Exit.ok;
  }
  showStatus(
    io,
    values.format,
    b,
    [
      ["Started", b.started],
      ["New Shares", b.n],
      ["New Threshold", b.t],
      ["Verification Nonce", b.nonce],
      ["Verification Progress", `${String(b.progress)}/${String(b.t)}`],
    ],
    21,
  );
  return Exit.ok;
}

/** A multi-step operation's status: the body as JSON with --format json, else `Key  value` rows as vault prints them. */
function showStatus(
  io: CliIo,
  format: unknown,
  body: Record<string, unknown>,
  rows: ReadonlyArray<readonly [string, unknown]>,
  keyWidth: number,
): void {
  if (format === "json") return io.out(JSON.stringify(body, null, 2));
  io.out(rows.map(([k, v]) => `${k.padEnd(keyWidth)} ${String(v)}`).join("\n"));
}
