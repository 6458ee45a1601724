// vTPM evidence on AWS (NitroTPM) and Google Cloud (Shielded VM vTPM): an attestation key in the vTPM, a
// TPM2_Quote over the measured-boot PCRs with the verifier's nonce as qualifying data, the PCR values and
// the firmware's TCG event log. Everything goes through tpm2-tools (TCTI "device:/dev/tpmrm0" in a VM,
// "swtpm:…" in tests), so no TPM command encoding lives here.
//
// The AK is a restricted ECC P-256 signing key under the endorsement hierarchy, persisted at AK_HANDLE so
// every attestation of a boot uses the same key (the one bound into REPORT_DATA and, on AWS, vouched for by
// the NitroTPM document). On GCE (`googleAk`) it is instead the key Google's AK certificate certifies: created
// from Google's AK template in NV (gce-ak.ts) and persisted at GCE_AK_HANDLE, the certificate sent along.
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { CommandError, spawnRunner, type CommandRunner } from "../exec.js";
import { EvidenceError } from "./types.js";
import { derPrefix, GCE_AK_NV, parseAkTemplate } from "./gce-ak.js";
import { parseTpmPublic, TPMA_OBJECT } from "../../attestation/tpm/abi.js";
import type { WireVtpm } from "../../protocol/evidence.js";

export const EK_HANDLE = "0x81010001";
export const AK_HANDLE = "0x81010002";
/** Where the AK created from Google's template is persisted (GCE); never the kit's own AK. */
export const GCE_AK_HANDLE = "0x81010003";
/** Measured-boot PCRs a quote covers: firmware (0-7), grub/Linux stub (8, 9), systemd-stub (11, 12), shim MOK (14). */
export const BOOT_PCRS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14];
export const EVENT_LOG_PATH = "/sys/kernel/security/tpm0/binary_bios_measurements";

export interface VtpmOptions {
  /** tpm2-tools TCTI, e.g. "device:/dev/tpmrm0" or "swtpm:host=127.0.0.1,port=2321". */
  tcti: string;
  runner?: CommandRunner;
  pcrs?: number[];
  eventLogPath?: string;
  /**
   * AWS NitroTPM: quote the SHA-384 bank too and request an attestation document (AWS Nitro PKI) with the same
   * nonce and the AK's TPM2B_PUBLIC as public_key, through `nitro-tpm-attest` (aws/NitroTPM-Tools). When it
   * cannot be had, the evidence goes without it and Nitride's refusal (`aws.document`) says why.
   */
  nitroTpm?: boolean;
  /** The document tool's argv prefix (default ["nitro-tpm-attest"]). */
  nitroTpmAttest?: string[];
  /**
   * GCE: quote with the AK Google's EK/AK CA certified — created from Google's AK template (NV 0x01c10003 ECC /
   * 0x01c10001 RSA) — and send its certificate (NV 0x01c10002 / 0x01c10000). Fails with a named step when the
   * vTPM has no such template or certificate (not a Shielded VM vTPM): never falls back to an uncertified AK.
   */
  googleAk?: boolean;
}

export interface VtpmEvidence {
  /** TPM2B_PUBLIC of the AK. */
  akPublic: Buffer;
  /** TPMS_ATTEST and TPMT_SIGNATURE of the quote. */
  quote: Buffer;
  signature: Buffer;
  /** SHA-256 PCR values in selection order, index → value. */
  pcrs: Record<number, Buffer>;
  /** SHA-384 PCR values (NitroTPM), index → value. */
  pcrsSha384?: Record<number, Buffer>;
  eventLog: Buffer;
  /** The NitroTPM attestation document, when asked for and obtained. */
  nitroDocument?: Buffer;
  /** Why no NitroTPM document came, when one was asked for. */
  nitroDocumentError?: string;
  /** GCE: Google's AK certificate (DER) for akPublic. */
  akCertificate?: Buffer;
}

const NAME = "vtpm";

/**
 * The wire form (runtime-api.md `evidence.vtpm`) of what Vtpm.collect returned: exactly what `run` attaches to its
 * snp/tdx evidence and what `enclaivelet vtpm-evidence` prints, so both paths send the same bytes.
 */
export function wireVtpm(t: VtpmEvidence): WireVtpm {
  const b = (x: Uint8Array) => Buffer.from(x).toString("base64");
  return {
    ak_public: b(t.akPublic),
    quote: b(t.quote),
    signature: b(t.signature),
    event_log: b(t.eventLog),
    pcrs: {
      sha256: Object.fromEntries(Object.entries(t.pcrs).map(([k, v]) => [k, b(v)])),
      ...(t.pcrsSha384 ? { sha384: Object.fromEntries(Object.entries(t.pcrsSha384).map(([k, v]) => [k, b(v)])) } : {}),
    },
    ...(t.nitroDocument ? { nitro_document: b(t.nitroDocument) } : {}),
    // GCE: the leaf from NV only; the verifier bundles Google's intermediates (gce/ak-roots.ts) — the AIA URL
    // that names them cannot be fetched from here (no network to Google is assumed, nor trusted).
    ...(t.akCertificate ? { ak_cert: b(t.akCertificate) } : {}),
  };
}

/** An endorsement key activateCredential can use: persisted at EK_HANDLE, or recreated from a TCG default template. */
export interface KnownEk {
  name: Buffer;
  template: "persisted" | "rsa" | "ecc" | "ecc384";
  attributes: number;
  nameAlg: string;
}

export class Vtpm {
  private readonly runner: CommandRunner;
  constructor(private readonly opts: VtpmOptions) {
    this.runner = opts.runner ?? spawnRunner;
  }

  private async tpm(step: string, argv: string[]): Promise<Buffer> {
    const r = await this.runner.run(argv, { env: { ...process.env, TPM2TOOLS_TCTI: this.opts.tcti } });
    if (r.code !== 0)
      throw new EvidenceError(NAME, step, new CommandError(argv[0], r.code, r.stderr.toString()).message);
    return r.stdout;
  }

  /** Flushes transient objects and sessions: without a resource manager (swtpm, /dev/tpm0) they pile up. */
  private async flush(): Promise<void> {
    await this.runner.run(["tpm2_flushcontext", "-t"], { env: { ...process.env, TPM2TOOLS_TCTI: this.opts.tcti } });
    await this.runner.run(["tpm2_flushcontext", "-s"], { env: { ...process.env, TPM2TOOLS_TCTI: this.opts.tcti } });
  }

  private async withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(path.join(tmpdir(), "bp-vtpm-"));
    try {
      return await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private googleAkCache?: { akPublic: Buffer; certificate: Buffer };

  /** The handle the quote is signed with. */
  private get akHandle(): string {
    return this.opts.googleAk ? GCE_AK_HANDLE : AK_HANDLE;
  }

  private env() {
    return { env: { ...process.env, TPM2TOOLS_TCTI: this.opts.tcti } };
  }

  /**
   * GCE: Google's AK template and certificate from NV; the AK persisted at GCE_AK_HANDLE is reused only when it is
   * the certified key, else (re)created from the template. Checks the created key against the template and the
   * certificate, so what is quoted with is what Google certified (the verifier checks that again).
   */
  private async googleAttestationKey(): Promise<{ akPublic: Buffer; certificate: Buffer }> {
    if (this.googleAkCache) return this.googleAkCache;
    const found = await this.withDir(async (dir) => {
      for (const nv of GCE_AK_NV) {
        const tmpl = path.join(dir, `${nv.kind}.tmpl`);
        const cert = path.join(dir, `${nv.kind}.cert`);
        const hex = (n: number) => `0x${n.toString(16)}`;
        const t = await this.runner.run(["tpm2_nvread", hex(nv.template), "-C", "o", "-o", tmpl], this.env());
        if (t.code !== 0) continue;
        const c = await this.runner.run(["tpm2_nvread", hex(nv.certificate), "-C", "o", "-o", cert], this.env());
        if (c.code !== 0)
          throw new EvidenceError(
            NAME,
            "gce-ak-certificate",
            `Google's ${nv.kind.toUpperCase()} AK template is in NV ${hex(nv.template)} but its certificate (NV ${hex(nv.certificate)}) cannot be read: ${c.stderr.toString().trim().slice(0, 200)}`,
          );
        return { nv, template: await readFile(tmpl), certificate: await readFile(cert) };
      }
      return undefined;
    });
    if (!found)
      throw new EvidenceError(
        NAME,
        "gce-ak-template",
        "no Google AK template in NV 0x01c10003 (ECC) or 0x01c10001 (RSA): is this a GCE Shielded/Confidential VM's vTPM?",
      );
    let certificate: Buffer;
    let certSpki: Buffer;
    try {
      certificate = derPrefix(found.certificate);
      certSpki = new X509Certificate(certificate).publicKey.export({ type: "spki", format: "der" });
    } catch (e) {
      throw new EvidenceError(
        NAME,
        "gce-ak-certificate",
        `NV 0x${found.nv.certificate.toString(16)} does not hold an X.509 certificate: ${(e as Error).message}`,
      );
    }
    let template;
    try {
      template = parseAkTemplate(found.template);
    } catch (e) {
      throw new EvidenceError(NAME, "gce-ak-template", (e as Error).message);
    }
    const spkiOf = (tpm2b: Buffer) =>
      parseTpmPublic(tpm2b, { where: "gce_ak" }).key.export({ type: "spki", format: "der" });
    const akPublic = await this.withDir(async (dir) => {
      const pub = path.join(dir, "ak.pub");
      const existing = await this.runner.run(["tpm2_readpublic", "-c", GCE_AK_HANDLE, "-o", pub], this.env());
      if (existing.code === 0) {
        const have = await readFile(pub);
        if (spkiOf(have).equals(certSpki)) return have;
        // Not the certified key (another template, an older seed): replace it.
        await this.tpm("evict-gce-ak", ["tpm2_evictcontrol", "-C", "o", "-c", GCE_AK_HANDLE]);
      }
      await this.flush();
      const ctx = path.join(dir, "gce-ak.ctx");
      const unique = path.join(dir, "unique.bin");
      await writeFile(unique, template.unique);
      const policy = path.join(dir, "policy.bin");
      if (template.authPolicy.length) await writeFile(policy, template.authPolicy);
      await this.tpm("create-gce-ak", [
        "tpm2_createprimary",
        "-C",
        "e",
        ...template.options,
        ...(template.authPolicy.length ? ["-L", policy] : []),
        "-u",
        unique,
        "-c",
        ctx,
      ]);
      await this.tpm("read-gce-ak", ["tpm2_readpublic", "-c", ctx, "-o", pub]);
      const created = await readFile(pub);
      // TPM2B_PUBLIC: the 2-byte size, then the TPMT_PUBLIC whose head must be the template's.
      if (!created.subarray(2, 2 + template.prefix.length).equals(template.prefix)) {
        await this.flush();
        throw new EvidenceError(
          NAME,
          "gce-ak-template",
          "the key tpm2_createprimary made differs from Google's AK template (attributes, scheme or policy)",
        );
      }
      if (!spkiOf(created).equals(certSpki)) {
        await this.flush();
        throw new EvidenceError(
          NAME,
          "gce-ak-certificate",
          "the key created from Google's AK template is not the key Google's AK certificate certifies",
        );
      }
      await this.tpm("persist-gce-ak", ["tpm2_evictcontrol", "-C", "o", "-c", ctx, GCE_AK_HANDLE]);
      await this.flush();
      return created;
    });
    this.googleAkCache = { akPublic, certificate };
    return this.googleAkCache;
  }

  /** The AK's TPM2B_PUBLIC; creates EK and AK (persistent) on first use (GCE: Google's certified AK). */
  async attestationKey(): Promise<Buffer> {
    if (this.opts.googleAk) return (await this.googleAttestationKey()).akPublic;
    return this.withDir(async (dir) => {
      const pub = path.join(dir, "ak.pub");
      const existing = await this.runner.run(["tpm2_readpublic", "-c", AK_HANDLE, "-o", pub], {
        env: { ...process.env, TPM2TOOLS_TCTI: this.opts.tcti },
      });
      if (existing.code === 0) return readFile(pub);
      const ek = await this.runner.run(["tpm2_readpublic", "-c", EK_HANDLE], {
        env: { ...process.env, TPM2TOOLS_TCTI: this.opts.tcti },
      });
      await this.flush();
      if (ek.code !== 0) {
        await this.tpm("create-ek", ["tpm2_createek", "-c", EK_HANDLE, "-G", "rsa", "-u", path.join(dir, "ek.pub")]);
        await this.flush();
      }
      const ctx = path.join(dir, "ak.ctx");
      await this.tpm("create-ak", [
        "tpm2_createak",
        "-C",
        EK_HANDLE,
        "-c",
        ctx,
        "-G",
        "ecc",
        "-g",
        "sha256",
        "-s",
        "ecdsa",
        "-u",
        pub,
      ]);
      await this.flush();
      await this.tpm("persist-ak", ["tpm2_evictcontrol", "-c", ctx, AK_HANDLE]);
      await this.flush();
      return readFile(pub);
    });
  }

  private ekCache?: Promise<KnownEk[]>;

  /**
   * The endorsement keys this TPM can activate a credential under: the one persisted at EK_HANDLE and those of the
   * TCG default templates (RSA-2048, ECC P-256, ECC P-384 — tpm2_createek; AWS's GetInstanceTpmEkPub offers RSA and
   * ECC P-384). Read once and kept: a template EK's Name derives from the endorsement primary seed, which only
   * TPM2_ChangeEPS changes. Knowing them up front lets activateCredential refuse any other Name without asking the
   * TPM — a caller naming unknown EKs would otherwise make it regenerate three primary keys per request.
   */
  endorsementKeys(): Promise<KnownEk[]> {
    this.ekCache ??= this.readEndorsementKeys().catch((e: unknown) => {
      this.ekCache = undefined;
      throw e;
    });
    return this.ekCache;
  }

  private async readEndorsementKeys(): Promise<KnownEk[]> {
    await this.attestationKey();
    return this.withDir(async (dir) => {
      const known: KnownEk[] = [];
      const pub = path.join(dir, "ek.pub");
      const add = async (template: KnownEk["template"]) => {
        const p = parseTpmPublic(await readFile(pub), { where: "ek_public" });
        const name = Buffer.from(p.name);
        if (!known.some((k) => k.name.equals(name)))
          known.push({ name, template, attributes: p.objectAttributes, nameAlg: p.nameAlg });
      };
      if ((await this.runner.run(["tpm2_readpublic", "-c", EK_HANDLE, "-o", pub], this.env())).code === 0)
        await add("persisted");
      for (const alg of ["rsa", "ecc", "ecc384"] as const) {
        await this.flush();
        const made = await this.runner.run(
          ["tpm2_createek", "-c", path.join(dir, `ek-${alg}.ctx`), "-G", alg, "-u", pub],
          this.env(),
        );
        await this.flush();
        // A TPM that cannot make this template's key (no ECC P-384, say) simply has no such EK.
        if (made.code === 0) await add(alg);
      }
      return known;
    });
  }

  /**
   * TPM2_ActivateCredential (EK credential activation): recovers the secret Nitride encrypted to the EK named
   * `ekName` for this TPM's AK (TPM 2.0 Part 3). The EK must be one of endorsementKeys() — the persisted one, or
   * one recreated from the TCG default template whose Name it is; any other Name is refused before the TPM is
   * asked anything (once the keys are known). A TPM with no such EK cannot answer, which is the point. The EK's
   * USER role is a policy (PolicySecret(endorsement), the low-range templates) or, when the template sets
   * userWithAuth (high-range), its empty authValue.
   */
  async activateCredential(c: { ekName: Buffer; credentialBlob: Buffer; encryptedSecret: Buffer }): Promise<Buffer> {
    const known = (await this.endorsementKeys()).find((k) => k.name.equals(c.ekName));
    if (!known)
      throw new EvidenceError(
        NAME,
        "ek-credential",
        `this TPM has no endorsement key named ${c.ekName.toString("hex").slice(0, 20)}… (persisted at ${EK_HANDLE} or from a TCG default template)`,
      );
    await this.attestationKey();
    return this.withDir(async (dir) => {
      const pub = path.join(dir, "ek.pub");
      let handle = EK_HANDLE;
      if (known.template !== "persisted") {
        handle = path.join(dir, "ek.ctx");
        await this.flush();
        await this.tpm("create-ek", ["tpm2_createek", "-c", handle, "-G", known.template, "-u", pub]);
        // The seed did not change under us (TPM2_ChangeEPS): else the credential is for a key this TPM lost.
        if (!Buffer.from(parseTpmPublic(await readFile(pub), { where: "ek_public" }).name).equals(c.ekName)) {
          await this.flush();
          this.ekCache = undefined;
          throw new EvidenceError(NAME, "ek-credential", `the ${known.template} template no longer makes that EK`);
        }
      }
      const ek = { handle, attributes: known.attributes, nameAlg: known.nameAlg };
      // tpm2-tools' credential file: magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
      const file = path.join(dir, "credential.bin");
      await writeFile(
        file,
        Buffer.concat([Buffer.from("badcc0de00000001", "hex"), c.credentialBlob, c.encryptedSecret]),
      );
      const out = path.join(dir, "secret.bin");
      const session = path.join(dir, "session.ctx");
      const policy = !(ek.attributes & TPMA_OBJECT.userWithAuth);
      try {
        await this.flush();
        if (policy) {
          await this.tpm("ek-session", ["tpm2_startauthsession", "--policy-session", "-g", ek.nameAlg, "-S", session]);
          await this.tpm("ek-policy-secret", ["tpm2_policysecret", "-S", session, "-c", "e"]);
        }
        await this.tpm("activate-credential", [
          "tpm2_activatecredential",
          "-c",
          this.akHandle,
          "-C",
          ek.handle,
          "-i",
          file,
          "-o",
          out,
          ...(policy ? ["-P", `session:${session}`] : []),
        ]);
      } finally {
        await this.flush();
      }
      return readFile(out);
    });
  }

  /** The EK's public key (the instance identity AWS's GetInstanceTpmEkPub returns), PEM. */
  async endorsementKeyPem(): Promise<string> {
    await this.attestationKey();
    return this.withDir(async (dir) => {
      const out = path.join(dir, "ek.pem");
      await this.tpm("read-ek", ["tpm2_readpublic", "-c", EK_HANDLE, "-f", "pem", "-o", out]);
      return (await readFile(out)).toString("utf8");
    });
  }

  /** A quote over the boot PCRs with `nonce` (≤ 64 bytes) as qualifying data, plus the event log. */
  async collect(nonce: Uint8Array): Promise<VtpmEvidence> {
    if (nonce.length === 0 || nonce.length > 64)
      throw new EvidenceError(NAME, "nonce", `qualifying data of ${nonce.length} bytes (1..64)`);
    const akPublic = await this.attestationKey();
    const akCertificate = this.opts.googleAk ? (await this.googleAttestationKey()).certificate : undefined;
    const pcrs = this.opts.pcrs ?? BOOT_PCRS;
    const sel = `sha256:${pcrs.join(",")}` + (this.opts.nitroTpm ? `+sha384:${pcrs.join(",")}` : "");
    const width = 32 + (this.opts.nitroTpm ? 48 : 0);
    return this.withDir(async (dir) => {
      const [msg, sig, values] = ["quote.msg", "quote.sig", "pcrs.bin"].map((f) => path.join(dir, f));
      await this.tpm("quote", [
        "tpm2_quote",
        "-c",
        this.akHandle,
        "-l",
        sel,
        "-q",
        Buffer.from(nonce).toString("hex"),
        "-m",
        msg,
        "-s",
        sig,
        "-o",
        values,
        "-F",
        "values",
        "-g",
        "sha256",
      ]);
      await this.flush();
      const raw = await readFile(values);
      if (raw.length !== pcrs.length * width)
        throw new EvidenceError(NAME, "pcr-read", `${raw.length} bytes of PCR values for ${pcrs.length} PCRs`);
      // tpm2_quote writes the values bank by bank, in selection order.
      const out: Record<number, Buffer> = {};
      pcrs.forEach((p, i) => (out[p] = raw.subarray(i * 32, i * 32 + 32)));
      let sha384: Record<number, Buffer> | undefined;
      if (this.opts.nitroTpm) {
        const base = pcrs.length * 32;
        sha384 = {};
        for (const [i, p] of pcrs.entries()) sha384[p] = raw.subarray(base + i * 48, base + i * 48 + 48);
      }
      let eventLog: Buffer;
      try {
        eventLog = await readFile(this.opts.eventLogPath ?? EVENT_LOG_PATH);
      } catch (e) {
        throw new EvidenceError(NAME, "event-log", `cannot read the TCG event log: ${(e as Error).message}`);
      }
      const doc = this.opts.nitroTpm ? await this.nitroDocument(dir, nonce, akPublic) : undefined;
      return {
        akPublic,
        quote: await readFile(msg),
        signature: await readFile(sig),
        pcrs: out,
        ...(sha384 ? { pcrsSha384: sha384 } : {}),
        eventLog,
        ...(doc && "document" in doc ? { nitroDocument: doc.document } : {}),
        ...(doc && "error" in doc ? { nitroDocumentError: doc.error } : {}),
        ...(akCertificate ? { akCertificate } : {}),
      };
    });
  }

  /** The NitroTPM attestation document for this nonce, public_key = the AK's TPM2B_PUBLIC. Never throws. */
  private async nitroDocument(
    dir: string,
    nonce: Uint8Array,
    akPublic: Buffer,
  ): Promise<{ document: Buffer } | { error: string }> {
    const nonceFile = path.join(dir, "nitro.nonce");
    const keyFile = path.join(dir, "nitro.pubkey");
    await writeFile(nonceFile, nonce);
    await writeFile(keyFile, akPublic);
    const argv = [...(this.opts.nitroTpmAttest ?? ["nitro-tpm-attest"]), "--nonce", nonceFile, "--public-key", keyFile];
    try {
      const r = await this.runner.run(argv, { env: process.env });
      if (r.code !== 0 || r.stdout.length === 0)
        return {
          error: `${argv[0]} exited ${r.code}: ${r.stderr.toString().trim().slice(0, 200) || "no document on stdout"}`,
        };
      return { document: r.stdout };
    } catch (e) {
      return {
        error: `${argv[0]} could not run (${(e as Error).message}): is this an EC2 instance with NitroTPM and NitroTPM-Tools installed?`,
      };
    }
  }
}
