"""Submit a plan to Azure ML, or write it as `az ml ... create --file` YAML (dry run, no credentials)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ...errors import CloudftError
from .entities import AZURE_STATUS, SERVERLESS, Build, as_job, build, secret_env
from .handle import AzureHandle
from .section import AzureSection

if TYPE_CHECKING:
    from ...plan import Plan
    from ...registry import RunRecord

JOB_FILE = "job.yml"
ENV_FILE = "environment.yml"


def validate_offline(entity: Any, what: str) -> None:
    """The SDK's own schema + custom validation, no network. Raises CloudftError listing the problems.

    Assets without `_validate` (data, environment) are validated by their schema when loaded from YAML.
    """
    import inspect

    from azure.ai.ml.exceptions import ValidationException

    check = getattr(entity, "_validate", None)
    if check is None:
        return
    problems = None
    if "raise_error" in inspect.signature(check).parameters:  # schema-validatable entities (pipeline job, ...)
        result = check(raise_error=False)
        problems = None if result.passed else result.error_messages
    else:  # CommandJob._validate raises
        try:
            check()
        except ValidationException as exc:
            problems = str(exc)
    if problems:
        raise CloudftError(f"azure: the generated {what} does not pass the SDK's validation:\n{problems}",
                           hint="this is a cloudft bug; please report it with the spec")


def write_yaml(build_: Build, out: Path) -> list[dict[str, Any]]:
    """Dump data assets, environment and job as YAML files in `out`; check each loads back and validates."""
    from azure.ai.ml import load_data, load_environment, load_job

    written: list[dict[str, Any]] = []
    for d in build_.data:
        path = out / f"data-{d.name}.yml"
        path.unlink(missing_ok=True)
        d.dump(path)
        validate_offline(load_data(path), f"data asset {d.name}")
        written.append({"write": str(path), "then": f"az ml data create --file {path}"})
    if build_.environment is not None:
        path = out / ENV_FILE
        path.unlink(missing_ok=True)
        build_.environment.dump(path)
        validate_offline(load_environment(path), "environment")
        written.append({"write": str(path), "then": f"az ml environment create --file {path}"})
    path = out / JOB_FILE
    path.unlink(missing_ok=True)
    job = as_job(build_.job)
    settings = getattr(job, "settings", None)
    if getattr(settings, "default_compute", None) == SERVERLESS:
        # The SDK sends "serverless" but dumps it bare; the CLI's documented form is azureml:serverless
        # (how-to-use-serverless-compute, "Pipeline job"), which load_job reads back as "serverless".
        settings.default_compute = f"azureml:{SERVERLESS}"
        try:
            job.dump(path)
        finally:
            settings.default_compute = SERVERLESS
    else:
        job.dump(path)
    loaded = load_job(path)
    validate_offline(loaded, f"{loaded.type} job")
    written.append({"write": str(path), "type": loaded.type, "then": f"az ml job create --file {path}"})
    return written


def dry_run(plan: "Plan", section: AzureSection, out_dir: Optional[str]) -> list[dict[str, Any]]:
    """Write the job/pipeline, environment and data asset YAMLs (plus the code snapshot) to `out_dir`."""
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix=f"cloudft-azure-{plan.spec.name}-"))
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    b = build(plan, section, out / "code")
    validate_offline(as_job(b.job), "job")
    written = write_yaml(b, out)
    written.append({"code": str(b.code_dir), "job_name": b.job.name,
                    "compute": b.compute.compute or "serverless", "instance_type": b.compute.instance_type,
                    "instance_count": b.compute.instance_count, "job_tier": b.compute.job_tier})
    return written


def _exists(ops: Any, name: str, version: str) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        ops.get(name=name, version=version)
        return True
    except ResourceNotFoundError:
        return False


def ensure_assets(ml: Any, b: Build) -> dict[str, list[str]]:
    """Create data asset / environment versions only when that version is new (versions are immutable)."""
    done: dict[str, list[str]] = {"created": [], "reused": []}
    assets = [(ml.data, d) for d in b.data]
    if b.environment is not None:
        assets.append((ml.environments, b.environment))
    for operations, asset in assets:
        key = f"{asset.name}:{asset.version}"
        if _exists(operations, asset.name, asset.version):
            done["reused"].append(key)
        else:
            operations.create_or_update(asset)
            done["created"].append(key)
    return done


def submit(plan: "Plan", section: AzureSection, ml: Any) -> "RunRecord":
    """Register data + environment, create the job, and record the run (external_id = the Azure ML job name)."""
    from ...paths import home
    from ...registry import Registry, RunRecord
    from .client import job_studio_url

    run_dir = home() / "azure" / plan.run_id
    b = build(plan, section, run_dir / "code")
    validate_offline(as_job(b.job), "job")
    assets = ensure_assets(ml, b)
    created = ml.jobs.create_or_update(b.job, experiment_name=b.job.experiment_name)
    (run_dir / "plan.json").write_text(plan.to_json())
    rec = RunRecord(
        run_id=plan.run_id, name=plan.spec.name, provider="azure",
        status=AZURE_STATUS.get(getattr(created, "status", None) or "", "queued"),
        spec_path=str(plan.spec.source_path) if plan.spec.source_path else None, run_dir=str(run_dir),
        external_id=created.name,
        handle=AzureHandle(
            **AzureHandle.common(plan), job_type=b.job.type, azure=section.model_dump(mode="json", exclude_none=True),
            outputs={s.name: s.locations.output_dir for s in plan.stages}, assets=assets,
            secret_env=secret_env(plan.spec, section), studio_url=job_studio_url(created),
            instance_type=b.compute.instance_type, instance_count=b.compute.instance_count,
        ).model_dump(mode="json"),
    )
    Registry().add(rec)
    return rec
