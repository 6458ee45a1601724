// An AMI of the kit's cloud disk (`buckypaper image build --cloud ec2 --sign-key … --sign-cert …`) that boots it
// under the customer's Secure Boot keys: the raw disk uploaded to an S3 bucket the program names, imported as an
// EBS snapshot (VM Import, which needs the `vmimport` service role), registered as a UEFI AMI with NitroTPM
// (TpmSupport v2.0) and ENA, and its UEFI variable store (`uefiData`) holding the customer's PK, KEK and db with
// Secure Boot on — so the firmware starts only a UKI one of the db certificates signed. `bootChain` carries the
// same manifest, disk and db certificates to AwsConfidentialVm (`kitImage`), which predicts and registers the
// measured-boot policy from them: the certificate enrolled and the authority registered are one input.
import * as pulumi from "@pulumi/pulumi";
import * as aws from "@pulumi/aws";
import type { BootChainArgs } from "../common/boot-chain.js";
import { ConfigError } from "../common/errors.js";
import {
  dbSetTag,
  kitDiskManifest,
  readKitDisk,
  readSecureBootKeys,
  type KitImageRef,
  type SecureBootKeysArgs,
} from "../common/kit-image.js";
import { awsUefiData } from "./uefi-data.js";

export interface AwsKitImageArgs extends SecureBootKeysArgs {
  /** manifest.json of `buckypaper image build --cloud ec2` with a signed disk (`--sign-key/--sign-cert`). */
  manifest: string;
  /** The raw disk file, when it is not at the manifest's `disk.path`; its SHA-256 must be the manifest's. */
  disk?: string;
  /** An existing S3 bucket (same region) the disk is uploaded to; VM Import reads it from there. */
  bucket: pulumi.Input<string>;
  /** Object key prefix (default `buckypaper/`); the key ends in the disk's SHA-256. */
  keyPrefix?: string;
  /** VM Import's service role (default `vmimport`, which AWS requires to exist with read access to the bucket). */
  importRoleName?: pulumi.Input<string>;
  /** KMS key for the snapshot (and so the AMI's volumes); default EBS's AWS-managed key. Always encrypted. */
  kmsKeyId?: pulumi.Input<string>;
  tags?: Record<string, pulumi.Input<string>>;
}

/** The AMI's registration arguments as a pure function (asserted by tests against @pulumi/aws's types). */
export function awsKitAmiArgs(i: {
  name: string;
  snapshotId: pulumi.Input<string>;
  uefiData: string;
  description: string;
  tags: Record<string, pulumi.Input<string>>;
}): aws.ec2.AmiArgs {
  return {
    name: i.name,
    description: i.description,
    virtualizationType: "hvm",
    architecture: "x86_64",
    // SEV-SNP instances boot UEFI only; `uefi` (not uefi-preferred) so the AMI can never be booted legacy.
    bootMode: "uefi",
    // NitroTPM: the vTPM the workload's OS binding quotes (the AMI enables it, not the instance).
    tpmSupport: "v2.0",
    enaSupport: true,
    imdsSupport: "v2.0",
    rootDeviceName: "/dev/xvda",
    ebsBlockDevices: [
      { deviceName: "/dev/xvda", snapshotId: i.snapshotId, volumeType: "gp3", deleteOnTermination: true },
    ],
    uefiData: i.uefiData,
    tags: i.tags,
  };
}

export class AwsKitImage extends pulumi.ComponentResource implements KitImageRef {
  /** The AMI id: give this component to AwsConfidentialVm as `kitImage` (or its id as `ami`). */
  public readonly amiId: pulumi.Output<string>;
  public readonly imageId: pulumi.Output<string>;
  /** What AwsConfidentialVm predicts the boot chain from: this image's manifest, disk and enrolled db certificates. */
  public readonly bootChain: BootChainArgs;
  /** The cloud the disk was built for (ec2). */
  public readonly cloud: string = "ec2";
  /** SHA-256 (hex) of the enrolled db certificates (DER): the Secure Boot authorities a workload registers. */
  public readonly dbCertificateSha256s: pulumi.Output<string[]>;
  /** SHA-256 of the uploaded disk (the manifest's). */
  public readonly diskSha256: pulumi.Output<string>;

  constructor(name: string, args: AwsKitImageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:AwsKitImage", name, {}, opts);
    const who = `AwsKitImage ${name}`;
    if (args.bucket === undefined || args.bucket === "")
      throw new ConfigError(who, "bucket", "is required: the S3 bucket VM Import reads the disk from");
    const keys = readSecureBootKeys(who, args);
    const m = kitDiskManifest(who, "ec2", args.manifest, keys.dbs);
    const disk = m.disk!;
    const uefiData = awsUefiData(who, keys);
    // The file is checked against the manifest before anything is uploaded (a rejected promise fails the update).
    const checked = pulumi.output(readKitDisk(who, "ec2", args.manifest, args.disk, keys.dbs));
    const tags = { "buckypaper:disk-sha256": disk.sha256, ...args.tags };
    const key = `${args.keyPrefix ?? "buckypaper/"}${name}-${disk.sha256}.raw`;
    const object = new aws.s3.BucketObjectv2(
      `${name}-disk`,
      {
        bucket: args.bucket,
        key,
        source: checked.apply((d) => new pulumi.asset.FileAsset(d.diskPath)),
        contentType: "application/octet-stream",
        tags,
      },
      { parent: this },
    );
    const snapshot = new aws.ebs.SnapshotImport(
      `${name}-snapshot`,
      {
        diskContainer: { format: "RAW", userBucket: { s3Bucket: object.bucket, s3Key: object.key } },
        description: `buckypaper kit disk ${disk.sha256}`,
        encrypted: true,
        ...(args.kmsKeyId !== undefined ? { kmsKeyId: args.kmsKeyId } : {}),
        ...(args.importRoleName !== undefined ? { roleName: args.importRoleName } : {}),
        tags,
      },
      { parent: this },
    );
    const ami = new aws.ec2.Ami(
      `${name}-ami`,
      awsKitAmiArgs({
        name: `${name}-${disk.sha256.slice(0, 16)}-${dbSetTag(keys.dbs)}`,
        snapshotId: snapshot.id,
        uefiData,
        description: `buckypaper kit disk ${disk.sha256}, UKI signed by ${disk.signature!.subject}`,
        tags,
      }),
      { parent: this },
    );
    this.amiId = ami.id;
    this.imageId = ami.id;
    this.bootChain = {
      manifest: args.manifest,
      ...(args.disk !== undefined ? { disk: args.disk } : {}),
      dbCertificates: keys.dbs.map((c) => c.file),
    };
    this.dbCertificateSha256s = pulumi.output(keys.dbs.map((c) => c.sha256));
    this.diskSha256 = pulumi.output(disk.sha256);
    this.registerOutputs({
      amiId: this.amiId,
      dbCertificateSha256s: this.dbCertificateSha256s,
      diskSha256: this.diskSha256,
    });
  }
}
