"""status / logs / stop / artifacts for AWS runs (training jobs and pipeline executions)."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from ...errors import CloudftError
from .staging import split_s3

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
POLL_S = 10.0

JOB_STATUS = {"InProgress": "running", "Completed": "completed", "Failed": "failed",
              "Stopping": "stopping", "Stopped": "stopped"}
PIPELINE_STATUS = {"Executing": "running", "Succeeded": "completed", "Failed": "failed",
                   "Stopping": "stopping", "Stopped": "stopped"}


def job_summary(desc: dict[str, Any]) -> dict[str, Any]:
    """The parts of DescribeTrainingJob a user wants: state, billable time, spot savings, failure."""
    out: dict[str, Any] = {"job_status": desc.get("TrainingJobStatus"),
                           "secondary_status": desc.get("SecondaryStatus")}
    billable = desc.get("BillableTimeInSeconds")
    training = desc.get("TrainingTimeInSeconds")
    if billable is not None:
        out["billable_seconds"] = billable
    if training:
        out["training_seconds"] = training
        if desc.get("EnableManagedSpotTraining") and billable is not None:
            out["spot_savings_pct"] = round((1 - billable / training) * 100, 1)
    if desc.get("FailureReason"):
        out["failure_reason"] = desc["FailureReason"]
    artifacts = (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if artifacts:
        out["model_artifacts"] = artifacts
    return out


def describe(sm, kind: str, external_id: str) -> tuple[str, dict[str, Any]]:
    """(cloudft status, meta) of a training job or pipeline execution."""
    if kind == "pipeline":
        desc = sm.describe_pipeline_execution(PipelineExecutionArn=external_id)
        state = desc.get("PipelineExecutionStatus", "")
        meta: dict[str, Any] = {"pipeline_status": state}
        if desc.get("FailureReason"):
            meta["failure_reason"] = desc["FailureReason"]
        jobs = pipeline_jobs(sm, external_id)
        if jobs:
            meta["jobs"] = jobs
        return PIPELINE_STATUS.get(state, "running"), meta
    desc = sm.describe_training_job(TrainingJobName=external_id)
    return JOB_STATUS.get(desc["TrainingJobStatus"], "running"), job_summary(desc)


def pipeline_jobs(sm, execution_arn: str) -> list[str]:
    """Training job names of a pipeline execution's steps, in start order."""
    from botocore.exceptions import ClientError

    try:
        steps = sm.list_pipeline_execution_steps(PipelineExecutionArn=execution_arn,
                                                 SortOrder="Ascending").get("PipelineExecutionSteps", [])
    except ClientError:
        return []
    jobs = []
    for step in steps:
        arn = (step.get("Metadata") or {}).get("TrainingJob", {}).get("Arn")
        if arn:
            jobs.append(arn.rsplit("/", 1)[-1])
    return jobs


def stream_names(logs, job: str) -> list[str]:
    from botocore.exceptions import ClientError

    names: list[str] = []
    kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{job}/"}
    try:
        while True:
            page = logs.describe_log_streams(**kwargs)
            names += [s["logStreamName"] for s in page.get("logStreams", [])]
            if not page.get("nextToken"):
                return sorted(names)
            kwargs["nextToken"] = page["nextToken"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return []
        raise


def read_new(logs, job: str, tokens: dict[str, Optional[str]]) -> Iterator[str]:
    """Lines added to the job's streams since `tokens` (updated in place)."""
    for stream in stream_names(logs, job):
        while True:
            kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
            if tokens.get(stream):
                kwargs["nextToken"] = tokens[stream]
            page = logs.get_log_events(**kwargs)
            for event in page.get("events", []):
                yield event["message"].rstrip("\n")
            nxt = page.get("nextForwardToken")
            if not page.get("events") or nxt == tokens.get(stream):
                tokens[stream] = nxt
                break
            tokens[stream] = nxt


def stream_logs(sm, logs, kind: str, external_id: str, jobs: list[str], follow: bool,
                poll_s: float = POLL_S) -> Iterator[str]:
    """CloudWatch lines of every job of the run; with `follow`, until the run ends (then a final read)."""
    tokens: dict[str, dict[str, Optional[str]]] = {}
    while True:
        status, meta = describe(sm, kind, external_id)
        names = meta.get("jobs") or jobs or ([external_id] if kind == "job" else [])
        for job in names:
            yield from read_new(logs, job, tokens.setdefault(job, {}))
        if not follow or status in ("completed", "failed", "stopped"):
            if follow:  # lines written between the last read and the end
                for job in names:
                    yield from read_new(logs, job, tokens.setdefault(job, {}))
            return
        time.sleep(poll_s)


def stop(sm, kind: str, external_id: str) -> None:
    if kind == "pipeline":
        sm.stop_pipeline_execution(PipelineExecutionArn=external_id)
    else:
        sm.stop_training_job(TrainingJobName=external_id)


def download_artifacts(s3, model_uri: str, dest: Path) -> Path:
    """Download the job's model.tar.gz (adapter, tokenizer, metrics.json, report.md) and unpack it in `dest`."""
    bucket, key = split_s3(model_uri)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / Path(key).name
    s3.download_file(bucket, key, str(archive))
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
        archive.unlink()
    return dest


def last_model_artifacts(sm, kind: str, external_id: str, jobs: list[str]) -> str:
    """S3 URI of the final stage's model.tar.gz."""
    names = pipeline_jobs(sm, external_id) if kind == "pipeline" else [external_id]
    names = names or jobs
    if not names:
        raise CloudftError("this run has no training job yet", hint="check `cloudft status RUN`")
    desc = sm.describe_training_job(TrainingJobName=names[-1])
    uri = (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if desc["TrainingJobStatus"] != "Completed" or not uri:
        raise CloudftError(f"job {names[-1]} is {desc['TrainingJobStatus']}; it has no outputs yet",
                           hint="wait for it to complete (`cloudft logs RUN --follow`)")
    return uri
