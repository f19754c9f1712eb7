"""`--dry-run`: run the real submit code on a boto3 session that records every request instead of sending it.

Each request is recorded as `{"service", "operation", "params"}` with the params exactly as the caller
gave them to boto3 (a `Body` stream shows as `"<N bytes>"`), then validated by botocore against the
service model before the (never sent) HTTP call. Answers: nothing exists yet, every upload succeeds. IAM is
never answered "yes" blindly: with `--stack`, iam:GetRole returns the stack's trust policy and
iam:SimulatePrincipalPolicy is evaluated against the stack's policy documents (iam_eval); without one, both are
answered AccessDenied, as IAM answers a caller that may not read the role, so the role checks report "not
verified". No AWS call, no credentials. Staging is real: the default image's wheelhouse is fetched with pip
unless `$CLOUDFT_HOME/wheelhouse` holds it already (wheelhouse.py), as the submit it previews would.
"""

from __future__ import annotations

import copy
import json
import datetime as _dt
import threading
from typing import Any, Optional
from urllib.parse import quote

FAKE_ACCOUNT = "000000000000"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if hasattr(value, "read"):
        size = _stream_size(value)
        return f"<{size} bytes>" if size is not None else "<stream>"
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return value


def _stream_size(stream: Any) -> Optional[int]:
    for attr in ("_size", "len"):
        if isinstance(getattr(stream, attr, None), int):
            return getattr(stream, attr)
    try:
        pos = stream.tell()
        stream.seek(0, 2)
        end = stream.tell()
        stream.seek(pos)
        return end - pos
    except Exception:  # noqa: BLE001 - a non-seekable stream: size unknown
        return None


def validate_request(service: str, operation: str, params: dict[str, Any]) -> None:
    """Raise botocore's ParamValidationError unless `params` fit the operation's input shape."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model(service)
    validate_parameters(params, model.operation_model(operation).input_shape)


def _error(code: str, message: str, status: int):
    from botocore.awsrequest import AWSResponse

    return AWSResponse("", status, {}, None), {"Error": {"Code": code, "Message": message},
                                                "ResponseMetadata": {"HTTPStatusCode": status}}


def _role(roles: dict[str, Any], arn_or_name: str) -> Optional[dict[str, Any]]:
    for role in roles.values():
        if isinstance(role, dict) and role.get("arn") and (role["arn"] == arn_or_name
                                                           or role["arn"].rsplit("/", 1)[-1] == arn_or_name):
            return role
    return None


def _answer(service: str, operation: str, body: dict[str, Any], last: dict[str, Any], region: str,
            roles: Optional[dict[str, Any]] = None):
    """A plausible answer for the calls the submit path makes."""
    from botocore.awsrequest import AWSResponse

    arn = f"arn:aws:sagemaker:{region}:{FAKE_ACCOUNT}"
    if operation in ("GetRole", "SimulatePrincipalPolicy"):
        role = _role(roles or {}, last.get("RoleName") or last.get("PolicySourceArn") or "")
        if role is None:
            return _error("AccessDenied", "dry run: this role's policies are unknown (pass --stack to evaluate the "
                          "stack's)", 403)
        if operation == "SimulatePrincipalPolicy":
            from .rolecheck import simulate_response

            answer = simulate_response(role.get("policies") or [], last)
        else:
            name = role["arn"].rsplit("/", 1)[-1]
            answer = {"Role": {"RoleName": name, "Arn": role["arn"], "Path": "/", "RoleId": "AROADRYRUN",
                               "CreateDate": _dt.datetime(2024, 1, 1),
                               "AssumeRolePolicyDocument": quote(json.dumps(role.get("trust") or {}))}}
        answer["ResponseMetadata"] = {"HTTPStatusCode": 200}
        return AWSResponse("", 200, {}, None), answer
    if operation in ("HeadObject", "DescribeTrainingJob", "DescribePipeline", "DescribePipelineExecution"):
        return _error("404" if service == "s3" else "ValidationException", "not found (dry run)",
                      404 if service == "s3" else 400)
    result: dict[str, Any] = {}
    if operation == "ListBuckets":
        result = {"Buckets": [{"Name": body.get("bucket", "")}]}
    elif operation == "GetCallerIdentity":
        result = {"Account": FAKE_ACCOUNT, "Arn": f"arn:aws:iam::{FAKE_ACCOUNT}:user/dry-run", "UserId": "DRYRUN"}
    elif operation == "CreateTrainingJob":
        result = {"TrainingJobArn": f"{arn}:training-job/{last.get('TrainingJobName', '')}"}
    elif operation in ("CreatePipeline", "UpdatePipeline"):
        result = {"PipelineArn": f"{arn}:pipeline/{last.get('PipelineName', '')}"}
    elif operation == "ListPipelineExecutions":
        result = {"PipelineExecutionSummaries": []}
    elif operation == "StartPipelineExecution":
        result = {"PipelineExecutionArn": f"{arn}:pipeline/{last.get('PipelineName', '')}/execution/dryrun"}
    elif operation == "CreateMultipartUpload":
        result = {"UploadId": "dryrun"}
    result["ResponseMetadata"] = {"HTTPStatusCode": 200}
    return AWSResponse("", 200, {}, None), result


class Recorder:
    """Collects requests; `session()` gives a boto3 session wired to it."""

    def __init__(self, region: str, bucket: str = "", roles: Optional[dict[str, Any]] = None):
        self.region = region
        self.bucket = bucket
        self.roles = dict(roles or {})
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._last = threading.local()

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        self._last.params = copy.copy(params)
        item = {"service": service, "operation": model.name, "params": _jsonable(params)}
        with self._lock:
            self.requests.append(item)

    def _short_circuit(self, model: Any, **_: Any):
        service = model.service_model.service_name
        last = getattr(self._last, "params", {}) or {}
        return _answer(service, model.name, {"bucket": self.bucket}, last, self.region, self.roles)

    def session(self):
        """A boto3 session with static fake credentials whose clients never touch the network."""
        import boto3

        sess = boto3.Session(aws_access_key_id="DRYRUN", aws_secret_access_key="DRYRUN", region_name=self.region)
        # last: after botocore fills idempotency tokens and other defaults
        sess.events.register_last("before-parameter-build", self._record)
        sess.events.register("before-call.*.*", self._short_circuit)
        return sess
