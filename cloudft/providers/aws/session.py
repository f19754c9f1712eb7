"""boto3 / SageMaker sessions for the AWS provider.

- Retries: botocore's `standard` (or `adaptive`, client-side rate limiting) mode with `max_attempts` from
  the spec, so throttling and 5xx answers are retried with backoff.
- Endpoint override: botocore's own `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`) variables point
  every client at a local emulator (moto, LocalStack). When that endpoint is a loopback address, the one
  IAM call such emulators lack (`iam:SimulatePrincipalPolicy`, which the SageMaker SDK uses to pre-check
  the execution role) is answered locally with "allowed" (after the role itself was looked up for real);
  against real AWS nothing is changed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlparse

if TYPE_CHECKING:
    import boto3

    from .section import AwsSection

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def endpoint_url() -> Optional[str]:
    """The endpoint override in effect (botocore's `AWS_ENDPOINT_URL`), if any."""
    return os.environ.get("AWS_ENDPOINT_URL") or None


def is_local_endpoint(url: Optional[str] = None) -> bool:
    """True when AWS calls go to an emulator on this machine."""
    url = url if url is not None else endpoint_url()
    return bool(url) and (urlparse(url).hostname or "") in LOOPBACK


def client_config(section: "AwsSection"):
    """botocore Config with the spec's retry mode and attempts."""
    from botocore.config import Config

    return Config(retries={"mode": section.retry_mode, "max_attempts": section.max_attempts},
                  user_agent_extra="cloudft")


def _simulate_allowed(params: dict[str, Any], **_: Any):
    """Answer iam:SimulatePrincipalPolicy with "allowed" for every action asked (emulators only)."""
    from botocore.awsrequest import AWSResponse

    body = params.get("body") or {}
    actions = [v for k, v in sorted(body.items()) if k.startswith("ActionNames.member.")]
    result = {"EvaluationResults": [{"EvalActionName": a, "EvalResourceName": "*", "EvalDecision": "allowed"}
                                    for a in actions], "IsTruncated": False}
    return AWSResponse(params.get("url", ""), 200, {}, None), result


def boto_session(section: "AwsSection") -> "boto3.Session":
    """A boto3 session for the spec's region, with the retry config applied to every client it makes."""
    import boto3

    session = boto3.Session(region_name=section.region) if section.region else boto3.Session()
    if session.region_name is None:
        from ...errors import CloudftError

        raise CloudftError("no AWS region", hint="set aws.region in the spec, AWS_DEFAULT_REGION, or use --stack")
    session._session.set_default_client_config(client_config(section))
    if is_local_endpoint():
        session.events.register("before-call.iam.SimulatePrincipalPolicy", _simulate_allowed)
    return session


def sagemaker_session(section: "AwsSection", boto: "boto3.Session", pipeline: bool = False):
    """A SageMaker SDK Session (or PipelineSession) on `boto`, staging into the spec's bucket."""
    config = {"SchemaVersion": "1.0",
              "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": not section.telemetry}}}}
    if pipeline:
        from sagemaker.core.workflow.pipeline_context import PipelineSession

        return PipelineSession(boto_session=boto, default_bucket=section.bucket, sagemaker_config=config,
                               default_bucket_prefix=section.prefix or None)
    from sagemaker.core.helper.session_helper import Session

    return Session(boto_session=boto, default_bucket=section.bucket, sagemaker_config=config,
                   default_bucket_prefix=section.prefix or None)


def import_pipeline_api(region: str):
    """Import sagemaker-mlops' Pipeline/TrainingStep.

    Importing `sagemaker.mlops` creates a boto3 client at import time (sagemaker.ai_registry), which fails
    without a default region; the spec's region is used as that default for the import.
    """
    import importlib

    unset = "AWS_DEFAULT_REGION" not in os.environ and "AWS_REGION" not in os.environ
    if unset:
        os.environ["AWS_DEFAULT_REGION"] = region
    try:
        pipeline = importlib.import_module("sagemaker.mlops.workflow.pipeline")
        steps = importlib.import_module("sagemaker.mlops.workflow.steps")
    finally:
        if unset:
            os.environ.pop("AWS_DEFAULT_REGION", None)
    return pipeline.Pipeline, steps.TrainingStep
