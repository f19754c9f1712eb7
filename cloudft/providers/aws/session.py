"""boto3 / SageMaker sessions for the AWS provider.

- Retries: botocore's `standard` (or `adaptive`, client-side rate limiting) mode with `max_attempts` from
  the spec, so throttling and 5xx answers are retried with backoff.
- Endpoint override: botocore's own `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`) variables point
  every client at a local emulator (moto, LocalStack). When that endpoint is a loopback address, the one
  IAM call such emulators lack (`iam:SimulatePrincipalPolicy`) is answered by evaluating the role's own
  policies, read from the emulator (cloudft.providers.aws.iam_eval): a missing permission is denied there
  as in IAM. Against real AWS nothing is changed.
- Uploads: the SDK's staging (`Session.upload_data`) skips `__pycache__` and `*.pyc` (its own driver folder
  ships bytecode from the installed package).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Iterator, Optional
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


class _LocalSimulator:
    """iam:SimulatePrincipalPolicy for emulators that lack it: the role's inline and attached policies, read from
    the emulator, evaluated by cloudft.providers.aws.iam_eval (the request's own parameters, kept per thread)."""

    def __init__(self, session: "boto3.Session"):
        self.session = session
        self.last = threading.local()

    def keep(self, params: dict[str, Any], **_: Any) -> None:
        self.last.params = dict(params)

    def policies(self, role_arn: str) -> list[Any]:
        from .rolecheck import role_name

        iam = self.session.client("iam")
        name = role_name(role_arn)
        docs: list[Any] = [iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
                           for p in iam.list_role_policies(RoleName=name)["PolicyNames"]]
        for att in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            pol = iam.get_policy(PolicyArn=att["PolicyArn"])["Policy"]
            docs.append(iam.get_policy_version(PolicyArn=att["PolicyArn"],
                                               VersionId=pol["DefaultVersionId"])["PolicyVersion"]["Document"])
        return docs

    def answer(self, params: dict[str, Any], **_: Any):
        from botocore.awsrequest import AWSResponse

        from .rolecheck import simulate_response

        asked = getattr(self.last, "params", {}) or {}
        result = simulate_response(self.policies(asked["PolicySourceArn"]), asked)
        return AWSResponse(params.get("url", ""), 200, {}, None), result


@contextlib.contextmanager
def sdk_role_check_off() -> Iterator[None]:
    """Turn off the SageMaker SDK's own role validation while a ModelTrainer is built (its only switch is the
    SAGEMAKER_VALIDATE_ROLE variable, read by sagemaker-core's resolve_and_validate_role); cloudft runs its own."""
    before = os.environ.get("SAGEMAKER_VALIDATE_ROLE")
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SAGEMAKER_VALIDATE_ROLE", None)
        else:
            os.environ["SAGEMAKER_VALIDATE_ROLE"] = before


def boto_session(section: "AwsSection") -> "boto3.Session":
    """A boto3 session for the spec's region, with the retry config applied to every client it makes."""
    import boto3

    session = boto3.Session(region_name=section.region) if section.region else boto3.Session()
    if session.region_name is None:
        from ...errors import CloudftError

        raise CloudftError("no AWS region", hint="set aws.region in the spec, AWS_DEFAULT_REGION, or use --stack")
    session._session.set_default_client_config(client_config(section))
    if is_local_endpoint():
        simulator = _LocalSimulator(session)
        session.events.register_last("before-parameter-build.iam.SimulatePrincipalPolicy", simulator.keep)
        session.events.register("before-call.iam.SimulatePrincipalPolicy", simulator.answer)
    return session


def _without_bytecode(cls):
    """A subclass of the SDK's Session whose uploads leave out __pycache__ and *.pyc."""

    class Session(cls):  # type: ignore[misc, valid-type]
        def upload_data(self, path, *args, **kwargs):
            if os.path.isdir(path):
                tmp = tempfile.mkdtemp(prefix="cloudft-upload-")
                try:
                    clean = os.path.join(tmp, os.path.basename(os.path.normpath(path)))
                    shutil.copytree(path, clean, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                    return super().upload_data(clean, *args, **kwargs)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            return super().upload_data(path, *args, **kwargs)

    Session.__name__ = Session.__qualname__ = f"Clean{cls.__name__}"
    return Session


def sagemaker_session(section: "AwsSection", boto: "boto3.Session", pipeline: bool = False):
    """A SageMaker SDK Session (or PipelineSession) on `boto`, staging into the spec's bucket."""
    config = {"SchemaVersion": "1.0",
              "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": not section.telemetry}}}}
    if pipeline:
        from sagemaker.core.workflow.pipeline_context import PipelineSession

        return _without_bytecode(PipelineSession)(boto_session=boto, default_bucket=section.bucket,
                                                  sagemaker_config=config,
                                                  default_bucket_prefix=section.prefix or None)
    from sagemaker.core.helper.session_helper import Session

    return _without_bytecode(Session)(boto_session=boto, default_bucket=section.bucket, sagemaker_config=config,
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
