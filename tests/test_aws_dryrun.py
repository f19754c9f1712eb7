"""`--dry-run` for the AWS provider: real submit code, recorded requests, botocore-validated, no credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aws_fixtures import EXAMPLES, plan_for

NO_AWS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None,
          "AWS_PROFILE": None, "AWS_ENDPOINT_URL": None, "AWS_DEFAULT_REGION": None, "AWS_REGION": None}


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    for key in NO_AWS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _ops(requests):
    return [(r["service"], r["operation"]) for r in requests]


def test_single_stage_dry_run_is_the_training_job_request(no_aws):
    from cloudft.providers.aws.dryrun import validate_request

    prov, plan = plan_for(EXAMPLES / "aws-lora.yaml")
    requests = prov.submit(plan, dry_run=True)
    json.dumps(requests)  # one JSON document
    ops = _ops(requests)
    assert ops.count(("sagemaker", "CreateTrainingJob")) == 1
    assert ("s3", "HeadObject") in ops and ("iam", "GetRole") in ops
    for r in requests:
        if r["operation"] != "PutObject":
            validate_request(r["service"], r["operation"], r["params"])
    job = next(r["params"] for r in requests if r["operation"] == "CreateTrainingJob")
    assert job["TrainingJobName"].startswith("cft-aws-lora-quickstart-") and job["TrainingJobName"].endswith("-1")
    assert job["EnableManagedSpotTraining"] is True
    stop = job["StoppingCondition"]
    assert stop == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 6 * 3600}
    assert job["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert job["CheckpointConfig"]["S3Uri"].startswith("s3://cloudft-example-artifacts/cloudft/checkpoints/")
    assert "huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312" in job["AlgorithmSpecification"][
        "TrainingImage"]
    assert job["ResourceConfig"] == {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert set(channels) >= {"train", "code", "sm_drivers"}
    version = plan.stages[0].run_config.dataset_versions["train"]
    assert channels["train"] == f"s3://cloudft-example-artifacts/cloudft/datasets/{version}/"
    # the dataset upload goes to the same versioned key
    puts = [r["params"]["Key"] for r in requests if r["operation"] == "PutObject"]
    assert any(k.startswith(f"cloudft/datasets/{version}/") for k in puts)
    assert any(k.endswith("/input/code/run.json") for k in puts)
    assert any(k.endswith("/input/code/cloudft_launch.py") for k in puts)
    # secrets: a reference in the environment, never in hyperparameters
    assert json.loads(job["Environment"]["CLOUDFT_SECRET_REFS"]) == {"HF_TOKEN": "secretsmanager:cloudft/hf-token"}
    assert "HF_TOKEN" not in json.dumps(job["HyperParameters"])
    assert {"Key": "team", "Value": "ml-platform"} in job["Tags"]


def test_dry_run_names_are_deterministic(no_aws):
    prov, plan = plan_for(EXAMPLES / "aws-lora.yaml")
    first = next(r for r in prov.submit(plan, dry_run=True) if r["operation"] == "CreateTrainingJob")
    prov2, plan2 = plan_for(EXAMPLES / "aws-lora.yaml")
    second = next(r for r in prov2.submit(plan2, dry_run=True) if r["operation"] == "CreateTrainingJob")
    assert plan.run_id != plan2.run_id
    assert first["params"]["TrainingJobName"] == second["params"]["TrainingJobName"]


def test_two_stage_cli_dry_run_is_a_pipeline(no_aws, tmp_path):
    """`cloudft submit --dry-run --json` prints one JSON array; the DPO step consumes the SFT step's adapter."""
    env = {k: v for k, v in os.environ.items() if k not in NO_AWS}
    proc = subprocess.run([sys.executable, "-m", "cloudft.cli.main", "submit", str(EXAMPLES / "aws-sft-dpo.yaml"),
                           "--provider", "aws", "--dry-run", "--json"], capture_output=True, text=True, env=env,
                          timeout=240)
    if proc.returncode != 0 and "No module named cloudft.cli.main" in proc.stderr:
        pytest.skip("cloudft.cli.main is not runnable as a module")
    assert proc.returncode == 0, proc.stderr[-3000:]
    requests = json.loads(proc.stdout)
    ops = _ops(requests)
    assert ("sagemaker", "CreateTrainingJob") not in ops
    assert ops.count(("sagemaker", "CreatePipeline")) == 1 and ops.count(("sagemaker", "StartPipelineExecution")) == 1
    create = next(r["params"] for r in requests if r["operation"] == "CreatePipeline")
    steps = json.loads(create["PipelineDefinition"])["Steps"]
    assert [s["Name"] for s in steps] == ["stage0-sft", "stage1-dpo"]
    dpo = steps[1]["Arguments"]
    init = next(c for c in dpo["InputDataConfig"] if c["ChannelName"] == "init_adapter")
    assert init["DataSource"]["S3DataSource"]["S3Uri"] == {"Get": "Steps.stage0-sft.ModelArtifacts.S3ModelArtifacts"}
    for step in steps:
        args = step["Arguments"]
        assert args["ResourceConfig"]["InstanceCount"] == 2
        # ml.g5.12xlarge has local NVMe storage: SageMaker refuses a VolumeKmsKeyId there (catalog local_storage)
        assert "VolumeKmsKeyId" not in args["ResourceConfig"]
        assert args["VpcConfig"]["Subnets"] and args["EnableInterContainerTrafficEncryption"] is True
        assert args["OutputDataConfig"]["KmsKeyId"].startswith("arn:aws:kms:")
    start = next(r["params"] for r in requests if r["operation"] == "StartPipelineExecution")
    assert len(start["ClientRequestToken"]) >= 32
    # torchrun: 2 nodes x 4 GPUs, recorded in each stage's run.json and the SDK's distributed.json upload
    assert any(r["params"]["Key"].endswith("sm_drivers/distributed.json") for r in requests
               if r["operation"] == "PutObject")


def test_validate_reports_missing_bucket_and_bad_keys(tmp_path):
    from cloudft.errors import CloudftError, SpecError
    from cloudft.providers import get_provider
    from cloudft.spec import load_spec_text

    prov = get_provider("aws")
    spec = load_spec_text("name: x\nbase_model: m\ndata: {train: a.jsonl}\naws:\n  region: us-east-1\n"
                          "  bukcet: b\n", path="s.yaml")
    with pytest.raises(SpecError) as err:
        prov.validate(spec)
    assert "s.yaml:6:3" in err.value.render() and "did you mean 'bucket'" in err.value.render()
    spec = load_spec_text("name: x\nbase_model: m\ndata: {train: a.jsonl}\naws: {region: us-east-1}\n")
    prov.validate(spec)  # planning needs no bucket or role ...
    with pytest.raises(CloudftError, match="aws.bucket is not set"):
        prov.check_submit(spec)  # ... submitting does
    spec = load_spec_text("name: x\nbase_model: m\ndata: {train: a.jsonl}\nsecrets: {HF_TOKEN: 'env:HF'}\n"
                          "aws: {region: us-east-1, bucket: b, role_arn: 'arn:aws:iam::1:role/r'}\n", path="s.yaml")
    with pytest.raises(SpecError) as err:
        prov.validate(spec)
    assert "s.yaml:4:11" in err.value.render() and "an env: value would be written into the job request" in \
        err.value.render()


def test_stack_outputs_fill_missing_keys(monkeypatch):
    """--stack NAME: the stack's outputs sit under the spec's own values."""
    import types

    from cloudft.providers import get_provider
    from cloudft.spec import load_spec_text

    fake = types.ModuleType("cloudft.infra.outputs")
    fake.stack_outputs = lambda provider, name: {"bucket": f"{name}-bucket", "region": "eu-west-1",
                                                 "role_arn": "arn:aws:iam::1:role/stack", "unrelated": 1}
    monkeypatch.setitem(sys.modules, "cloudft.infra.outputs", fake)
    spec = load_spec_text("name: x\nbase_model: m\ndata: {train: a.jsonl}\naws: {region: us-west-2}\n")
    prov = get_provider("aws")
    prov.stack = "dev"
    prov.validate(spec)
    assert (prov.section.bucket, prov.section.region, prov.section.role_arn) == (
        "dev-bucket", "us-west-2", "arn:aws:iam::1:role/stack")
