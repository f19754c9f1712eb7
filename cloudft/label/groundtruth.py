"""SageMaker Ground Truth path (opt-in, for AWS accounts that already have access; GT closed to new customers on
2026-07-30, so the built-in app is the default).

`submit`: writes the input manifest (JSON Lines within GT's limits: ≤ 100 KB a line in UTF-8 bytes, the preflight
rule aws.groundtruth-manifest-line, and 20,000 characters an attribute; longer texts become S3 objects referenced
as `<field>_ref`), uploads the pairs file and the
Liquid task template, and calls CreateLabelingJob with the workteam, K workers per object, time limits and the
pre-annotation/consolidation Lambdas (AWS's pass-through functions by region, or cloudft's own).
`collect`: reads the output manifest and the worker responses and imports them into a label store, so report
and export work exactly as for the web app.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import CloudftError
from .pairs import prompt_text

ATTR_LIMIT = 20_000
LABEL_ATTRIBUTE = "preference"
TEMPLATE_NAME = "pairwise.liquid.html"
#: Under the infra stack's S3 prefix (cloudft:prefix, default "cloudft"): the stack's role and consolidation Lambda
#: may read and write there only (infra/components/aws_identity.py, aws_labeling.py).
DEFAULT_PREFIX = "cloudft/labeling"

#: AWS-managed PRE-/ACS-PassThrough Lambdas: region → account (ground_truth.md §6).
PASSTHROUGH_ACCOUNTS = {
    "us-east-1": "432418664414", "us-east-2": "266458841044", "us-west-2": "081040173940",
    "ca-central-1": "918755190332", "eu-west-1": "568282634449", "eu-west-2": "487402164563",
    "eu-central-1": "203001061592", "ap-northeast-1": "477331159723", "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007", "ap-southeast-1": "377565633583", "ap-southeast-2": "454466003867",
}

_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ROLE = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")


def handler_module():
    """The consolidation Lambda's module (templates/ground_truth/consolidation/handler.py): the one place that
    parses worker answers, used by the Lambda and by `collect`."""
    from . import project_template

    path = project_template("ground_truth", "consolidation", "handler.py")
    spec = importlib.util.spec_from_file_location("cloudft_gt_consolidation", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def passthrough_arns(region: str) -> tuple[str, str]:
    """(PRE-PassThrough, ACS-PassThrough) ARNs for `region`."""
    account = PASSTHROUGH_ACCOUNTS.get(region)
    if account is None:
        raise CloudftError(f"no AWS pass-through labeling Lambdas known for region {region}",
                           hint=f"use one of {', '.join(sorted(PASSTHROUGH_ACCOUNTS))}, or pass "
                                "--pre-lambda-arn and --consolidation-lambda-arn")
    return (f"arn:aws:lambda:{region}:{account}:function:PRE-PassThrough",
            f"arn:aws:lambda:{region}:{account}:function:ACS-PassThrough")


def split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise CloudftError(f"not an S3 URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


@dataclass
class JobConfig:
    """What `cloudft label submit --provider aws` needs."""

    bucket: str
    role_arn: str
    workteam_arn: str
    region: str
    prefix: str = DEFAULT_PREFIX
    job_name: str = ""
    workers: int = 3
    task_time_limit: int = 1800
    task_lifetime: int = 864_000
    max_concurrent: int = 1000
    title: str = "Pick the better assistant response"
    description: str = "Compare two responses to the same prompt and choose the better one."
    keywords: list[str] = field(default_factory=lambda: ["LLM", "preference", "text"])
    pre_lambda_arn: Optional[str] = None
    consolidation_lambda_arn: Optional[str] = None
    seed: int = 0
    tags: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if not self.job_name:
            self.job_name = time.strftime("cloudft-pref-%Y%m%d-%H%M%S")
        problems = []
        if not _JOB_NAME.match(self.job_name):
            problems.append(f"job name '{self.job_name}' must be 1-63 letters, digits and hyphens")
        if not _ROLE.match(self.role_arn or ""):
            problems.append(f"role ARN '{self.role_arn}' is not an IAM role ARN")
        if ":workteam/" not in (self.workteam_arn or ""):
            problems.append(f"workteam ARN '{self.workteam_arn}' is not a SageMaker workteam ARN")
        if not 1 <= self.workers <= 9:
            problems.append("workers per object must be 1-9")
        if not 30 <= self.task_time_limit <= 28_800:
            problems.append("task time limit must be 30-28800 seconds")
        if not 60 <= self.task_lifetime <= 2_592_000:
            problems.append("task lifetime must be 60-2592000 seconds (30 days)")
        if problems:
            raise CloudftError("bad Ground Truth settings: " + "; ".join(problems))

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}/{self.job_name}/{name}"


def manifest_lines(pairs: list[dict], cfg: JobConfig, put_text) -> list[dict]:
    """One manifest line per pair (original orientation + a random display `swapped`); texts over the attribute
    limit are written with `put_text(uri, text)` and referenced as `<field>_ref`."""
    from ..preflight import run_rules
    from ..providers.aws.preflight import gt_manifest_lines

    rng = random.Random(cfg.seed)
    lines = []
    for p in pairs:
        line: dict[str, Any] = {"source": prompt_text(p["prompt"]), "pair_id": p["pair_id"],
                                "response_a": p["response_a"], "response_b": p["response_b"],
                                "model_a": str(p.get("model_a", "")), "model_b": str(p.get("model_b", "")),
                                "swapped": rng.random() < 0.5}
        for key, ref in (("source", "prompt_ref"), ("response_a", "response_a_ref"),
                         ("response_b", "response_b_ref")):
            if len(line[key]) > ATTR_LIMIT:
                uri = cfg.uri(f"texts/{p['pair_id']}/{key}.txt")
                put_text(uri, line[key])
                line[ref] = uri
                line[key] = line[key][:1000] + " …" if key == "source" else ""
        too_long = run_rules([gt_manifest_lines], [json.dumps(line, ensure_ascii=False)])
        if too_long:
            raise CloudftError(f"pair {p['pair_id']}: {too_long[0].message} ({too_long[0].source})",
                               hint=too_long[0].fix)
        lines.append(line)
    return lines


def build_request(cfg: JobConfig, manifest_uri: str, template_uri: str) -> dict[str, Any]:
    """The CreateLabelingJob request."""
    pre, acs = (cfg.pre_lambda_arn, cfg.consolidation_lambda_arn)
    if not pre or not acs:
        default_pre, default_acs = passthrough_arns(cfg.region)
        pre, acs = pre or default_pre, acs or default_acs
    return {
        "LabelingJobName": cfg.job_name,
        "LabelAttributeName": LABEL_ATTRIBUTE,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": manifest_uri}}},
        "OutputConfig": {"S3OutputPath": f"s3://{cfg.bucket}/{cfg.prefix.strip('/')}/output/"},
        "RoleArn": cfg.role_arn,
        "StoppingConditions": {"MaxPercentageOfInputDatasetLabeled": 100},
        "HumanTaskConfig": {
            "WorkteamArn": cfg.workteam_arn,
            "UiConfig": {"UiTemplateS3Uri": template_uri},
            "PreHumanTaskLambdaArn": pre,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": acs},
            "NumberOfHumanWorkersPerDataObject": cfg.workers,
            "TaskTimeLimitInSeconds": cfg.task_time_limit,
            "TaskAvailabilityLifetimeInSeconds": cfg.task_lifetime,
            "TaskTitle": cfg.title[:128],
            "TaskDescription": cfg.description[:255],
            "TaskKeywords": cfg.keywords[:5],
            "MaxConcurrentTaskCount": cfg.max_concurrent,
        },
        "Tags": [{"Key": "project", "Value": "cloudft"}] + [{"Key": k, "Value": v} for k, v in cfg.tags.items()],
    }


def _put(s3, uri: str, body: str, content_type: str) -> None:
    bucket, key = split_s3(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType=content_type)


def submit(pairs: list[dict], cfg: JobConfig, template_path, s3=None, sagemaker=None,
           dry_run: bool = False) -> dict[str, Any]:
    """Upload manifest, pairs and template, then create the labeling job. Returns what was (or would be) sent."""
    cfg.check()
    template = open(template_path, encoding="utf-8").read()
    uploads: dict[str, str] = {}

    def put_text(uri: str, text: str) -> None:
        uploads[uri] = text

    lines = manifest_lines(pairs, cfg, put_text)
    manifest_uri, template_uri = cfg.uri("input.manifest"), cfg.uri(TEMPLATE_NAME)
    uploads[manifest_uri] = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
    uploads[cfg.uri("pairs.jsonl")] = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    uploads[template_uri] = template
    request = build_request(cfg, manifest_uri, template_uri)
    result: dict[str, Any] = {"request": request, "uploads": sorted(uploads), "objects": len(lines)}
    if dry_run:
        return result
    for uri, body in uploads.items():
        kind = "text/html;charset=UTF-8" if uri.endswith(".html") else "application/jsonl;charset=UTF-8"
        _put(s3, uri, body, "text/plain;charset=UTF-8" if uri.endswith(".txt") else kind)
    try:
        result["LabelingJobArn"] = sagemaker.create_labeling_job(**request)["LabelingJobArn"]
    except Exception as exc:  # surface AWS's own error (e.g. GT closed to this account)
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code is None:
            raise
        raise CloudftError(f"CreateLabelingJob failed: {code}: {exc}",
                           hint="Ground Truth is closed to new customers since 2026-07-30; use "
                                "`cloudft label serve` instead if this account never used it") from None
    return result


def _read(s3, uri: str) -> str:
    bucket, key = split_s3(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


def _read_json(s3, uri: str) -> Any:
    return json.loads(_read(s3, uri))


def _answers(line: dict, s3, gt) -> tuple[list[dict], list[str]]:
    """Per-worker answers of one output-manifest line, one per worker, from whichever documented shape it has:

    - `worker-response-ref` in `<attr>-metadata` (no consolidation Lambda; sms-data-output): the worker-response
      file's `answers[].{workerId, answerContent}`;
    - AWS's ACS-PassThrough: `<attr>.annotationsFromAllWorkers[].{workerId, annotationData.{content | s3Uri}}`
      (the post-annotation payload's annotations, passed through; aws-samples/aws-sagemaker-ground-truth-recipe);
    - cloudft's consolidation Lambda: `<attr>.answers[]` already parsed (its `notes` carried over).
    Returns (answers, notes); each answer is {workerId, shown, rationale[, seconds]} or {workerId, shown: None, error}.
    """
    meta = line.get(LABEL_ATTRIBUTE + "-metadata") or {}
    label = line.get(LABEL_ATTRIBUTE)
    ref = meta.get("worker-response-ref") if isinstance(meta, dict) else None
    if ref:
        raw = _read_json(s3, ref).get("answers", [])
        annotations = [{"workerId": a.get("workerId"), "annotationData": {"content": a.get("answerContent")}}
                       if isinstance(a, dict) else a for a in raw]
        answers, notes = gt.worker_answers(annotations)
        seconds = {str(a.get("workerId")): a.get("timeSpentInSeconds") for a in raw if isinstance(a, dict)}
        for a in answers:
            a["seconds"] = seconds.get(a["workerId"])
        return answers, notes
    if isinstance(label, dict) and "annotationsFromAllWorkers" in label:
        return gt.worker_answers(label["annotationsFromAllWorkers"], lambda uri: _read_json(s3, uri))
    if isinstance(label, dict) and isinstance(label.get("answers"), list):
        answers = [a for a in label["answers"] if isinstance(a, dict)]
        bad = len(label["answers"]) - len(answers)
        notes = list(label.get("notes") or []) + ([f"{bad} answer entries are not objects"] if bad else [])
        return [{"workerId": a.get("workerId"), "shown": a.get("shown"), "rationale": a.get("rationale", ""),
                 "error": a.get("error")} for a in answers], notes
    return [], []


def collect_labels(output_manifest: str, s3) -> tuple[list[dict], list[dict], list[str]]:
    """(pairs, labels, problems) from an output manifest. Each worker counts once per pair; nothing is dropped
    silently: every answer that cannot be read, every repeated worker, and every object without answers is listed
    in `problems`, one line each."""
    gt = handler_module()
    pairs, labels, problems = [], [], []
    for n, raw in enumerate(output_manifest.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as exc:
            problems.append(f"line {n}: not JSON ({exc})")
            continue
        pid = line.get("pair_id") if isinstance(line, dict) else None
        if pid is None:
            problems.append(f"line {n}: no pair_id (not a cloudft manifest line)")
            continue
        try:
            answers, notes = _answers(line, s3, gt)
        except Exception as exc:  # noqa: BLE001 - e.g. a worker-response file that is gone or not JSON
            answers, notes = [], [f"worker answers unreadable: {type(exc).__name__}: {exc}"]
        problems += [f"{pid}: {note}" for note in notes]
        if not answers:
            problems.append(f"{pid}: no worker answers")
        for a in answers:
            if a.get("shown") is None:
                problems.append(f"{pid}: worker {a.get('workerId')}: unreadable answer ({a.get('error')})")
                continue
            labels.append({"annotator": a["workerId"], "pair_id": pid, "shown": a["shown"],
                           "swapped": bool(line.get("swapped")), "rationale": a.get("rationale", ""),
                           "seconds": a.get("seconds")})
        pairs.append({"pair_id": pid, "line": line})
    return pairs, labels, problems


def output_manifest_uri(desc: dict) -> str:
    """Where a job's output manifest is, from DescribeLabelingJob."""
    uri = (desc.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri")
    if uri:
        return uri
    base = desc["OutputConfig"]["S3OutputPath"].rstrip("/")
    return f"{base}/{desc['LabelingJobName']}/manifests/output/output.manifest"


def collect(job_name: str, s3, sagemaker) -> dict[str, Any]:
    """Describe the job, read its pairs and output manifest; returns {pairs, labels, problems, status, job}."""
    desc = sagemaker.describe_labeling_job(LabelingJobName=job_name)
    status = desc["LabelingJobStatus"]
    if status not in ("Completed", "Stopped"):
        raise CloudftError(f"labeling job {job_name} is {status}",
                           hint="collect once it is Completed (or Stopped, for partial labels)"
                           + (f"; failure: {desc.get('FailureReason')}" if status == "Failed" else ""))
    manifest_uri = desc["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]
    pairs_uri = manifest_uri.rsplit("/", 1)[0] + "/pairs.jsonl"
    originals = {p["pair_id"]: p for p in map(json.loads, filter(str.strip, _read(s3, pairs_uri).splitlines()))}
    seen, labels, problems = collect_labels(_read(s3, output_manifest_uri(desc)), s3)
    missing = [s["pair_id"] for s in seen if s["pair_id"] not in originals]
    if missing:
        raise CloudftError(f"{len(missing)} output objects are not in {pairs_uri} (e.g. {missing[0]})")
    return {"job": job_name, "status": status, "pairs": list(originals.values()), "labels": labels,
            "problems": problems, "counters": desc.get("LabelCounters", {})}
