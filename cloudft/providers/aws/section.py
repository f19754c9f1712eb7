"""The `aws:` section of a job spec (validated only when `--provider aws` is used).

Keys shared with the Pulumi stack outputs keep the stack's names (`region`, `role_arn`, `bucket`, ...), so
`--stack NAME` can fill them; values written in the spec win over the stack's.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .images import DEFAULT_TRANSFORMERS, HF_TRAINING_IMAGES

#: Keys the infra stack exports under the same names (see cloudft.infra.outputs).
STACK_KEYS = ("region", "role_arn", "pipeline_role_arn", "bucket", "prefix", "kms_key_arn", "subnets",
              "security_group_ids",
              "repository_url", "image_uri", "workteam_arn", "endpoint_name")


class AwsSection(BaseModel):
    """AWS settings of a job spec."""

    model_config = ConfigDict(extra="forbid")

    # -- shared with the stack outputs --------------------------------------------------------
    region: Optional[str] = Field(None, description="AWS region (default: the AWS profile's region).")
    role_arn: Optional[str] = Field(None, description="SageMaker execution role ARN.")
    pipeline_role_arn: Optional[str] = Field(None, description="Role of multi-stage SageMaker pipelines "
                                                                "(default: role_arn).")
    bucket: Optional[str] = Field(None, description="S3 bucket for data, code, checkpoints and outputs.")
    prefix: str = Field("cloudft", description="Key prefix inside the bucket.")
    kms_key_arn: Optional[str] = Field(None, description="KMS key for S3 outputs, volumes and endpoints.")
    subnets: list[str] = Field(default_factory=list, description="VPC subnets for training and endpoints.")
    security_group_ids: list[str] = Field(default_factory=list)
    repository_url: Optional[str] = Field(None, description="ECR repository of the train_entry image.")
    image_uri: Optional[str] = Field(None, description="Custom training image (built from train_entry/Dockerfile).")
    workteam_arn: Optional[str] = None
    endpoint_name: Optional[str] = Field(None, description="Default endpoint name for `cloudft deploy`.")
    # -- provider-only ----------------------------------------------------------------------
    transformers_version: str = Field(DEFAULT_TRANSFORMERS, description="Hugging Face training DLC version.")
    max_wait_hours: Optional[float] = Field(None, gt=0, le=28 * 24,
                                            description="Spot: longest wait incl. interruptions (> runtime).")
    network_isolation: bool = False
    inter_container_encryption: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    retry_mode: Literal["standard", "adaptive"] = Field("standard", description="botocore retry mode.")
    max_attempts: int = Field(8, ge=1, le=20, description="botocore attempts per API call.")
    telemetry: bool = Field(False, description="Let the SageMaker SDK send its usage telemetry.")
    deploy_instance_type: str = Field("ml.g5.2xlarge", description="Endpoint instance for `cloudft deploy`.")
    serving_image_uri: Optional[str] = Field(None, description="Serving image (default: the HF vLLM DLC).")

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, values: object) -> object:
        if isinstance(values, dict) and "instance_count" in values:
            raise ValueError("aws.instance_count is not a setting: set compute.instance_count (one instance count "
                             "for every provider)")
        return values

    @field_validator("transformers_version")
    @classmethod
    def _known_version(cls, v: str) -> str:
        if v not in HF_TRAINING_IMAGES:
            raise ValueError(f"no Hugging Face training image for transformers {v}; "
                             f"known: {', '.join(HF_TRAINING_IMAGES)}")
        return v

    @field_validator("role_arn", "pipeline_role_arn")
    @classmethod
    def _role(cls, v: Optional[str]) -> Optional[str]:
        if v and not v.startswith("arn:aws"):
            raise ValueError("role_arn must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        return v

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: Optional[str]) -> Optional[str]:
        if v and (v.startswith("s3://") or "/" in v):
            raise ValueError("bucket is a bucket name, not a URI (put key paths in 'prefix')")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return v.strip("/")

    def s3(self, *parts: str) -> str:
        """s3://bucket/prefix/parts... (no trailing slash)."""
        keys = [p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/")]
        return f"s3://{self.bucket or '<aws.bucket>'}/" + "/".join(keys)
