"""The `infra/aws` program: storage, identity, registry, optional labeling and serving, and the stack outputs that
`cloudft submit --provider aws --stack NAME` reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from cloudft.infra.contract import AWS_OUTPUT_KEYS

from .aws_identity import AwsAccount, RoleScope, SageMakerExecutionRole, pipeline_statements
from .aws_labeling import LabelingWorkforce
from .aws_registry import ImageRepository
from .aws_serving import AdapterEndpoint
from .aws_storage import SecureBucket
from .settings import ConfigReader, resolve_dir, safe_name

DEFAULT_CONSOLIDATION_DIR = "templates/ground_truth/consolidation"


@dataclass
class LabelingSettings:
    enabled: bool = False
    create_workforce: bool = True
    workforce_name: str = "default"
    domain_prefix: Optional[str] = None
    user_group: str = "raters"
    consolidation_dir: Optional[Path] = None


@dataclass
class ServingSettings:
    enabled: bool = False
    image: str = ""
    model_data_url: Optional[str] = None
    base_model: Optional[str] = None
    lora_rank: int = 16
    instance_type: str = "ml.g5.2xlarge"
    instance_count: int = 1
    environment: dict[str, str] = field(default_factory=dict)
    endpoint_name: Optional[str] = None


@dataclass
class AwsStackSettings:
    """Everything the AWS program reads from `Pulumi.<stack>.yaml` (see docs/infra.md)."""

    name: str = "cloudft"
    prefix: str = "cloudft"
    checkpoint_prefixes: list[str] = field(default_factory=list)
    checkpoint_expiration_days: int = 30
    noncurrent_expiration_days: int = 30
    force_destroy: bool = False
    secret_arns: list[str] = field(default_factory=list)
    subnets: list[str] = field(default_factory=list)
    security_group_ids: list[str] = field(default_factory=list)
    pull_repository_arns: list[str] = field(default_factory=list)
    image_tag: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    labeling: LabelingSettings = field(default_factory=LabelingSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)

    def __post_init__(self) -> None:
        self.prefix = self.prefix.strip("/")
        if not self.checkpoint_prefixes:
            self.checkpoint_prefixes = [f"{self.prefix}/checkpoints/" if self.prefix else "checkpoints/"]
        if self.serving.enabled and not self.serving.image:
            raise ValueError("cloudft:serving.image is required when serving is enabled")
        if self.subnets and not self.security_group_ids:
            raise ValueError("cloudft:securityGroupIds is required with cloudft:subnets")

    @classmethod
    def from_config(cls, config: Any, stack: str = "dev") -> "AwsStackSettings":
        """Settings from a `pulumi.Config("cloudft")`-like object."""
        c = ConfigReader(config)
        lab, srv = c.section("labeling"), c.section("serving")
        return cls(
            name=safe_name(c.get("name", f"cloudft-{stack}"), 24),
            prefix=c.get("prefix", "cloudft"),
            checkpoint_prefixes=list(c.get("checkpointPrefixes", [])),
            checkpoint_expiration_days=int(c.get("checkpointExpirationDays", 30)),
            noncurrent_expiration_days=int(c.get("noncurrentExpirationDays", 30)),
            force_destroy=bool(c.get("forceDestroy", False)),
            secret_arns=list(c.get("secretArns", [])),
            subnets=list(c.get("subnets", [])),
            security_group_ids=list(c.get("securityGroupIds", [])),
            pull_repository_arns=list(c.get("pullRepositoryArns", [])),
            image_tag=c.get("imageTag"),
            tags=dict(c.get("tags", {})),
            labeling=LabelingSettings(
                enabled=bool(lab.get("enabled", False)),
                create_workforce=bool(lab.get("createWorkforce", True)),
                workforce_name=lab.get("workforceName", "default"),
                domain_prefix=lab.get("domainPrefix"),
                user_group=lab.get("userGroup", "raters"),
                consolidation_dir=resolve_dir(lab.get("consolidationDir"), DEFAULT_CONSOLIDATION_DIR)),
            serving=ServingSettings(
                enabled=bool(srv.get("enabled", False)), image=srv.get("image", ""),
                model_data_url=srv.get("modelDataUrl"), base_model=srv.get("baseModel"),
                lora_rank=int(srv.get("loraRank", 16)), instance_type=srv.get("instanceType", "ml.g5.2xlarge"),
                instance_count=int(srv.get("instanceCount", 1)),
                environment={str(k): str(v) for k, v in dict(srv.get("environment", {})).items()},
                endpoint_name=srv.get("endpointName")),
        )


def serving_environment(srv: ServingSettings) -> dict[str, str]:
    """The serving container's environment: with `base_model`, the same vLLM LoRA settings `cloudft deploy` uses
    (`cloudft.providers.aws.deploy.container_env`), then `environment` on top."""
    env: dict[str, str] = {}
    if srv.base_model:
        from cloudft.providers.aws.deploy import container_env

        env.update(container_env(srv.base_model, srv.lora_rank))
    env.update(srv.environment)
    return env


def build_aws_stack(settings: AwsStackSettings) -> dict[str, Any]:
    """Declare the AWS resources; returns the stack outputs (keys `AWS_OUTPUT_KEYS`, plus a few extras)."""
    tags = {"managed-by": "cloudft", **settings.tags}
    account = AwsAccount(account_id=aws.get_caller_identity_output().account_id,
                         region=aws.get_region_output().region,
                         partition=aws.get_partition_output().partition)
    name = settings.name
    storage = SecureBucket(name, checkpoint_prefixes=settings.checkpoint_prefixes,
                           checkpoint_expiration_days=settings.checkpoint_expiration_days,
                           noncurrent_expiration_days=settings.noncurrent_expiration_days,
                           force_destroy=settings.force_destroy, tags=tags)
    registry = ImageRepository(name, kms_key_arn=storage.kms_key_arn, force_delete=settings.force_destroy, tags=tags)
    role = SageMakerExecutionRole(name, account=account, tags=tags, scope=RoleScope(
        bucket_arn=storage.bucket_arn, kms_key_arn=storage.kms_key_arn, prefix=settings.prefix,
        repository_arns=[registry.repository_arn, *settings.pull_repository_arns],
        secret_arns=settings.secret_arns, subnets=settings.subnets,
        security_group_ids=settings.security_group_ids))
    pipeline = SageMakerExecutionRole(f"{name}-pipeline", account=account, tags=tags, suffix="steps",
                                      statements=pipeline_statements(account, role.role_arn),
                                      description="cloudft SageMaker pipeline role (starts the steps' jobs)")
    outputs: dict[str, Any] = {
        "region": account.region, "role_arn": role.role_arn, "pipeline_role_arn": pipeline.role_arn,
        "bucket": storage.bucket_name,
        "prefix": settings.prefix, "kms_key_arn": storage.kms_key_arn, "subnets": list(settings.subnets),
        "security_group_ids": list(settings.security_group_ids), "repository_url": registry.repository_url,
        "image_uri": (pulumi.Output.concat(registry.repository_url, ":", settings.image_tag)
                      if settings.image_tag else None),
        "workteam_arn": None, "endpoint_name": None,
    }
    lab = settings.labeling
    if lab.enabled:
        domain = lab.domain_prefix or pulumi.Output.from_input(account.account_id).apply(
            lambda acct: f"{name}-labeling-{acct}")
        labeling = LabelingWorkforce(name, account=account, bucket_arn=storage.bucket_arn, prefix=settings.prefix,
                                     kms_key_arn=storage.kms_key_arn, domain_prefix=domain,
                                     consolidation_dir=lab.consolidation_dir,
                                     create_workforce=lab.create_workforce, workforce_name=lab.workforce_name,
                                     user_group=lab.user_group, tags=tags)
        invoke = labeling.invoke_statements()
        if invoke:
            role.allow("labeling", invoke)

        outputs["workteam_arn"] = labeling.workteam_arn
        outputs["user_pool_id"] = labeling.user_pool_id
        outputs["consolidation_lambda_arn"] = labeling.consolidation_lambda_arn
    srv = settings.serving
    if srv.enabled:
        endpoint = AdapterEndpoint(name, role_arn=role.role_arn, image=srv.image, model_data_url=srv.model_data_url,
                                   instance_type=srv.instance_type, instance_count=srv.instance_count,
                                   kms_key_arn=storage.kms_key_arn, environment=serving_environment(srv),
                                   endpoint_name=srv.endpoint_name, subnets=settings.subnets,
                                   security_group_ids=settings.security_group_ids, tags=tags)
        outputs["endpoint_name"] = endpoint.endpoint_name
    roles: dict[str, Any] = {"execution": role.described(), "pipeline": pipeline.described()}
    if lab.enabled and labeling.consolidation_lambda is not None:
        roles["consolidation"] = labeling.consolidation_described()
    outputs["iam_policies"] = pulumi.Output.all(**roles)  # what --stack tells preflight and the dry run
    assert set(AWS_OUTPUT_KEYS) <= set(outputs), "every contract key is exported"
    return outputs
