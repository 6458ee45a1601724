// A Compute Engine image of the kit's cloud disk (`buckypaper image build --cloud gce --sign-key … --sign-cert …`)
// that boots it under the customer's Secure Boot keys: the disk packed as GCE's import format (disk.raw in a gzip'd
// oldgnu tar, images/guest/gce-tar.ts, written beside the disk and reused while it holds exactly that disk), uploaded to a Cloud Storage bucket the program
// names, and created as an image with SEV_SNP_CAPABLE, UEFI_COMPATIBLE and GVNIC and a
// shieldedInstanceInitialState holding the customer's PK, KEK and db (X.509) — so a Shielded VM of it (Secure Boot
// on) starts only a UKI one of the db certificates signed. `bootChain` carries the same manifest, disk and db
// certificates to GcpConfidentialVm (`kitImage`), which predicts and registers the measured-boot policy from them.
import { existsSync } from "node:fs";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as gcp from "@pulumi/gcp";
import type { BootChainArgs } from "../common/boot-chain.js";
import { ConfigError } from "../common/errors.js";
import {
  kitDiskManifest,
  readKitDisk,
  readSecureBootKeys,
  dbSetTag,
  type KitImageRef,
  type SecureBootKeys,
  type SecureBootKeysArgs,
} from "../common/kit-image.js";
import { gceImageTarballHolds, writeGceImageTarball } from "../../images/guest/gce-tar.js";

export interface GcpKitImageArgs extends SecureBootKeysArgs {
  /** manifest.json of `buckypaper image build --cloud gce` with a signed disk (`--sign-key/--sign-cert`). */
  manifest: string;
  /** The raw disk file, when it is not at the manifest's `disk.path`; its SHA-256 must be the manifest's. */
  disk?: string;
  /** An existing Cloud Storage bucket the archive is uploaded to; images.insert reads it from there. */
  bucket: pulumi.Input<string>;
  /** Object name prefix (default `buckypaper/`); the name ends in the disk's SHA-256. */
  objectPrefix?: string;
  /** Where the import archive (`gce-<disk sha256>.tar.gz`) is written (default: beside the disk). */
  archiveDir?: string;
  /** Image family, e.g. to let instances follow the latest kit image. */
  family?: pulumi.Input<string>;
  project?: pulumi.Input<string>;
  labels?: Record<string, pulumi.Input<string>>;
}

/** The guest OS features the kit's disk supports (an SEV-SNP confidential VM requires SEV_SNP_CAPABLE). */
export const KIT_GUEST_OS_FEATURES = ["SEV_SNP_CAPABLE", "UEFI_COMPATIBLE", "GVNIC"] as const;

/** The Shielded VM initial UEFI state: the customer's PK, KEK and db, each an X.509 certificate (base64 DER). */
export function shieldedInitialState(keys: SecureBootKeys): gcp.types.input.compute.ImageShieldedInstanceInitialState {
  const x509 = (der: Buffer) => ({ content: der.toString("base64"), fileType: "X509" });
  return { pk: x509(keys.pk.der), keks: keys.keks.map((c) => x509(c.der)), dbs: keys.dbs.map((c) => x509(c.der)) };
}

/** The image's arguments as a pure function (asserted by tests against @pulumi/gcp's types). */
export function gcpKitImageArgs(i: {
  name: string;
  source: pulumi.Input<string>;
  keys: SecureBootKeys;
  description: string;
  family?: pulumi.Input<string>;
  project?: pulumi.Input<string>;
  labels: Record<string, pulumi.Input<string>>;
}): gcp.compute.ImageArgs {
  return {
    name: i.name,
    description: i.description,
    rawDisk: { source: i.source, containerType: "TAR" },
    guestOsFeatures: KIT_GUEST_OS_FEATURES.map((type) => ({ type })),
    shieldedInstanceInitialState: shieldedInitialState(i.keys),
    ...(i.family !== undefined ? { family: i.family } : {}),
    ...(i.project !== undefined ? { project: i.project } : {}),
    labels: i.labels,
  };
}

export class GcpKitImage extends pulumi.ComponentResource implements KitImageRef {
  /** The image's self link: give this component to GcpConfidentialVm as `kitImage`. */
  public readonly imageId: pulumi.Output<string>;
  public readonly selfLink: pulumi.Output<string>;
  /** What GcpConfidentialVm predicts the boot chain from: this image's manifest, disk and enrolled db certificates. */
  public readonly bootChain: BootChainArgs;
  /** The cloud the disk was built for (gce). */
  public readonly cloud: string = "gce";
  /** SHA-256 (hex) of the enrolled db certificates (DER): the Secure Boot authorities a workload registers. */
  public readonly dbCertificateSha256s: pulumi.Output<string[]>;
  public readonly diskSha256: pulumi.Output<string>;

  constructor(name: string, args: GcpKitImageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:GcpKitImage", name, {}, opts);
    const who = `GcpKitImage ${name}`;
    if (args.bucket === undefined || args.bucket === "")
      throw new ConfigError(who, "bucket", "is required: the Cloud Storage bucket the image is created from");
    if (!/^[a-z]([-a-z0-9]{0,35}[a-z0-9])?$/.test(name))
      throw new ConfigError(
        who,
        "name",
        `'${name}' must be a GCE resource name prefix (lowercase letters, digits, dashes; ≤ 37)`,
      );
    const keys = readSecureBootKeys(who, args);
    const m = kitDiskManifest(who, "gce", args.manifest, keys.dbs);
    const disk = m.disk!;
    // The disk is checked against the manifest, then packed once (deterministic: same disk, same archive).
    const archive = pulumi.output(
      readKitDisk(who, "gce", args.manifest, args.disk, keys.dbs).then(async (d) => {
        const out = path.join(args.archiveDir ?? path.dirname(d.diskPath), `gce-${d.sha256}.tar.gz`);
        // Reused only when it holds exactly this disk (it is what gets uploaded).
        if (!existsSync(out) || !(await gceImageTarballHolds(out, d.size, d.sha256)))
          await writeGceImageTarball(d.diskPath, d.size, out, m.sourceDateEpoch);
        return out;
      }),
    );
    const labels = { "buckypaper-disk": disk.sha256.slice(0, 32), ...args.labels };
    const object = new gcp.storage.BucketObject(
      `${name}-disk`,
      {
        bucket: args.bucket,
        name: `${args.objectPrefix ?? "buckypaper/"}${name}-${disk.sha256}.tar.gz`,
        source: archive.apply((f) => new pulumi.asset.FileAsset(f)),
        contentType: "application/gzip",
      },
      { parent: this },
    );
    const image = new gcp.compute.Image(
      `${name}-image`,
      gcpKitImageArgs({
        name: `${name}-${disk.sha256.slice(0, 16)}-${dbSetTag(keys.dbs)}`,
        source: pulumi.interpolate`https://storage.googleapis.com/${object.bucket}/${object.name}`,
        keys,
        description: `buckypaper kit disk ${disk.sha256}, UKI signed by ${disk.signature!.subject}`,
        family: args.family,
        project: args.project,
        labels,
      }),
      { parent: this },
    );
    this.selfLink = image.selfLink;
    this.imageId = image.selfLink;
    this.bootChain = {
      manifest: args.manifest,
      ...(args.disk !== undefined ? { disk: args.disk } : {}),
      dbCertificates: keys.dbs.map((c) => c.file),
    };
    this.dbCertificateSha256s = pulumi.output(keys.dbs.map((c) => c.sha256));
    this.diskSha256 = pulumi.output(disk.sha256);
    this.registerOutputs({
      selfLink: this.selfLink,
      dbCertificateSha256s: this.dbCertificateSha256s,
      diskSha256: this.diskSha256,
    });
  }
}
