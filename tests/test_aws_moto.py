"""The AWS provider against a local AWS endpoint (moto server): submit → status → logs → artifacts →
deploy → invoke → undeploy, idempotent resubmits, injected throttling/5xx, and calls moto lacks (Stubber)."""

from __future__ import annotations

import io
import json
import tarfile
import time
import urllib.request

import pytest
from botocore.stub import Stubber

from aws_fixtures import BUCKET, REGION, aws_env, moto_endpoint, plan_for, write_spec  # noqa: F401

CREATE = "SageMaker.CreateTrainingJob"


def _jobs(boto, prefix: str) -> list[str]:
    return [j["TrainingJobName"] for j in boto.client("sagemaker").list_training_jobs(NameContains=prefix,
                                                                                     MaxResults=100)
            ["TrainingJobSummaries"]]


def _put_model_tar(boto, uri: str, files: dict[str, str]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bucket, key = uri[5:].split("/", 1)
    boto.client("s3").put_object(Bucket=bucket, Key=key, Body=buf.getvalue())


def test_submit_operate_and_serve_end_to_end(aws_env):
    boto = aws_env["boto"]
    spec = write_spec(aws_env["tmp"], aws_env["role_arn"], name="e2e",
                      extra="  tags: {team: ml}\n", stages="method: sft\nsecrets: {HF_TOKEN: 'secretsmanager:hf'}")
    prov, plan = plan_for(spec)
    rec = prov.submit(plan)
    assert rec.provider == "aws" and rec.external_id.startswith("cft-e2e-")
    sm = boto.client("sagemaker")
    job = sm.describe_training_job(TrainingJobName=rec.external_id)
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"]["MaxWaitTimeInSeconds"] > job["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert job["CheckpointConfig"]["S3Uri"].startswith(f"s3://{BUCKET}/cloudft/checkpoints/e2e/")
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train", "code", "sm_drivers"]
    sent = [b for b in aws_env["faults"].bodies[CREATE] if b["TrainingJobName"] == rec.external_id][-1]
    assert json.loads(sent["Environment"]["CLOUDFT_SECRET_REFS"]) == {"HF_TOKEN": "secretsmanager:hf"}
    assert "HF_TOKEN" not in json.dumps(sent.get("HyperParameters") or {})
    assert {"Key": "team", "Value": "ml"} in sent["Tags"]
    # the dataset is in S3 under its version; the code channel carries run.json with container paths
    version = plan.stages[0].run_config.dataset_versions["train"]
    s3 = boto.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="cloudft/")["Contents"]]
    assert any(k.startswith(f"cloudft/datasets/{version}/") for k in keys)
    run_key = next(k for k in keys if k.endswith("input/code/run.json"))
    run_json = json.loads(s3.get_object(Bucket=BUCKET, Key=run_key)["Body"].read())
    assert run_json["data"]["train"].startswith("/opt/ml/input/data/train/")
    assert run_json["outputs"]["output_dir"] is None and run_json["env_secrets"] == ["HF_TOKEN"]
    # status (moto completes jobs at once)
    assert rec.status == "completed" and rec.meta["secondary_status"] == "Completed"

    # logs: the platform writes the container's stdout to CloudWatch
    logs = boto.client("logs")
    group, stream = "/aws/sagemaker/TrainingJobs", f"{rec.external_id}/algo-1-1700000000"
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    lines = ['##cloudft {"event": "train_start", "stage": 0, "max_steps": 2}', "plain line",
             '##cloudft {"event": "done", "output_dir": "/opt/ml/model"}']
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)])
    assert list(prov.logs(rec)) == lines
    assert list(prov.logs(rec, follow=True)) == lines

    # artifacts: the job's model.tar.gz holds the adapter, metrics and report
    uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    _put_model_tar(boto, uri, {"adapter_config.json": '{"r": 16}', "metrics.json": '{"train_loss": 1.5}',
                               "report.md": "# report\n"})
    out = prov.artifacts(rec, aws_env["tmp"] / "dl")
    assert json.loads((out / "metrics.json").read_text()) == {"train_loss": 1.5}
    assert (out / "adapter_config.json").exists() and (out / "report.md").exists()

    # deploy → invoke → undeploy
    result = prov.deploy(rec, instance_type="ml.g4dn.xlarge", endpoint_name="e2e-endpoint")
    assert result["status"] == "InService"
    model = sm.describe_model(ModelName=result["model"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == uri
    env = model["PrimaryContainer"]["Environment"]
    assert env["SM_VLLM_MODEL"] == "Qwen/Qwen2.5-0.5B-Instruct" and env["SM_VLLM_ENABLE_LORA"] == "true"
    assert "huggingface-vllm" in model["PrimaryContainer"]["Image"]
    cfg = sm.describe_endpoint_config(EndpointConfigName=result["endpoint_config"])
    assert cfg["ProductionVariants"][0]["InstanceType"] == "ml.g4dn.xlarge"
    answer = {"choices": [{"text": " The sum is 102."}]}
    req = urllib.request.Request(f"{aws_env['url']}/moto-api/static/sagemaker/endpoint-results", method="POST",
                                 data=json.dumps({"results": [{"Body": json.dumps(answer),
                                                               "ContentType": "application/json"}],
                                                  "region": REGION}).encode())
    urllib.request.urlopen(req).read()
    assert prov.invoke("e2e-endpoint", "Compute 65 + 37.") == " The sum is 102."
    prov.undeploy("e2e-endpoint")
    assert "e2e-endpoint" not in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    assert result["model"] not in [m["ModelName"] for m in sm.list_models()["Models"]]
    from cloudft.errors import CloudftError

    with pytest.raises(CloudftError, match="no endpoint"):
        prov.undeploy("e2e-endpoint")


def test_resubmitting_the_same_spec_does_not_start_a_second_job(aws_env):
    from cloudft.registry import Registry

    spec = write_spec(aws_env["tmp"], aws_env["role_arn"], name="twice")
    prov, plan = plan_for(spec)
    first = prov.submit(plan)
    prov2, plan2 = plan_for(spec)
    second = prov2.submit(plan2)
    assert second.run_id == first.run_id and second.external_id == first.external_id
    assert _jobs(aws_env["boto"], "cft-twice-") == [first.external_id]
    assert len(Registry().list(provider="aws")) == 1
    # an explicit rerun is new work: a new job name series and a fresh checkpoint prefix
    prov3, plan3 = plan_for(spec, rerun=True)
    third = prov3.submit(plan3)
    assert third.external_id != first.external_id and third.external_id.startswith("cft-twice-")
    assert plan3.stages[0].locations.checkpoint_uri != plan.stages[0].locations.checkpoint_uri
    assert plan3.stages[0].run_config.outputs.checkpoint_dir is None  # SageMaker syncs /opt/ml/checkpoints


def test_throttling_and_lost_responses_leave_exactly_one_job(aws_env):
    faults = aws_env["faults"]
    faults.plan(CREATE, [("before", 400, "ThrottlingException"), ("before", 503, "ServiceUnavailable"),
                         ("after", 500, "InternalFailure")])
    spec = write_spec(aws_env["tmp"], aws_env["role_arn"], name="flaky")
    prov, plan = plan_for(spec)
    before = faults.seen.get(CREATE, 0)
    rec = prov.submit(plan)
    assert faults.seen[CREATE] - before == 4  # three failures retried by botocore, then success
    assert _jobs(aws_env["boto"], "cft-flaky-") == [rec.external_id]


def test_create_answered_resource_in_use_adopts_the_job(aws_env):
    """A retried create whose first attempt went through answers ResourceInUse: that job is the run's."""
    aws_env["faults"].plan(CREATE, [("after", 400, "ResourceInUse")])
    spec = write_spec(aws_env["tmp"], aws_env["role_arn"], name="inuse")
    prov, plan = plan_for(spec)
    rec = prov.submit(plan)
    assert prov.handle(rec).adopted is True
    assert _jobs(aws_env["boto"], "cft-inuse-") == [rec.external_id]


def test_stop_uses_stop_training_job(aws_env):
    """moto lacks StopTrainingJob / StopPipelineExecution: checked with Stubber against the service model."""
    from cloudft.providers.aws.operate import stop

    sm = aws_env["boto"].client("sagemaker")
    execution = "arn:aws:sagemaker:us-east-1:111122223333:pipeline/p/execution/e1"
    with Stubber(sm) as stub:
        stub.add_response("stop_training_job", {}, {"TrainingJobName": "cft-x-abc-1"})
        stub.add_response("stop_pipeline_execution", {"PipelineExecutionArn": execution},
                          {"PipelineExecutionArn": execution})  # botocore adds the idempotency token
        stop(sm, "job", "cft-x-abc-1")
        stop(sm, "pipeline", execution)
        stub.assert_no_pending_responses()


def test_secrets_are_resolved_inside_the_container(aws_env, monkeypatch):
    """The launcher fetches Secrets Manager references into env vars with the job's credentials."""
    import importlib.util

    from cloudft.providers.aws.staging import LAUNCHER, TEMPLATES

    sm = aws_env["boto"].client("secretsmanager")
    arn = sm.create_secret(Name="cloudft/hf-token-test", SecretString="hf_dummy_value")["ARN"]
    spec = importlib.util.spec_from_file_location("cloudft_launch", TEMPLATES / LAUNCHER)
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)
    env = {"CLOUDFT_SECRET_REFS": json.dumps({"HF_TOKEN": arn, "OTHER": "secretsmanager:cloudft/hf-token-test"})}
    assert sorted(launch.resolve_secrets(env)) == ["HF_TOKEN", "OTHER"]
    assert env["HF_TOKEN"] == env["OTHER"] == "hf_dummy_value" and "CLOUDFT_SECRET_REFS" not in env


def test_two_stages_run_as_one_pipeline_execution(aws_env):
    stages = "stages:\n  - sft\n  - method: dpo\n    data: {train: data/preferences.jsonl}"
    spec = write_spec(aws_env["tmp"], aws_env["role_arn"], name="chain", stages=stages)
    prov, plan = plan_for(spec)
    rec = prov.submit(plan)
    sm = aws_env["boto"].client("sagemaker")
    handle = prov.handle(rec)
    assert handle.kind == "pipeline" and ":pipeline/cft-chain-" in rec.external_id
    definition = json.loads(sm.describe_pipeline(PipelineName=handle.pipeline)["PipelineDefinition"])
    dpo = definition["Steps"][1]["Arguments"]
    init = next(c for c in dpo["InputDataConfig"] if c["ChannelName"] == "init_adapter")
    assert init["DataSource"]["S3DataSource"]["S3Uri"] == {"Get": "Steps.stage0-sft.ModelArtifacts.S3ModelArtifacts"}
    assert rec.status in ("running", "completed")
    # the same spec again: the running execution is adopted, not started twice
    prov2, plan2 = plan_for(spec)
    again = prov2.submit(plan2)
    assert again.external_id == rec.external_id
    executions = sm.list_pipeline_executions(PipelineName=handle.pipeline)["PipelineExecutionSummaries"]
    assert len(executions) == 1
