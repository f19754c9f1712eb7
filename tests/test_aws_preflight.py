"""AWS preflight rules (cloudft/providers/aws/preflight.py): each documented rule catches its bad case on the plan,
again on the request actually sent (a reverted fix is refused before anything is sent), and the dry run evaluates
a stack's real policies instead of answering "allowed"."""

from __future__ import annotations

import json

import pytest

from aws_fixtures import (BUCKET, EXAMPLES, ROLE_NAME, aws_env, moto_endpoint, plan_for,  # noqa: F401
                          role_values, write_spec)
from cloudft.errors import CloudftError
from cloudft.providers.aws import permissions, submit
from cloudft.providers.aws.preflight import gt_manifest_lines
from cloudft.preflight import enforce, run_rules
from test_aws_dryrun import no_aws  # noqa: F401


def _rules(prov, plan) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in prov.preflight(plan):
        out.setdefault(f.rule, []).append(f)
    return out


def _spec(tmp_path, extra="", compute="", name="pre"):
    body = compute or "compute:\n  instance_type: ml.g5.12xlarge\n  spot: true\n  max_runtime_hours: 2\n"
    path = tmp_path / f"{name}.yaml"
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "q.jsonl").write_text((EXAMPLES / "data" / "quickstart.jsonl").read_text())
    path.write_text(f"name: {name}\nbase_model: Qwen/Qwen2.5-0.5B-Instruct\ndata: {{train: data/q.jsonl}}\n{body}"
                    f"aws:\n  region: us-east-1\n  bucket: b\n  role_arn: arn:aws:iam::111122223333:role/r\n{extra}")
    return path


def test_sft_dpo_example_sends_no_volume_key_and_a_reverted_fix_is_caught(no_aws, monkeypatch):
    prov, plan = plan_for(EXAMPLES / "aws-sft-dpo.yaml")
    assert "aws.volume-kms-local-storage" not in _rules(prov, plan)
    requests = prov.submit(plan, dry_run=True)
    pipeline = next(r["params"] for r in requests if r["operation"] == "CreatePipeline")
    steps = json.loads(pipeline["PipelineDefinition"])["Steps"]
    assert all("VolumeKmsKeyId" not in s["Arguments"]["ResourceConfig"] for s in steps)
    assert all(s["Arguments"]["OutputDataConfig"]["KmsKeyId"] for s in steps)  # outputs stay encrypted

    def reverted(plan, section):  # the old behaviour: the key on every type
        return {"InstanceType": plan.estimate.instance.type, "InstanceCount": plan.estimate.instance.count,
                "VolumeSizeInGB": plan.spec.compute.volume_gb, "VolumeKmsKeyId": section.kms_key_arn}

    monkeypatch.setattr(submit, "resource_config", reverted)
    found = _rules(prov, plan)["aws.volume-kms-local-storage"]
    assert "ml.g5.12xlarge" in found[0].message and found[0].field == "aws.kms_key_arn"
    with pytest.raises(CloudftError, match="preflight: 2 problems") as err:
        enforce(plan, prov.preflight(plan))
    assert "examples/aws-sft-dpo.yaml" in err.value.message and "VolumeKmsKeyId" in err.value.message
    with pytest.raises(CloudftError, match="CreatePipeline would be refused"):  # and on the request itself
        prov.submit(plan, dry_run=True)


def test_a_type_without_local_storage_keeps_its_volume_key(no_aws, tmp_path):
    prov, plan = plan_for(_spec(tmp_path, "  kms_key_arn: arn:aws:kms:us-east-1:111122223333:key/k\n",
                                compute="compute:\n  instance_type: ml.p4d.24xlarge\n"))
    assert "VolumeKmsKeyId" not in submit.resource_config(plan, prov.section)  # p4d: NVMe
    from cloudft.planner.catalog import has_local_storage

    assert not has_local_storage("ml.m5.xlarge") and has_local_storage("ml.g6e.2xlarge")


def test_spot_wait_must_cover_the_runtime(no_aws, tmp_path):
    prov, plan = plan_for(_spec(tmp_path, "  max_wait_hours: 1\n"))
    (f,) = _rules(prov, plan)["aws.spot-max-wait"]
    assert f.severity == "error" and "3600" in f.message and "7200" in f.message
    prov, plan = plan_for(_spec(tmp_path, "  max_wait_hours: 2\n", name="equal"))  # equal is allowed (botocore)
    assert "aws.spot-max-wait" not in _rules(prov, plan)


def test_spot_needs_a_checkpoint(no_aws, tmp_path, monkeypatch):
    prov, plan = plan_for(_spec(tmp_path))
    assert "aws.spot-checkpoint" not in _rules(prov, plan)
    monkeypatch.setattr(submit, "checkpoint_config", lambda stage: {})
    assert _rules(prov, plan)["aws.spot-checkpoint"][0].severity == "error"


def test_instance_offered_in_the_region_from_the_catalog(no_aws, tmp_path, monkeypatch):
    from cloudft.planner.prices import refresh

    monkeypatch.setenv("CLOUDFT_HOME", str(tmp_path / "home"))
    prov, plan = plan_for(_spec(tmp_path, compute="compute:\n  instance_type: ml.g6e.2xlarge\n"))
    assert "aws.instance-in-region" not in _rules(prov, plan)  # the bundled catalog is priced in us-east-1
    # a refresh whose price list has no price for the type in the region: not offered there
    refresh("aws", region="us-east-1",
            fetch=lambda itype, region: {} if itype == "ml.g6e.2xlarge" else {"on_demand_per_hour": 1.0})
    (f,) = _rules(prov, plan)["aws.instance-in-region"]
    assert f.severity == "error" and "not offered" in f.message
    prov, plan = plan_for(_spec(tmp_path, name="west", compute="compute:\n  instance_type: ml.g5.2xlarge\n")
                          .rename(tmp_path / "west.yaml"))
    prov.section = prov.section.model_copy(update={"region": "eu-west-3"})
    (f,) = _rules(prov, plan)["aws.instance-in-region"]
    assert f.severity == "warning" and "refresh" in f.fix


def test_image_must_exist_for_the_region_in_the_sdk_config(no_aws, tmp_path):
    prov, plan = plan_for(_spec(tmp_path))
    assert "aws.image-in-region" not in _rules(prov, plan)
    prov.section = prov.section.model_copy(update={"region": "xx-nowhere-1"})
    (f,) = _rules(prov, plan)["aws.image-in-region"]
    assert f.severity == "error" and "xx-nowhere-1" in f.message


def test_the_default_image_downloads_nothing_at_start_and_a_gap_is_refused_in_a_vpc(no_aws, tmp_path, monkeypatch):
    from cloudft.providers.aws import images

    vpc = "  subnets: [subnet-1]\n  security_group_ids: [sg-1]\n"
    prov, plan = plan_for(_spec(tmp_path, vpc, name="vpc"))
    (f,) = _rules(prov, plan)["aws.image-downloads-at-start"]  # image + wheelhouse meet every requirement
    assert f.severity == "info" and "rouge-score, sacrebleu" in f.message and "trl==1.16.0" in f.message
    # a requirement that neither the image nor the wheelhouse meets would be pip-installed at start
    te = tmp_path / "train_entry"
    te.mkdir()
    for name in ("requirements.txt", "requirements-report.txt"):
        (te / name).write_text((images.train_entry_dir() / name).read_text())
    with open(te / "requirements.txt", "a") as fh:
        fh.write("sacremoses>=0.1\n")
    monkeypatch.setattr(images, "train_entry_dir", lambda: te)
    assert images.check_image(images.DEFAULT_TRANSFORMERS).downloads == ["sacremoses>=0.1"]
    prov, plan = plan_for(_spec(tmp_path, vpc, name="vpc"))
    (f, _) = _rules(prov, plan)["aws.image-downloads-at-start"]
    assert f.severity == "error" and f.field == "aws.image_uri" and "sacremoses>=0.1" in f.message
    assert "not installed" in f.message and "NAT" in f.message
    prov, plan = plan_for(_spec(tmp_path))
    (f, _) = _rules(prov, plan)["aws.image-downloads-at-start"]
    assert f.severity == "warning"  # PyPI may be reachable without a VPC: it downloads at start
    prov, plan = plan_for(_spec(tmp_path, vpc + "  image_uri: 111122223333.dkr.ecr.us-east-1.amazonaws.com/"
                                "cloudft-train:1\n", name="baked"))
    assert "aws.image-downloads-at-start" not in _rules(prov, plan)


def test_role_trust_is_checked_when_the_stack_tells_it(no_aws, tmp_path):
    prov, plan = plan_for(_spec(tmp_path))
    lambda_trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                            "Principal": {"Service": "lambda.amazonaws.com"}}]}
    prov.stack_iam = {"execution": {"arn": prov.section.role_arn, "trust": lambda_trust, "policies": []}}
    (f,) = _rules(prov, plan)["aws.role-trust"]
    assert f.severity == "error" and f.field == "aws.role_arn"


def test_ground_truth_manifest_lines_are_limited_in_bytes():
    line = json.dumps({"source": "é" * 60_000}, ensure_ascii=False)  # 60,012 characters, 120,012 bytes
    (f,) = run_rules([gt_manifest_lines], [line])
    assert f.rule == "aws.groundtruth-manifest-line" and "120,0" in f.message
    assert run_rules([gt_manifest_lines], [json.dumps({"source": "e" * 99_000})]) == []


def _outputs_file(tmp_path, role_arn, policies, trust=None):
    trust = trust or {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                              "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"region": "us-east-1", "bucket": "cloudft-example-artifacts", "role_arn": role_arn,
                                "iam_policies": {"execution": {"arn": role_arn, "trust": trust,
                                                               "policies": policies}}}))
    return path


def test_dry_run_evaluates_the_stacks_policies(no_aws, tmp_path):
    """With --stack the dry run answers iam:SimulatePrincipalPolicy from the stack's documents: the manifest's job
    policy passes; without its logs statement the submit is refused, naming what is missing."""
    role = "arn:aws:iam::111122223333:role/cloudft-sagemaker-exec"
    values = {**role_values(role), "bucket": "cloudft-example-artifacts", "region": "us-east-1"}
    good = permissions.minimum_policy("job", values, {"ecr"})
    prov, plan = plan_for(EXAMPLES / "aws-lora.yaml", stack=str(_outputs_file(tmp_path, role, [good])))
    requests = prov.submit(plan, dry_run=True)
    sims = [r for r in requests if r["operation"] == "SimulatePrincipalPolicy"]
    assert any("ResourceArns" in r["params"] for r in sims)  # cloudft's own check, on the job's resources
    bad = {**good, "Statement": [s for s in good["Statement"] if not any(a.startswith("logs:") for a in s["Action"])]}
    prov, plan = plan_for(EXAMPLES / "aws-lora.yaml", stack=str(_outputs_file(tmp_path, role, [bad])))
    with pytest.raises(CloudftError, match="logs:PutLogEvents on arn:aws:logs:us-east-1:111122223333:log-group"):
        prov.submit(plan, dry_run=True)


def test_dry_run_without_a_stack_never_answers_allowed(no_aws, caplog):
    prov, plan = plan_for(EXAMPLES / "aws-lora.yaml")
    prov.submit(plan, dry_run=True)
    assert "could not verify role" in caplog.text and "AccessDenied" in caplog.text


def test_local_emulator_evaluates_the_roles_own_policies(aws_env):
    """moto lacks iam:SimulatePrincipalPolicy: session.py evaluates the role's policies read from moto, so a role
    without the pipeline permissions is refused before anything is created."""
    iam = aws_env["boto"].client("iam")
    iam.delete_role_policy(RoleName=ROLE_NAME, PolicyName="cloudft-pipeline")
    try:
        spec = write_spec(aws_env["tmp"], aws_env["role_arn"], name="norole",
                          stages="stages:\n  - sft\n  - method: dpo\n    data: {train: data/preferences.jsonl, "
                                 "format: preference}")
        prov, plan = plan_for(spec)
        with pytest.raises(CloudftError, match="sagemaker:CreateTrainingJob on .*training-job/pipelines-"):
            prov.submit(plan)
        assert aws_env["boto"].client("sagemaker").list_pipelines()["PipelineSummaries"] == []
    finally:
        from aws_fixtures import role_policies

        iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="cloudft-pipeline",
                            PolicyDocument=json.dumps(role_policies(aws_env["role_arn"])["pipeline"]))
