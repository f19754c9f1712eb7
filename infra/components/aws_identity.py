"""Least-privilege SageMaker execution role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws

from . import iam


@dataclass
class AwsAccount:
    """Where the stack runs; ARNs are built from these."""

    account_id: pulumi.Input[str]
    region: pulumi.Input[str]
    partition: pulumi.Input[str] = "aws"

    def arn(self, service: str, resource: str, *, region: bool = True) -> pulumi.Output[str]:
        parts = pulumi.Output.all(self.partition, self.region if region else "", self.account_id)
        return parts.apply(lambda p: f"arn:{p[0]}:{service}:{p[1]}:{p[2]}:{resource}")


@dataclass
class RoleScope:
    """What the SageMaker execution role may touch."""

    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    prefix: str = ""
    repository_arns: Sequence[pulumi.Input[str]] = field(default_factory=list)
    secret_arns: Sequence[str] = field(default_factory=list)
    subnets: Sequence[str] = field(default_factory=list)
    security_group_ids: Sequence[str] = field(default_factory=list)


KMS_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
               "kms:DescribeKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
#: Grants only for AWS services acting for the role (the training volume), never to a principal code in the job
#: names (AWS KMS Developer Guide, conditions-kms.html#conditions-kms-grant-is-for-aws-resource).
KMS_GRANT_CONDITION = {"Bool": {"kms:GrantIsForAWSResource": "true"}}
#: The jobs a SageMaker pipeline starts for its training steps are named `pipelines-<execution>-<step>-...`.
PIPELINE_JOB_ACTIONS = ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                        "sagemaker:AddTags"]
S3_OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                     "s3:ListMultipartUploadParts"]
ECR_PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
LOG_ACTIONS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
VPC_DESCRIBE_ACTIONS = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions",
                        "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"]


def execution_statements(account: AwsAccount, scope: RoleScope) -> list[dict[str, Any]]:
    """The policy statements of the execution role (no wildcard action; `*` resource only where documented)."""
    prefix = scope.prefix.strip("/")
    objects = pulumi.Output.from_input(scope.bucket_arn).apply(
        lambda arn: f"{arn}/{prefix}/*" if prefix else f"{arn}/*")
    list_condition = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}} if prefix else None
    logs = "log-group:/aws/sagemaker/*"
    sts = [
        iam.statement("BucketList", ["s3:ListBucket"], [scope.bucket_arn], condition=list_condition),
        iam.statement("BucketLocation", ["s3:GetBucketLocation"], [scope.bucket_arn]),
        iam.statement("BucketObjects", S3_OBJECT_ACTIONS, [objects]),
        iam.statement("KmsUse", KMS_ACTIONS, [scope.kms_key_arn]),
        iam.statement("KmsGrantForAwsServices", ["kms:CreateGrant"], [scope.kms_key_arn],
                      condition=KMS_GRANT_CONDITION),
        iam.statement("SageMakerLogs", LOG_ACTIONS, [account.arn("logs", logs),
                                                     account.arn("logs", f"{logs}:log-stream:*")]),
        # Documented exception: CloudWatch metrics have no resource ARNs; the namespace condition narrows it.
        iam.statement("SageMakerMetrics", ["cloudwatch:PutMetricData"], ["*"],
                      condition={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}}),
    ]
    if scope.repository_arns:
        sts.append(iam.statement("EcrPull", ECR_PULL_ACTIONS, list(scope.repository_arns)))
        # Documented exception: the registry login token is account-wide.
        sts.append(iam.statement("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]))
    if scope.secret_arns:
        sts.append(iam.statement("ReadNamedSecrets", ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                 list(scope.secret_arns)))
    if scope.subnets:
        eni = account.arn("ec2", "network-interface/*")
        subnet_arns = [account.arn("ec2", f"subnet/{s}") for s in scope.subnets]
        sg_arns = [account.arn("ec2", f"security-group/{g}") for g in scope.security_group_ids]
        sts += [
            # Documented exception: EC2 Describe* calls support no resource-level permissions.
            iam.statement("VpcDescribe", VPC_DESCRIBE_ACTIONS, ["*"]),
            iam.statement("VpcInterfaces", ["ec2:CreateNetworkInterface"], [eni, *subnet_arns, *sg_arns]),
            iam.statement("VpcInterfaceLifecycle", ["ec2:CreateNetworkInterfacePermission",
                                                    "ec2:DeleteNetworkInterface",
                                                    "ec2:DeleteNetworkInterfacePermission"], [eni]),
        ]
    return sts


def pipeline_statements(account: AwsAccount, execution_role_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """What a SageMaker pipeline's role needs to run training steps (SageMaker Developer Guide,
    build-and-manage-access.html): create/describe/stop their jobs and pass them the execution role."""
    return [
        iam.statement("PipelineTrainingJobs", PIPELINE_JOB_ACTIONS,
                      [account.arn("sagemaker", "training-job/pipelines-*")]),
        iam.statement("PassExecutionRole", ["iam:PassRole"], [execution_role_arn],
                      condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
    ]


class SageMakerExecutionRole(pulumi.ComponentResource):
    """An IAM role trusted by sagemaker.amazonaws.com (this account only), with an inline least-privilege policy:
    S3 on one bucket/prefix, KMS use of one key, ECR pull of named repositories, SageMaker CloudWatch Logs,
    Secrets Manager read of named secrets, and ENI management when the jobs run in a VPC.

    `allow(name, statements)` adds another inline policy (e.g. invoking the labeling Lambda).
    Outputs: `role_arn`, `role_name`.
    """

    def __init__(self, name: str, *, account: AwsAccount, scope: Optional[RoleScope] = None,
                 statements: Optional[Sequence[dict[str, Any]]] = None, suffix: str = "execution",
                 description: str = "cloudft SageMaker execution role",
                 tags: Optional[dict[str, str]] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:aws:SageMakerExecutionRole", name, None, opts)
        self._name = name
        self.trust = iam.service_trust("sagemaker.amazonaws.com", account.account_id)
        self.documents: list[pulumi.Output[str]] = []
        self.role = aws.iam.Role(f"{name}-role", description=description, assume_role_policy=self.trust,
                                 max_session_duration=12 * 3600, tags=tags,
                                 opts=pulumi.ResourceOptions(parent=self))
        self.policy = self.allow(suffix, list(statements) if statements is not None
                                 else execution_statements(account, scope))
        self.role_arn = self.role.arn
        self.role_name = self.role.name
        self.register_outputs({"role_arn": self.role_arn, "role_name": self.role_name})

    def allow(self, suffix: str, statements: Sequence[dict[str, Any]]) -> aws.iam.RolePolicy:
        """Attach one more inline policy made of `statements` to the role."""
        document = iam.document(statements)
        self.documents.append(document)
        return aws.iam.RolePolicy(f"{self._name}-{suffix}", role=self.role.id, policy=document,
                                  opts=pulumi.ResourceOptions(parent=self))

    def described(self) -> pulumi.Output[dict[str, Any]]:
        """{arn, trust, policies}: what `--stack` tells cloudft's preflight and dry run about this role."""
        return iam.described(self.role.arn, self.trust, self.documents)
