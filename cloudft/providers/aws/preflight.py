"""AWS preflight rules: what SageMaker, IAM and Ground Truth document and botocore's shape validation cannot
express, checked on the plan (`cloudft plan`, `submit`, `--dry-run`) and again on every request actually sent
(`enforce_on_requests`: CreateTrainingJob, and each training step of CreatePipeline / UpdatePipeline).

Each rule names its source; tests/test_aws_preflight.py shows each one catching the bad case. Request-level checks
(`training_request_findings`) are the same functions the plan rules apply to the request parts cloudft decides
(`submit.planned_request`), so a change in how submit builds a request is caught by both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional

from ...errors import CloudftError
from ...preflight import Finding, rule, run_rules

if TYPE_CHECKING:
    from ...plan import Plan
    from .section import AwsSection

SRC_VOLUME_KMS = ("botocore sagemaker service model, ResourceConfig.VolumeKmsKeyId: \"You can't request a "
                  "VolumeKmsKeyId when using an instance type with local storage\"")
SRC_SPOT_WAIT = ("botocore sagemaker service model, StoppingCondition.MaxWaitTimeInSeconds: \"It must be equal to or "
                 "greater than MaxRuntimeInSeconds\"")
SRC_SPOT_CHECKPOINT = ("https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html: \"Unless "
                       "your training job will complete quickly, we recommend you use checkpointing with managed spot "
                       "training\" (an interrupted job resumes from CheckpointConfig's S3 copy, else from scratch; "
                       "the page caps built-in and marketplace algorithms that do not checkpoint at "
                       "MaxWaitTimeInSeconds 3600)")
SRC_REGION = ("cloudft/planner/catalog_aws.json (rows priced for its region by the AWS Price List API; "
              "`cloudft catalog refresh --region R` marks types without a price there offered: false)")
SRC_IMAGE = "sagemaker-core image_uri_config/huggingface.json (training: versions → registries per region)"
SRC_DOWNLOAD = ("aws/deep-learning-containers HF training Dockerfiles and release notes (installed packages, "
                "cloudft/providers/aws/images.py) plus the wheelhouse staged with the code vs train_entry/requirements.txt "
                "and the wheels' METADATA; sagemaker-train sm_train.sh pip-installs a staged requirements.txt at start")
SRC_TRUST = ("https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html (the role must trust "
             "sagemaker.amazonaws.com); sagemaker-core iam_role_resolver._role_trusts_service")
SRC_GT_LINE = ("https://docs.aws.amazon.com/sagemaker/latest/dg/sms-custom-templates-step3-lambda-requirements.html: "
               "\"The JSON line objects in your manifest can be up to 100 kilobytes in size\"")


@dataclass(frozen=True)
class AwsView:
    """What the AWS rules look at: the plan, the resolved `aws:` section, the region, and what a `--stack` told us
    about its roles (`iam_policies` output: {role: {arn, trust, policies}})."""

    plan: "Plan"
    section: "AwsSection"
    region: str
    stack_iam: Mapping[str, Any] = field(default_factory=dict)


# -- request-level checks (one per documented rule) -------------------------------------------------------------

def volume_kms_findings(req: Mapping[str, Any]) -> Iterator[Finding]:
    from ...planner.catalog import has_local_storage

    rc = req.get("ResourceConfig") or {}
    if rc.get("VolumeKmsKeyId") and has_local_storage(str(rc.get("InstanceType", ""))):
        yield Finding("", "error", f"ResourceConfig.VolumeKmsKeyId is set for {rc['InstanceType']}, an instance "
                      "type with local NVMe storage; SageMaker refuses it", field="aws.kms_key_arn",
                      fix="leave VolumeKmsKeyId out for these types (the instance store is hardware-encrypted; "
                          "aws.kms_key_arn still encrypts S3 outputs)", source=SRC_VOLUME_KMS)


def spot_wait_findings(req: Mapping[str, Any]) -> Iterator[Finding]:
    if not req.get("EnableManagedSpotTraining"):
        return
    stop = req.get("StoppingCondition") or {}
    wait, runtime = stop.get("MaxWaitTimeInSeconds"), stop.get("MaxRuntimeInSeconds")
    if wait is None or runtime is None or wait < runtime:
        yield Finding("", "error", f"spot training needs StoppingCondition.MaxWaitTimeInSeconds ({wait}) >= "
                      f"MaxRuntimeInSeconds ({runtime})", field="aws.max_wait_hours",
                      fix="raise aws.max_wait_hours or lower compute.max_runtime_hours", source=SRC_SPOT_WAIT)


def spot_checkpoint_findings(req: Mapping[str, Any]) -> Iterator[Finding]:
    if req.get("EnableManagedSpotTraining") and not (req.get("CheckpointConfig") or {}).get("S3Uri"):
        yield Finding("", "error", "spot training without CheckpointConfig.S3Uri: an interrupted job starts over",
                      field="compute.spot", fix="set a checkpoint location (cloudft sets one per stage)",
                      source=SRC_SPOT_CHECKPOINT)


REQUEST_CHECKS = (volume_kms_findings, spot_wait_findings, spot_checkpoint_findings)


def training_request_findings(req: Mapping[str, Any]) -> list[Finding]:
    """Every documented rule over one CreateTrainingJob request (or a pipeline training step's Arguments)."""
    return [f for check in REQUEST_CHECKS for f in check(req)]


def _planned(view: AwsView) -> Iterator[Mapping[str, Any]]:
    from .submit import planned_request

    for stage in view.plan.stages:
        yield planned_request(view.plan, view.section, stage)


# -- plan rules ---------------------------------------------------------------------------------------------------

def _on_planned_requests(rule_id: str, source: str, check: Callable[[Mapping[str, Any]], Iterable[Finding]]):
    """A plan rule that applies one request-level check to each stage's planned request."""

    def apply(view: AwsView) -> Iterator[Finding]:
        for req in _planned(view):
            yield from check(req)

    return rule(rule_id, source)(apply)


_volume_kms = _on_planned_requests("aws.volume-kms-local-storage", SRC_VOLUME_KMS, volume_kms_findings)
_spot_wait = _on_planned_requests("aws.spot-max-wait", SRC_SPOT_WAIT, spot_wait_findings)
_spot_checkpoint = _on_planned_requests("aws.spot-checkpoint", SRC_SPOT_CHECKPOINT, spot_checkpoint_findings)


@rule("aws.instance-in-region", SRC_REGION)
def _instance_region(view: AwsView) -> Iterator[Finding]:
    from ...planner.catalog import load_catalog, region_offers

    itype = view.plan.estimate.instance.type
    inst = next((i for i in load_catalog("aws") if i.type == itype), None)
    if not view.region:
        return  # aws.image-in-region says the region is missing
    offered = region_offers("aws", view.region, itype) if inst is not None else None
    if inst is None:
        yield Finding("", "warning", f"{itype} is not in the SageMaker catalog: its availability in {view.region} "
                      "is not checked", field="compute.instance_type",
                      fix="see `cloudft catalog list --provider aws`")
    elif offered is None:
        yield Finding("", "warning", f"the catalog has no prices for {view.region}: whether {itype} is offered "
                      "there is not checked", field="aws.region",
                      fix=f"run `cloudft catalog refresh --provider aws --region {view.region}`")
    elif offered is False:
        yield Finding("", "error", f"{itype} is not offered for SageMaker training in {view.region} (the price "
                      "list has no price for it there)", field="compute.instance_type",
                      fix="choose another type (`cloudft catalog list --provider aws`) or region")


@rule("aws.image-in-region", SRC_IMAGE)
def _image_region(view: AwsView) -> Iterator[Finding]:
    if view.section.image_uri:
        return
    from .images import image_regions

    if not view.region:
        yield Finding("", "warning", "no AWS region: the training image's availability is not checked",
                      field="aws.region", fix="set aws.region (or AWS_DEFAULT_REGION)")
        return
    regions = image_regions(view.section.transformers_version)
    if regions is None:
        yield Finding("", "warning", "the SageMaker SDK is not installed: the training image is not checked",
                      fix="pip install 'cloudft[aws]'")
    elif view.region not in regions:
        yield Finding("", "error", f"no Hugging Face training image for transformers "
                      f"{view.section.transformers_version} in {view.region} (the SDK's image config publishes it "
                      f"in {len(regions)} other regions)", field="aws.region",
                      fix="use a region the image is published in, or set aws.image_uri")


@rule("aws.image-downloads-at-start", SRC_DOWNLOAD)
def _image_downloads(view: AwsView) -> Iterator[Finding]:
    s = view.section
    if s.image_uri:
        return  # a custom image holds the requirements itself; the launcher checks them when the job starts
    from .images import check_image

    check = check_image(s.transformers_version)
    wheels = ", ".join(w.pin for w in check.wheels)
    image = f"the Hugging Face {s.transformers_version} image" + (f" with its wheelhouse ({wheels})" if wheels else "")
    if check.unmet:
        closed = bool(s.subnets) or s.network_isolation
        what = (f"{image} does not surely provide {len(check.unmet)} of train_entry's requirements "
                f"({'; '.join(f'{r}: {why}' for r, why in check.unmet)}); the job pip-installs them from PyPI when it "
                "starts")
        yield Finding("", "error" if closed else "warning",
                      what + (", which a VPC without a NAT route (aws.subnets) or network isolation cannot reach"
                              if closed else ""), field="aws.image_uri",
                      fix="build train_entry/Dockerfile into ECR (`cloudft infra` creates the repository) and set "
                          "aws.image_uri; nothing is downloaded at start then")
    if check.optional:
        from .staging import launcher_module

        requirement = launcher_module().packaging_api()[0]
        names = ", ".join(dict.fromkeys(requirement(r).name for r, _ in check.optional))
        yield Finding("", "info", f"{image} lacks the report's optional {names} "
                      "(train_entry/requirements-report.txt); they are not downloaded: the report says what it skips "
                      "(no plots without matplotlib, no ROUGE-L / BLEU without rouge-score / sacrebleu)",
                      field="aws.image_uri", fix="for them, use an image built from train_entry/Dockerfile "
                                                 "(aws.image_uri)")


@rule("aws.role-trust", SRC_TRUST)
def _role_trust(view: AwsView) -> Iterator[Finding]:
    from .iam_eval import trusts_service

    for key, arn in (("role_arn", view.section.role_arn), ("pipeline_role_arn", view.section.pipeline_role_arn)):
        known = next((r for r in view.stack_iam.values() if isinstance(r, Mapping) and r.get("arn") == arn), None)
        if arn and known and known.get("trust") and not trusts_service(known["trust"], "sagemaker.amazonaws.com"):
            yield Finding("", "error", f"role {arn} does not trust sagemaker.amazonaws.com (its trust policy in "
                          "the stack)", field=f"aws.{key}",
                          fix="let sagemaker.amazonaws.com assume it (sts:AssumeRole), or use another role")


PLAN_RULES = (_volume_kms, _spot_wait, _spot_checkpoint, _instance_region, _image_region, _image_downloads,
              _role_trust)


def preflight(view: AwsView) -> list[Finding]:
    return run_rules(PLAN_RULES, view)


# -- Ground Truth -------------------------------------------------------------------------------------------------

GT_LINE_LIMIT_BYTES = 100_000  # "100 kilobytes", read strictly (not 102,400)


@rule("aws.groundtruth-manifest-line", SRC_GT_LINE)
def gt_manifest_lines(lines: Iterable[str]) -> Iterator[Finding]:
    """Each input-manifest line (as written: UTF-8 JSON) must be at most 100 KB in bytes."""
    for n, line in enumerate(lines, 1):
        size = len(line.encode("utf-8"))
        if size > GT_LINE_LIMIT_BYTES:
            yield Finding("", "error", f"manifest line {n} is {size:,} bytes (UTF-8); Ground Truth takes at most "
                          "100 KB per line", fix="move long texts to S3 objects (cloudft does this for fields over "
                          "the 20,000-character attribute limit)")


# -- requests actually sent -----------------------------------------------------------------------------------

def _pipeline_steps(params: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    try:
        definition = json.loads(params.get("PipelineDefinition") or "{}")
    except ValueError:
        return
    for step in definition.get("Steps") or []:
        if step.get("Type") == "Training" and isinstance(step.get("Arguments"), Mapping):
            yield step.get("Name", "?"), step["Arguments"]


def request_findings(operation: str, params: Mapping[str, Any]) -> list[tuple[str, Finding]]:
    """(where, finding) for a request about to be sent."""
    if operation == "CreateTrainingJob":
        return [(params.get("TrainingJobName", "job"), f) for f in training_request_findings(params)]
    if operation in ("CreatePipeline", "UpdatePipeline"):
        return [(f"step {name}", f) for name, args in _pipeline_steps(params) for f in training_request_findings(args)]
    return []


def _check_before_send(params: dict[str, Any], model: Any, **_: Any) -> None:
    found = request_findings(model.name, params)
    errors = [(w, f) for w, f in found if f.severity == "error"]
    if errors:
        raise CloudftError(f"{model.name} would be refused: " + "; ".join(f"{w}: {f.message} ({f.source})"
                                                                         for w, f in errors),
                           hint=errors[0][1].fix)


def enforce_on_requests(boto) -> None:
    """Check every CreateTrainingJob / CreatePipeline / UpdatePipeline that `boto`'s clients send (raises)."""
    for op in ("CreateTrainingJob", "CreatePipeline", "UpdatePipeline"):
        boto.events.register(f"before-parameter-build.sagemaker.{op}", _check_before_send,
                             unique_id=f"cloudft-preflight-{op}")


def stack_iam_of(outputs: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    raw = (outputs or {}).get("iam_policies")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return dict(raw) if isinstance(raw, Mapping) else {}
