"""AwsProvider: SageMaker training jobs / pipelines, CloudWatch logs, adapter endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from train_entry.config import is_remote

from ...errors import CloudftError
from ...stages import StageLocations
from ..base import Provider
from .handle import AwsHandle
from .section import STACK_KEYS, AwsSection

if TYPE_CHECKING:
    from ...plan import Plan
    from ...preflight import Finding
    from ...registry import RunRecord
    from ...spec import JobSpec
    from ...stages import StageContext

DATA_ROOT = "/opt/ml/input/data"


class AwsProvider(Provider):
    name = "aws"
    requires = (("boto3", "aws"), ("sagemaker", "aws"))
    handle_type = AwsHandle

    def __init__(self) -> None:
        self.section: Optional[AwsSection] = None
        #: the `--stack`'s roles and their policy documents (its `iam_policies` output), when known
        self.stack_iam: dict[str, Any] = {}

    # -- spec ---------------------------------------------------------------------------------
    def validate_section(self, spec: "JobSpec") -> None:
        """Check the `aws:` section (file:line:col errors), merge `--stack` outputs under it; no AWS calls."""
        own = spec.provider_section("aws", AwsSection)
        values = own.model_dump(exclude_unset=True)
        if self.stack:
            from cloudft.infra.outputs import stack_outputs

            from .preflight import stack_iam_of

            outputs = stack_outputs("aws", self.stack) or {}
            values = {**{k: v for k, v in outputs.items() if k in STACK_KEYS and v not in (None, "")}, **values}
            self.stack_iam = stack_iam_of(outputs)
        section = AwsSection.model_validate(values)
        if section.network_isolation and spec.secrets:
            raise CloudftError("aws.network_isolation blocks the container from fetching secrets",
                               hint="drop the secrets (use a public model) or turn network isolation off")
        self.section = section

    def check_submit(self, spec: "JobSpec") -> None:
        """A submit needs a bucket and a role (a plan does not: it shows where they would go)."""
        section = self._section(spec)
        missing = [key for key in ("bucket", "role_arn") if not getattr(section, key)]
        if not missing:
            return
        name = f"{spec.source_path}" if spec.source_path else "the spec"
        if not spec.aws and not self.stack:
            raise CloudftError(f"{name} has no aws: section; --provider aws needs at least aws.bucket and "
                               "aws.role_arn",
                               hint="add them, e.g. `aws: {bucket: my-bucket, role_arn: arn:aws:iam::123456789012:"
                                    "role/my-sagemaker-role}` (see examples/aws-lora.yaml, docs/aws.md), "
                                    "or pass --stack NAME to read them from a `cloudft infra` stack")
        where = f"{name}'s aws: section" + (f" or stack '{self.stack}'" if self.stack else "")
        raise CloudftError(f"aws.{missing[0]} is not set in {where}",
                           hint=f"add '{missing[0]}: ...' under aws: in the spec, or pass --stack NAME")

    def preflight(self, plan: "Plan") -> "list[Finding]":
        """The AWS rules (cloudft/providers/aws/preflight.py) on the plan; no AWS calls."""
        from .preflight import AwsView, preflight

        section = self._section(plan.spec)
        return preflight(AwsView(plan, section, section.region or _configured_region(), self.stack_iam))

    def _section(self, spec: "JobSpec") -> AwsSection:
        if self.section is None:
            self.validate_section(spec)
        assert self.section is not None
        return self.section

    def locate(self, spec: "JobSpec", run_id: str, stage: "StageContext") -> StageLocations:
        """Paths as the container sees them (/opt/ml/input/data/<channel>/<file>) plus the S3 URIs behind them."""
        section = self._section(spec)
        data = stage.data
        loc: dict[str, str] = {}
        for split in ("train", "validation"):
            value = getattr(data, split)
            if not value:
                continue
            if is_remote(value):  # s3:// (capabilities refuse other schemes)
                uri, filename = value, value.rstrip("/").rsplit("/", 1)[-1] if not value.endswith("/") else ""
            else:
                filename = Path(value).name
                uri = section.s3("datasets", data.versions.get(split) or "unversioned", filename)
            loc[split] = f"{DATA_ROOT}/{split}/{filename}".rstrip("/")
            loc[f"{split}_uri"] = uri
        links = stage.links
        if links.init_kind is not None:  # the channel has the same name as the run-config field it fills
            channel = "init_adapter" if links.init_kind == "adapter" else "init_model"
            loc[channel] = f"{DATA_ROOT}/{channel}"
        if links.reward_from is not None:
            loc["reward_model"] = f"{DATA_ROOT}/reward_model"
        return StageLocations(output_uri=section.s3("runs", spec.name, stage.name),
                              checkpoint_uri=section.s3("checkpoints", spec.name, stage.work_key), **loc)

    # -- lifecycle ----------------------------------------------------------------------------
    def submit(self, plan: "Plan", *, dry_run: bool = False, **options: Any):
        """Start the plan (idempotent); with `dry_run`, the requests it would send instead."""
        from .preflight import enforce_on_requests
        from .submit import Submitter

        section = self._section(plan.spec)
        if dry_run:
            from .dryrun import Recorder, validate_request

            recorder = Recorder(region=section.region or _default_region(), bucket=section.bucket or "",
                                roles=self.stack_iam)
            session = recorder.session()
            enforce_on_requests(session)  # the documented rules, on every request actually built
            Submitter(plan, section, session).submit()
            for req in recorder.requests:
                if req["operation"] != "PutObject":  # its Body is shown as a size, validated at record time
                    validate_request(req["service"], req["operation"], req["params"])
            return recorder.requests
        from ...registry import Registry, RunRecord
        from .session import boto_session

        boto = boto_session(section)
        enforce_on_requests(boto)
        sub = Submitter(plan, section, boto).submit()
        reg = Registry()
        known = reg.find(provider=self.name, external_id=sub.external_id)
        if known:
            return known[0]
        handle = AwsHandle(
            **AwsHandle.common(plan), kind=sub.kind, region=boto.region_name, bucket=section.bucket,
            role_arn=section.role_arn, kms_key_arn=section.kms_key_arn,
            deploy_instance_type=section.deploy_instance_type, serving_image_uri=section.serving_image_uri,
            endpoint_name=section.endpoint_name, adopted=sub.adopted, **sub.handle)
        rec = RunRecord(
            run_id=plan.run_id, name=plan.spec.name, provider=self.name, status="running",
            spec_path=str(plan.spec.source_path) if plan.spec.source_path else None,
            external_id=sub.external_id, handle=handle.model_dump(mode="json"))
        reg.add(rec)
        return self.status(rec)

    def _boto(self, run: Optional["RunRecord"] = None):
        from .session import boto_session

        region = (self.handle(run).region if run else None) or (self.section.region if self.section else None)
        return boto_session(AwsSection(region=region) if region else (self.section or AwsSection()))

    def status(self, run: "RunRecord") -> "RunRecord":
        from ...registry import Registry
        from .operate import describe

        if run.finished:
            return run
        status, meta = describe(self._boto(run).client("sagemaker"), self.handle(run).kind, run.external_id)
        return Registry().update(run.run_id, status=status, meta=meta)

    def logs(self, run: "RunRecord", follow: bool = False) -> Iterator[str]:
        from .operate import stream_logs

        boto, handle = self._boto(run), self.handle(run)
        yield from stream_logs(boto.client("sagemaker"), boto.client("logs"), handle.kind,
                               run.external_id, run.meta.get("jobs") or list(handle.jobs), follow)

    def stop(self, run: "RunRecord") -> "RunRecord":
        from ...registry import Registry
        from .operate import stop

        if run.finished:
            return run
        stop(self._boto(run).client("sagemaker"), self.handle(run).kind, run.external_id)
        return Registry().update(run.run_id, status="stopping")

    def artifacts(self, run: "RunRecord", dest: Optional[Path] = None) -> Path:
        """Download and unpack the final stage's outputs (adapter, metrics.json, report.md)."""
        from ...paths import home
        from .operate import download_artifacts, last_model_artifacts

        boto, handle = self._boto(run), self.handle(run)
        uri = last_model_artifacts(boto.client("sagemaker"), handle.kind, run.external_id,
                                   run.meta.get("jobs") or list(handle.jobs))
        target = Path(dest) if dest else home() / "artifacts" / run.run_id
        cached = dest is None and ((target / "adapter_config.json").exists() or (target / "metrics.json").exists())
        if cached:  # cloudft's own copy of a finished run; an explicit --dest always gets a fresh download
            return target
        return download_artifacts(boto.client("s3"), uri, target)

    # -- serving ------------------------------------------------------------------------------
    def deploy(self, run: "RunRecord", **options: Any) -> dict[str, Any]:
        """Check that the vLLM image can serve the run (refused before any request otherwise), then create the
        endpoint serving the adapter, or the merged/full weights (cloudft.serving.compat decides)."""
        from ...registry import Registry
        from ...serving.compat import check_run
        from . import deploy as serving
        from .operate import last_model_artifacts

        if run.provider != self.name:
            raise CloudftError(f"run {run.run_id} trained on {run.provider}; deploy it there (or here with "
                               "--provider local)", hint=f"cloudft deploy {run.run_id} --provider {run.provider}")
        handle = self.handle(run)
        decision, served = check_run(self.name, handle, run.run_id)
        boto = self._boto(run)
        sm = boto.client("sagemaker")
        uri = last_model_artifacts(sm, handle.kind, run.external_id, run.meta.get("jobs") or list(handle.jobs))
        itype = options.get("instance_type") or handle.deploy_instance_type or "ml.g5.2xlarge"
        endpoint = options.get("endpoint_name") or handle.endpoint_name or serving.default_endpoint_name(run.run_id)
        image = handle.serving_image_uri or serving.serving_image(boto.region_name, itype)
        env = serving.serving_env(decision, served, handle.serve, handle.base_model)
        result = serving.deploy(sm, endpoint=endpoint, model_uri=uri, env=env, role_arn=handle.role_arn,
                                instance_type=itype, image=image, kms_key=handle.kms_key_arn,
                                tags={"cloudft:run-id": run.run_id}, wait=options.get("wait", True))
        Registry().update(run.run_id, meta={"endpoint": endpoint})
        return {**result, "mode": decision.mode, "serves": decision.summary(), "served_model": serving.ADAPTER_NAME}

    def invoke(self, endpoint: str, prompt: str, **options: Any) -> str:
        """Greedy completion from the endpoint's adapter (`base=True`: from the bare base model beside it)."""
        from .deploy import ADAPTER_NAME, base_model_of, invoke

        boto = self._boto()
        model = base_model_of(boto.client("sagemaker"), endpoint) if options.get("base") else ADAPTER_NAME
        return invoke(boto.client("sagemaker-runtime"), endpoint, prompt, int(options.get("max_new_tokens") or 128),
                      model=model)

    def undeploy(self, endpoint: str, **options: Any) -> None:
        from .deploy import undeploy

        if not undeploy(self._boto().client("sagemaker"), endpoint):
            raise CloudftError(f"no endpoint '{endpoint}' (nor its config or model) in this region",
                               hint="check the name and AWS_DEFAULT_REGION")


def _default_region() -> str:
    import boto3

    return boto3.Session().region_name or "us-east-1"


def _configured_region() -> str:
    """The region the AWS SDKs would use, for preflight ("" when none is configured: not guessed): AWS_REGION,
    AWS_DEFAULT_REGION, else the profile's `region` in the shared config file, read without importing boto3
    (`cloudft plan` stays light)."""
    import configparser
    import os

    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(var):
            return os.environ[var]
    profile = os.environ.get("AWS_PROFILE") or "default"
    config = configparser.ConfigParser()
    try:
        config.read(os.path.expanduser(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"))
    except (configparser.Error, OSError, UnicodeDecodeError):
        return ""
    section = "default" if profile == "default" else f"profile {profile}"
    return config.get(section, "region", fallback="") if config.has_section(section) else ""
