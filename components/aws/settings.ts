// The EC2 settings of an SEV-SNP instance, as a pure function of resolved inputs so they can be
// asserted without a cloud. Facts: AWS EC2 User Guide "AMD SEV-SNP for Amazon EC2 instances"
// (instance families m6a/c6a/r6a, regions us-east-2 and eu-west-1, UEFI AMIs; enabled only at launch).
import type * as pulumi from "@pulumi/pulumi";
import type * as aws from "@pulumi/aws";

export interface AwsInstanceInputs {
  ami: pulumi.Input<string>;
  instanceType: string;
  userData: pulumi.Input<string>;
  rootVolumeSizeGb: number;
  subnetId?: pulumi.Input<string>;
  securityGroupIds?: pulumi.Input<pulumi.Input<string>[]>;
  keyName?: pulumi.Input<string>;
  tags: Record<string, pulumi.Input<string>>;
}

export function awsInstanceArgs(i: AwsInstanceInputs): aws.ec2.InstanceArgs {
  return {
    ami: i.ami,
    instanceType: i.instanceType,
    // SEV-SNP can only be switched on at launch; the report is VLEK-signed on shared tenancy.
    cpuOptions: { amdSevSnp: "enabled" },
    // IMDSv2 only, one hop: containers on the guest cannot reach the metadata service.
    metadataOptions: {
      httpEndpoint: "enabled",
      httpTokens: "required",
      httpPutResponseHopLimit: 1,
      instanceMetadataTags: "disabled",
    },
    rootBlockDevice: { encrypted: true, volumeType: "gp3", volumeSize: i.rootVolumeSizeGb, deleteOnTermination: true },
    userData: i.userData,
    // The expected measurement and the workload id are baked into user-data: change means a new VM.
    userDataReplaceOnChange: true,
    subnetId: i.subnetId,
    vpcSecurityGroupIds: i.securityGroupIds,
    keyName: i.keyName,
    tags: i.tags,
  };
}
