"""The AWS run handle: what `cloudft status/logs/stop/artifacts/deploy` need to find a SageMaker run again."""

from __future__ import annotations

from typing import Literal, Optional

from ...handles import RunHandle


class AwsHandle(RunHandle):
    """A SageMaker training job (`kind: job`) or pipeline execution (`kind: pipeline`) and its settings."""

    kind: Literal["job", "pipeline"]
    region: str
    bucket: Optional[str] = None
    role_arn: Optional[str] = None
    kms_key_arn: Optional[str] = None
    jobs: tuple[str, ...] = ()
    pipeline: Optional[str] = None
    steps: tuple[str, ...] = ()
    output_uri: Optional[str] = None
    deploy_instance_type: Optional[str] = None
    serving_image_uri: Optional[str] = None
    endpoint_name: Optional[str] = None
    adopted: bool = False
