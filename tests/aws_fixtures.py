"""Fixtures for the AWS provider tests: moto's ThreadedMotoServer on 127.0.0.1 (a free port), with an
optional fault injector in front of it, and the real boto3 / SageMaker SDK pointed at it by
`AWS_ENDPOINT_URL` and fake credentials.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

REGION = "us-east-1"
BUCKET = "cloudft-test"
ROLE_NAME = "cloudft-exec"
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class FaultInjector:
    """WSGI middleware: answers the next N calls of an operation with an error, before or after moto saw them.

    `plan("SageMaker.CreateTrainingJob", [("before", 400, "ThrottlingException"), ("after", 500, "InternalFailure")])`
    "after" forwards the request to moto first (the call took effect) and then answers the error, as a
    lost response would look to the client.
    """

    def __init__(self, app):
        self.app = app
        self.faults: dict[str, list[tuple[str, int, str]]] = {}
        self.seen: dict[str, int] = {}
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()

    def plan(self, target: str, faults: list[tuple[str, int, str]]) -> None:
        with self.lock:
            self.faults[target] = list(faults)

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:  # JSON-protocol call: keep its body for assertions on what was sent
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(raw)
            with self.lock:
                self.bodies.setdefault(target, []).append(json.loads(raw or b"{}"))
        with self.lock:
            self.seen[target] = self.seen.get(target, 0) + 1
            queue = self.faults.get(target) or []
            fault = queue.pop(0) if queue else None
        if fault is None:
            return self.app(environ, start_response)
        when, status, code = fault
        if when == "after":
            self.app(environ, lambda *a, **k: None)
        body = json.dumps({"__type": code, "message": f"injected {code}"}).encode()
        start_response(f"{status} ERROR", [("Content-Type", "application/x-amz-json-1.1"),
                                           ("Content-Length", str(len(body)))])
        return [body]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[Any, FaultInjector, str]:
    """ThreadedMotoServer with the fault injector wrapped around moto's WSGI app."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    holder: dict[str, FaultInjector] = {}

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:  # no line per request on stderr
            pass

    class FaultyMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            holder["app"] = FaultInjector(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(self._ip_address, self._port, holder["app"], True,
                                       request_handler=QuietHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    port = _free_port()
    server = FaultyMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, holder["app"], f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[tuple[str, FaultInjector]]:
    server, faults, url = start_moto()
    yield url, faults
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch, tmp_path) -> dict[str, Any]:
    """Fake credentials + endpoint override + a private CLOUDFT_HOME; the bucket and role exist in moto."""
    import boto3

    url, faults = moto_endpoint
    faults.faults.clear()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": url,
                       "CLOUDFT_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "SAGEMAKER_VALIDATE_ROLE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    boto = boto3.Session(region_name=REGION)
    s3 = boto.client("s3")
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    iam = boto.client("iam")
    try:
        role_arn = iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role_arn = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    # the role holds what the permissions manifest says a job and a pipeline need: cloudft's role check evaluates
    # these (moto lacks iam:SimulatePrincipalPolicy; session.py evaluates the role's own policies instead)
    for actor, policy in role_policies(role_arn).items():
        iam.put_role_policy(RoleName=ROLE_NAME, PolicyName=f"cloudft-{actor}", PolicyDocument=json.dumps(policy))
    return {"url": url, "faults": faults, "boto": boto, "role_arn": role_arn, "tmp": tmp_path}


def role_values(role_arn: str, prefix: str = "cloudft") -> dict[str, Any]:
    """The permissions manifest's values for the moto account, bucket and role (the HF image's repository)."""
    return {"partition": "aws", "region": REGION, "account": role_arn.split(":")[4], "bucket": BUCKET,
            "prefix": prefix, "role": role_arn, "pipeline_role": role_arn, "kms_key": "",
            "repository": [f"arn:aws:ecr:{REGION}:763104351884:repository/huggingface-pytorch-training"],
            "secret": [], "subnet": [], "security_group": []}


def role_policies(role_arn: str) -> dict[str, dict]:
    from cloudft.providers.aws.permissions import minimum_policy

    values = role_values(role_arn)
    return {actor: minimum_policy(actor, values, {"ecr", "pipeline"}) for actor in ("job", "pipeline")}


def write_spec(tmp: Path, role_arn: str, name: str = "aws-test", extra: str = "", stages: Optional[str] = None,
               data: str = "quickstart.jsonl") -> Path:
    """A small spec beside copies of the example data, pointing at the moto bucket and role."""
    import shutil

    (tmp / "data").mkdir(exist_ok=True)
    for f in ("quickstart.jsonl", "preferences.jsonl"):
        shutil.copy(EXAMPLES / "data" / f, tmp / "data" / f)
    body = f"""name: {name}
base_model: Qwen/Qwen2.5-0.5B-Instruct
{stages or 'method: sft'}
data:
  train: data/{data}
compute:
  instance_type: ml.g5.2xlarge
  spot: true
  max_runtime_hours: 1
aws:
  region: {REGION}
  bucket: {BUCKET}
  role_arn: {role_arn}
{extra}"""
    path = tmp / f"{name}.yaml"
    path.write_text(body)
    return path


def plan_for(spec_path: Path, stack: Optional[str] = None, rerun: bool = False):
    """Load, validate and plan a spec for the aws provider, as `cloudft submit` does."""
    from cloudft.plan import build_plan
    from cloudft.providers import get_provider
    from cloudft.spec import load_spec

    spec = load_spec(spec_path)
    prov = get_provider("aws")
    prov.stack = stack
    prov.validate(spec)
    prov.check_submit(spec)
    return prov, build_plan(spec, "aws", locate=prov.locate, rerun=rerun)
