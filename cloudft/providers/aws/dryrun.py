"""`--dry-run`: run the real submit code on a boto3 session that records every request instead of sending it.

Each request is recorded as `{"service", "operation", "params"}` with the params exactly as the caller
gave them to boto3 (a `Body` stream shows as `"<N bytes>"`), then validated by botocore against the
service model before the (never sent) HTTP call. Answers are canned: nothing exists yet, the role is
trusted, every upload succeeds. No network, no credentials.
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


def _answer(service: str, operation: str, body: dict[str, Any], last: dict[str, Any], region: str):
    """A plausible answer for the calls the submit path makes."""
    from botocore.awsrequest import AWSResponse

    arn = f"arn:aws:sagemaker:{region}:{FAKE_ACCOUNT}"
    if operation in ("HeadObject", "DescribeTrainingJob", "DescribePipeline", "DescribePipelineExecution"):
        return _error("404" if service == "s3" else "ValidationException", "not found (dry run)",
                      404 if service == "s3" else 400)
    result: dict[str, Any] = {}
    if operation == "GetRole":
        name = last.get("RoleName", "role").split("/")[-1]
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
        result = {"Role": {"RoleName": name, "Arn": f"arn:aws:iam::{FAKE_ACCOUNT}:role/{name}", "Path": "/",
                           "RoleId": "AROADRYRUN", "CreateDate": _dt.datetime(2024, 1, 1),
                           "AssumeRolePolicyDocument": quote(json.dumps(trust))}}
    elif operation == "SimulatePrincipalPolicy":
        actions = last.get("ActionNames") or []
        result = {"EvaluationResults": [{"EvalActionName": a, "EvalDecision": "allowed"} for a in actions],
                  "IsTruncated": False}
    elif operation == "GetCallerIdentity":
        result = {"Account": FAKE_ACCOUNT, "Arn": f"arn:aws:iam::{FAKE_ACCOUNT}:user/dry-run", "UserId": "DRYRUN"}
    elif operation == "ListBuckets":
        result = {"Buckets": [{"Name": body.get("bucket", "")}]}
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

    def __init__(self, region: str, bucket: str = ""):
        self.region = region
        self.bucket = bucket
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
        return _answer(service, model.name, {"bucket": self.bucket}, last, self.region)

    def session(self):
        """A boto3 session with static fake credentials whose clients never touch the network."""
        import boto3

        sess = boto3.Session(aws_access_key_id="DRYRUN", aws_secret_access_key="DRYRUN", region_name=self.region)
        # last: after botocore fills idempotency tokens and other defaults
        sess.events.register_last("before-parameter-build", self._record)
        sess.events.register("before-call.*.*", self._short_circuit)
        return sess
