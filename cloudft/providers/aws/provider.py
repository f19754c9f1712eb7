"""AwsProvider: SageMaker training jobs / pipelines, CloudWatch logs, adapter endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ...errors import CloudftError
from ..base import Provider
from . import naming
from .section import STACK_KEYS, AwsSection

if TYPE_CHECKING:
    from ...plan import Plan
    from ...registry import RunRecord
    from ...spec import JobSpec, StageSpec

DATA_ROOT = "/opt/ml/input/data"


class AwsProvider(Provider):
    name = "aws"
    requires = (("boto3", "aws"), ("sagemaker", "aws"))

    def __init__(self) -> None:
        self.section: Optional[AwsSection] = None

    # -- spec ---------------------------------------------------------------------------------
    def validate(self, spec: "JobSpec") -> None:
        """Check the `aws:` section (file:line:col errors), merge `--stack` outputs under it; no AWS calls."""
        own = spec.provider_section("aws", AwsSection)
        values = own.model_dump(exclude_unset=True)
        if self.stack:
            from cloudft.infra.outputs import stack_outputs

            outputs = stack_outputs("aws", self.stack) or {}
            values = {**{k: v for k, v in outputs.items() if k in STACK_KEYS and v not in (None, "")}, **values}
        section = AwsSection.model_validate(values)
        name = f"{spec.source_path}" if spec.source_path else "the spec"
        missing = [key for key in ("bucket", "role_arn") if not getattr(section, key)]
        if missing and not spec.aws and not self.stack:
            raise CloudftError(f"{name} has no aws: section; --provider aws needs at least aws.bucket and "
                               "aws.role_arn",
                               hint="add them, e.g. `aws: {bucket: my-bucket, role_arn: arn:aws:iam::123456789012:"
                                    "role/my-sagemaker-role}` (see examples/aws-lora.yaml, docs/aws.md), "
                                    "or pass --stack NAME to read them from a `cloudft infra` stack")
        where = f"{name}'s aws: section" + (f" or stack '{self.stack}'" if self.stack else "")
        for key in missing:
            raise CloudftError(f"aws.{key} is not set in {where}",
                               hint=f"add '{key}: ...' under aws: in the spec, or pass --stack NAME")
        if section.network_isolation and spec.secrets:
            raise CloudftError("aws.network_isolation blocks the container from fetching secrets",
                               hint="drop the secrets (use a public model) or turn network isolation off")
        if section.network_isolation and not section.image_uri:
            raise CloudftError("aws.network_isolation needs aws.image_uri: the Hugging Face image installs "
                               "train_entry's requirements from PyPI at start",
                               hint="build train_entry/Dockerfile into ECR and set aws.image_uri")
        from .submit import secret_refs

        secret_refs(spec.secrets)
        self.section = section

    def _section(self, spec: "JobSpec") -> AwsSection:
        if self.section is None:
            self.validate(spec)
        assert self.section is not None
        return self.section

    def locate(self, spec: "JobSpec", run_id: str, index: int, stage: "StageSpec",
               data: dict[str, Any]) -> dict[str, str]:
        """Paths as the container sees them (/opt/ml/input/data/<channel>/<file>) plus the S3 URIs behind them."""
        section = self._section(spec)
        versions = data.get("versions") or {}
        loc: dict[str, str] = {}
        for split in ("train", "validation"):
            value = data.get(split)
            if not value:
                continue
            if "://" in value:
                if not value.startswith("s3://"):
                    raise CloudftError(f"data.{split} is {value.split('://')[0]}://; SageMaker reads s3:// or "
                                       "local files", hint="use a local path or an s3:// URI")
                uri, filename = value, value.rstrip("/").rsplit("/", 1)[-1] if not value.endswith("/") else ""
            else:
                filename = Path(value).name
                uri = section.s3("datasets", versions.get(split) or "unversioned", filename)
            loc[split] = f"{DATA_ROOT}/{split}/{filename}".rstrip("/")
            loc[f"{split}_uri"] = uri
        init_from, reward_from = spec.stage_links(index)
        if init_from is not None:
            loc["init_adapter"] = f"{DATA_ROOT}/init_adapter"
        if reward_from is not None:
            loc["reward_model"] = f"{DATA_ROOT}/reward_model"
        step = f"{index}-{stage.method}"
        loc["output_uri"] = section.s3("runs", spec.name, step)
        loc["checkpoint_uri"] = section.s3("checkpoints", spec.name, naming.stage_key(spec, index, versions))
        return loc

    # -- lifecycle ----------------------------------------------------------------------------
    def submit(self, plan: "Plan", *, dry_run: bool = False, **options: Any):
        """Start the plan (idempotent); with `dry_run`, the requests it would send instead."""
        from .submit import Submitter

        section = self._section(plan.spec)
        if dry_run:
            from .dryrun import Recorder, validate_request

            recorder = Recorder(region=section.region or _default_region(), bucket=section.bucket or "")
            Submitter(plan, section, recorder.session()).submit()
            for req in recorder.requests:
                if req["operation"] != "PutObject":  # its Body is shown as a size, validated at record time
                    validate_request(req["service"], req["operation"], req["params"])
            return recorder.requests
        from ...registry import Registry, RunRecord
        from .session import boto_session

        boto = boto_session(section)
        sub = Submitter(plan, section, boto, rerun=bool(options.get("rerun"))).submit()
        reg = Registry()
        known = reg.find(provider=self.name, external_id=sub.external_id)
        if known:
            return known[0]
        rec = RunRecord(
            run_id=plan.run_id, name=plan.spec.name, provider=self.name, status="running",
            spec_path=str(plan.spec.source_path) if plan.spec.source_path else None,
            external_id=sub.external_id,
            meta={"kind": sub.kind, "region": boto.region_name, "bucket": section.bucket,
                  "role_arn": section.role_arn, "kms_key_arn": section.kms_key_arn,
                  "stages": [f"{s.index}-{s.method}" for s in plan.stages],
                  "dataset_versions": plan.stages[0].run_config.dataset_versions,
                  "base_model": plan.spec.base_model, "lora_r": plan.spec.peft.r,
                  "deploy_instance_type": section.deploy_instance_type,
                  "serving_image_uri": section.serving_image_uri, "endpoint_name": section.endpoint_name,
                  "adopted": sub.adopted, **sub.meta},
        )
        reg.add(rec)
        return self.status(rec)

    def _boto(self, run: Optional["RunRecord"] = None):
        from .session import boto_session

        region = (run.meta.get("region") if run else None) or (self.section.region if self.section else None)
        return boto_session(AwsSection(region=region) if region else (self.section or AwsSection()))

    def status(self, run: "RunRecord") -> "RunRecord":
        from ...registry import Registry
        from .operate import describe

        if run.finished:
            return run
        status, meta = describe(self._boto(run).client("sagemaker"), run.meta.get("kind", "job"), run.external_id)
        return Registry().update(run.run_id, status=status, meta=meta)

    def logs(self, run: "RunRecord", follow: bool = False) -> Iterator[str]:
        from .operate import stream_logs

        boto = self._boto(run)
        yield from stream_logs(boto.client("sagemaker"), boto.client("logs"), run.meta.get("kind", "job"),
                               run.external_id, run.meta.get("jobs") or [], follow)

    def stop(self, run: "RunRecord") -> "RunRecord":
        from ...registry import Registry
        from .operate import stop

        if run.finished:
            return run
        stop(self._boto(run).client("sagemaker"), run.meta.get("kind", "job"), run.external_id)
        return Registry().update(run.run_id, status="stopping")

    def artifacts(self, run: "RunRecord", dest: Optional[Path] = None) -> Path:
        """Download and unpack the final stage's outputs (adapter, metrics.json, report.md)."""
        from ...paths import home
        from .operate import download_artifacts, last_model_artifacts

        boto = self._boto(run)
        uri = last_model_artifacts(boto.client("sagemaker"), run.meta.get("kind", "job"), run.external_id,
                                   run.meta.get("jobs") or [])
        target = Path(dest) if dest else home() / "artifacts" / run.run_id
        if (target / "adapter_config.json").exists() or (target / "metrics.json").exists():
            return target
        return download_artifacts(boto.client("s3"), uri, target)

    # -- serving ------------------------------------------------------------------------------
    def deploy(self, run: "RunRecord", **options: Any) -> dict[str, Any]:
        from ...registry import Registry
        from . import deploy as serving
        from .operate import last_model_artifacts

        if run.provider != self.name:
            raise CloudftError(f"run {run.run_id} trained on {run.provider}; deploy it there",
                               hint=f"cloudft deploy {run.run_id} --provider {run.provider}")
        boto = self._boto(run)
        sm = boto.client("sagemaker")
        uri = last_model_artifacts(sm, run.meta.get("kind", "job"), run.external_id, run.meta.get("jobs") or [])
        itype = options.get("instance_type") or run.meta.get("deploy_instance_type") or "ml.g5.2xlarge"
        endpoint = (options.get("endpoint_name") or run.meta.get("endpoint_name")
                    or serving.default_endpoint_name(run.run_id))
        image = run.meta.get("serving_image_uri") or serving.serving_image(boto.region_name, itype)
        result = serving.deploy(sm, endpoint=endpoint, model_uri=uri, base_model=run.meta["base_model"],
                                rank=int(run.meta.get("lora_r") or 16), role_arn=run.meta["role_arn"],
                                instance_type=itype, image=image, kms_key=run.meta.get("kms_key_arn"),
                                tags={"cloudft:run-id": run.run_id}, wait=options.get("wait", True))
        Registry().update(run.run_id, meta={"endpoint": endpoint})
        return result

    def invoke(self, endpoint: str, prompt: str, **options: Any) -> str:
        from .deploy import invoke

        return invoke(self._boto().client("sagemaker-runtime"), endpoint, prompt,
                      int(options.get("max_new_tokens") or 128))

    def undeploy(self, endpoint: str, **options: Any) -> None:
        from .deploy import undeploy

        if not undeploy(self._boto().client("sagemaker"), endpoint):
            raise CloudftError(f"no endpoint '{endpoint}' (nor its config or model) in this region",
                               hint="check the name and AWS_DEFAULT_REGION")


def _default_region() -> str:
    import boto3

    return boto3.Session().region_name or "us-east-1"
