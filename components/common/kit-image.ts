// What a kit-image component (AwsKitImage, GcpKitImage, AzureKitImage) reads from the kit's disk on the machine running `pulumi up`,
// and what it hands a confidential VM: the same manifest, disk and Secure Boot certificates it enrolled, so the db
// certificate the image enrolls and the one the workload is registered with (bootChain.dbCertificates) come from one
// input. Only certificates are ever inputs: the signing key stays where `image build --sign-key` read it.
import { createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import path from "node:path";
import { parseManifest, ManifestError, type ImageManifest } from "../../images/guest/manifest.js";
import { certificateDer } from "../../images/vtpm/index.js";
import type { BootChainArgs } from "./boot-chain.js";
import { ConfigError } from "./errors.js";
import { readInputFile } from "./input-file.js";

/** The customer's Secure Boot certificates (PEM or DER files) the image enrolls. */
export interface SecureBootKeysArgs {
  /** Platform Key certificate. */
  pkCertificate: string;
  /** Key Exchange Key certificates; default: the PK certificate (as `virt-fw-vars --enroll-cert` does). */
  kekCertificates?: string[];
  /** db certificates: the UKI must be signed by one of them (`buckypaper image build --sign-key/--sign-cert`). */
  dbCertificates: string[];
}

/** The clouds a kit image is made for (`buckypaper image build --cloud`). */
export type KitCloud = "ec2" | "gce" | "azure";

export interface Certificate {
  field: string;
  file: string;
  der: Buffer;
  sha256: string;
}

export interface SecureBootKeys {
  pk: Certificate;
  keks: Certificate[];
  dbs: Certificate[];
}

/** What a VM takes from a kit-image component: where the image is, and what to predict its boot chain from. */
export interface KitImageRef {
  /** The cloud's image id (AMI id, GCE image self link, Azure gallery image version id). */
  imageId: import("@pulumi/pulumi").Input<string>;
  /** The manifest, disk and db certificates the image was made from (predicted as bootChain). */
  bootChain: BootChainArgs;
  /** The cloud the disk was built for (`image build --cloud`): ec2, gce or azure. */
  cloud: string;
}

export function readCertificate(who: string, field: string, file: string): Certificate {
  if (typeof file !== "string" || file === "")
    throw new ConfigError(who, field, "must be the path of a certificate file (PEM or DER)");
  const raw = readInputFile(who, field, file);
  // A private key is never an input: refuse it by name, before it could reach a resource's inputs or state.
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(raw.toString("latin1")))
    throw new ConfigError(
      who,
      field,
      `'${file}' holds a private key; give the certificate only (the signing key stays with \`image build --sign-key\`)`,
    );
  let der: Buffer;
  try {
    der = certificateDer(raw, field);
  } catch (e) {
    throw new ConfigError(who, field, `'${file}' is ${(e as Error).message.slice(field.length + 2)}`);
  }
  return { field, file, der, sha256: createHash("sha256").update(der).digest("hex") };
}

export function readSecureBootKeys(who: string, args: SecureBootKeysArgs): SecureBootKeys {
  if (args.pkCertificate === undefined) throw new ConfigError(who, "pkCertificate", "is required");
  if (!Array.isArray(args.dbCertificates) || args.dbCertificates.length === 0)
    throw new ConfigError(who, "dbCertificates", "is required (the certificate the disk's UKI is signed with)");
  const pk = readCertificate(who, "pkCertificate", args.pkCertificate);
  const keks =
    args.kekCertificates === undefined
      ? [pk]
      : args.kekCertificates.map((f, i) => readCertificate(who, `kekCertificates[${i}]`, f));
  if (keks.length === 0) throw new ConfigError(who, "kekCertificates", "is empty (omit it to use the PK certificate)");
  const dbs = args.dbCertificates.map((f, i) => readCertificate(who, `dbCertificates[${i}]`, f));
  return { pk, keks, dbs };
}

/** 8 hex digits naming the set of db certificates (in image names: a new set is a new image). */
export function dbSetTag(dbs: Certificate[]): string {
  return createHash("sha256")
    .update(dbs.map((c) => c.sha256).join(","))
    .digest("hex")
    .slice(0, 8);
}

export interface KitDisk {
  manifest: ImageManifest;
  manifestPath: string;
  diskPath: string;
  sha256: string;
  size: number;
}

/**
 * The kit's cloud disk for `cloud`, checked: a manifest with a disk, built for this cloud (workload: the enclaivelet's
 * user-data source; runtime: runtime.cloud), its UKI signed by one of `dbs` (with the customer's PK enrolled Secure
 * Boot is on, and the firmware starts only a UKI db verifies), and the disk file's SHA-256 the manifest's.
 */
export async function readKitDisk(
  who: string,
  cloud: KitCloud,
  manifestPath: string,
  diskPath: string | undefined,
  dbs: Certificate[],
): Promise<KitDisk> {
  const m = kitDiskManifest(who, cloud, manifestPath, dbs);
  const file = diskPath ?? path.resolve(path.dirname(manifestPath), m.disk!.path);
  let size: number;
  try {
    size = statSync(file).size;
  } catch (e) {
    throw new ConfigError(
      who,
      diskPath ? "disk" : "manifest",
      `'${file}' cannot be read (${(e as NodeJS.ErrnoException).code})`,
    );
  }
  const sha256 = await fileSha256(file);
  if (sha256 !== m.disk!.sha256)
    throw new ConfigError(
      who,
      diskPath ? "disk" : "manifest",
      `'${file}' has SHA-256 ${sha256}, the manifest's disk is ${m.disk!.sha256} (a changed or other disk)`,
    );
  return { manifest: m, manifestPath, diskPath: file, sha256, size };
}

/** The manifest checks of readKitDisk, without reading the disk (synchronous: usable in a constructor). */
export function kitDiskManifest(who: string, cloud: KitCloud, manifestPath: string, dbs: Certificate[]): ImageManifest {
  if (typeof manifestPath !== "string" || manifestPath === "")
    throw new ConfigError(
      who,
      "manifest",
      "is required (manifest.json of `buckypaper image build --cloud " + cloud + "`)",
    );
  let m: ImageManifest;
  try {
    m = parseManifest(readInputFile(who, "manifest", manifestPath).toString("utf8"), manifestPath);
  } catch (e) {
    if (e instanceof ManifestError) throw new ConfigError(who, `manifest (${e.field})`, e.message);
    throw e;
  }
  if (!m.disk)
    throw new ConfigError(
      who,
      "manifest",
      `records no cloud disk: build it with \`buckypaper image build --cloud ${cloud}\``,
    );
  const built = m.role === "runtime" ? m.runtime?.cloud : m.enclaivelet?.userDataSource;
  if (built !== cloud)
    throw new ConfigError(
      who,
      "manifest",
      `is a disk built for ${built ? `'${built}'` : "no recorded cloud"}; this image needs one built with \`buckypaper image build --cloud ${cloud}\``,
      [cloud],
    );
  const sig = m.disk.signature;
  if (!sig)
    throw new ConfigError(
      who,
      "dbCertificates",
      "cannot verify this disk's UKI: it is unsigned, and the image enrolls your PK, so Secure Boot is on and the firmware would refuse it. Build it with `buckypaper image build --sign-key KEY --sign-cert CERT` and name CERT in dbCertificates",
    );
  if (!dbs.some((c) => c.sha256 === sig.certSha256))
    throw new ConfigError(
      who,
      "dbCertificates",
      `do not include the certificate the disk's UKI is signed with (${sig.subject}, SHA-256 ${sig.certSha256}): the firmware would refuse to start it`,
    );
  return m;
}

async function fileSha256(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/**
 * A VM given a kit image: its bootChain is the image's. A bootChain the program also sets must name the same
 * manifest and exactly the same db certificates (by SHA-256), or the workload would be registered with an authority
 * the image does not enroll (it never boots) or the image enrolls one the registration does not expect.
 */
export function bootChainFromKitImage(
  who: string,
  image: KitImageRef,
  cloud: KitCloud,
  bootChain: BootChainArgs | undefined,
): BootChainArgs {
  if (image.cloud !== cloud)
    throw new ConfigError(who, "kitImage", `is an image of a disk built for '${image.cloud}'`, [cloud]);
  if (bootChain === undefined) return image.bootChain;
  if (bootChain.manifest === undefined || path.resolve(bootChain.manifest) !== path.resolve(image.bootChain.manifest!))
    throw new ConfigError(
      who,
      "bootChain.manifest",
      "differs from kitImage's manifest (omit bootChain: the image's is used)",
    );
  const digests = (files: string[] | undefined, field: string) =>
    new Set((files ?? []).map((f, i) => readCertificate(who, `${field}[${i}]`, f).sha256));
  const mine = digests(bootChain.dbCertificates, "bootChain.dbCertificates");
  const theirs = digests(image.bootChain.dbCertificates, "kitImage.dbCertificates");
  if (mine.size !== theirs.size || [...mine].some((d) => !theirs.has(d)))
    throw new ConfigError(
      who,
      "bootChain.dbCertificates",
      `(${[...mine].join(", ") || "none"}) differ from the db certificates kitImage enrolls (${[...theirs].join(", ")}); omit bootChain.dbCertificates to register the image's`,
    );
  return { ...bootChain, dbCertificates: image.bootChain.dbCertificates, disk: bootChain.disk ?? image.bootChain.disk };
}
