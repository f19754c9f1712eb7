"""The typed plan: built once and frozen, one instance choice read by every provider, --rerun meaning the same on
every provider, what each stage hands to the next, and capabilities refused at validate."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap

import pytest

from cloudft.errors import CloudftError, SpecError
from cloudft.plan import build_plan
from cloudft.providers import get_provider
from cloudft.spec import load_spec
from helpers import EXAMPLE_DATA, REPO

EXAMPLES = REPO / "examples"
AWS = "aws: {region: us-east-1, bucket: b, role_arn: 'arn:aws:iam::111122223333:role/r'}\n"
AZURE = ("azure: {subscription_id: 00000000-0000-0000-0000-000000000000, resource_group: rg, workspace: ws}\n")


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_HOME", str(tmp_path / "home"))
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _spec(tmp_path, body: str, name: str = "typed"):
    shutil.copytree(EXAMPLE_DATA, tmp_path / "data", dirs_exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        base_model: Qwen/Qwen2.5-0.5B-Instruct
        data: {{train: data/quickstart.jsonl}}
    """) + textwrap.dedent(body))
    return path


def _plan(path, provider: str, rerun: bool = False):
    spec = load_spec(path)
    prov = get_provider(provider)
    prov.validate(spec)
    return prov, build_plan(spec, provider, locate=prov.locate, rerun=rerun)


def test_plan_is_frozen_and_built_once(tmp_path):
    _, plan = _plan(_spec(tmp_path, ""), "local")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.warnings = ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.stages[0].locations.output_dir = "/elsewhere"
    assert plan.to_dict()["instance"]["chosen"] == "this machine"


@pytest.mark.parametrize("provider", ["local", "aws", "azure"])
def test_rerun_gives_a_new_checkpoint_location_on_every_provider(tmp_path, provider):
    path = _spec(tmp_path, AWS if provider == "aws" else AZURE if provider == "azure" else "")
    _, one = _plan(path, provider)
    _, two = _plan(path, provider)
    _, fresh = _plan(path, provider, rerun=True)

    def where(plan):
        loc = plan.stages[0].locations
        return loc.checkpoint_uri or loc.checkpoint_dir

    assert where(one) == where(two)  # the same spec and data resume
    assert where(fresh) != where(one) and fresh.stages[0].work_key != one.stages[0].work_key
    assert fresh.key != one.key  # AWS names its jobs by it: a rerun is a new job


def test_rerun_reaches_the_aws_request(tmp_path):
    path = _spec(tmp_path, AWS + "compute: {instance_type: ml.g5.xlarge}\n")
    prov, plan = _plan(path, "aws")
    job = next(r["params"] for r in prov.submit(plan, dry_run=True) if r["operation"] == "CreateTrainingJob")
    prov, fresh = _plan(path, "aws", rerun=True)
    again = next(r["params"] for r in prov.submit(fresh, dry_run=True) if r["operation"] == "CreateTrainingJob")
    assert again["CheckpointConfig"]["S3Uri"] != job["CheckpointConfig"]["S3Uri"]
    assert again["TrainingJobName"] != job["TrainingJobName"]


def test_one_instance_choice_read_by_aws_and_azure(tmp_path):
    # an explicit instance_count of 1 is a count of 1 (AWS used to read it as "unset"); GPUs come from the catalog
    path = _spec(tmp_path, AWS + "compute: {instance_type: ml.g5.12xlarge, instance_count: 1}\n")
    prov, plan = _plan(path, "aws")
    choice = plan.estimate.instance
    assert (choice.type, choice.count, choice.gpus, choice.strategy) == ("ml.g5.12xlarge", 1, 4, "ddp")
    job = next(r["params"] for r in prov.submit(plan, dry_run=True) if r["operation"] == "CreateTrainingJob")
    assert job["ResourceConfig"]["InstanceCount"] == 1 and job["ResourceConfig"]["InstanceType"] == "ml.g5.12xlarge"
    rc = plan.stages[0].run_config.distributed
    assert (rc.nnodes, rc.nproc_per_node, rc.launcher) == (1, 4, "torchrun")

    path = _spec(tmp_path, AZURE + "compute: {instance_type: Standard_NC96ads_A100_v4, instance_count: 2}\n", "az")
    prov, plan = _plan(path, "azure")
    assert (plan.estimate.instance.gpus, plan.estimate.instance.count) == (4, 2)
    out = prov.submit(plan, dry_run=True, out_dir=str(tmp_path / "out"))
    from azure.ai.ml import load_job

    job = load_job(tmp_path / "out" / "job.yml")
    assert job.resources.instance_count == 2 and job.distribution.process_count_per_instance == 4
    assert out[-1]["instance_type"] == "Standard_NC96ads_A100_v4"


def test_aws_instance_count_is_not_a_second_setting(tmp_path):
    path = _spec(tmp_path, AWS.replace("}", ", instance_count: 2}"))
    with pytest.raises(SpecError, match="set compute.instance_count"):
        _plan(path, "aws")


@pytest.mark.parametrize("peft,kind,field", [("lora", "adapter", "init_adapter"), ("none", "full_weights", "init_model")])
def test_stage_hand_off_is_typed_and_follows_peft(tmp_path, peft, kind, field):
    pref = EXAMPLE_DATA / "preferences.jsonl"
    body = f"peft: {{type: {peft}}}\nstages: [sft, {{method: dpo, data: {{train: {pref}}}}}]\n"
    _, plan = _plan(_spec(tmp_path, body), "local")
    sft, dpo = plan.stages
    assert sft.produces == kind and dpo.links.init_from == 0 and dpo.links.init_kind == kind
    outputs = dpo.run_config.outputs
    other = "init_model" if field == "init_adapter" else "init_adapter"
    assert getattr(outputs, field) == sft.locations.output_dir and getattr(outputs, other) is None
    assert plan.to_dict()["stages"][1]["starts_from"] == {"init_from": 0, "init_kind": kind}
    # AWS: a channel named like the field; Azure: an input named like it
    _, aws = _plan(_spec(tmp_path, body + AWS, "aws"), "aws")
    assert getattr(aws.stages[1].locations, field) == f"/opt/ml/input/data/{field}"
    _, az = _plan(_spec(tmp_path, body + AZURE, "az"), "azure")
    assert getattr(az.stages[1].locations, field).endswith("/0-sft/adapter/")


def test_reward_and_rl_links(tmp_path):
    pref = EXAMPLE_DATA / "preferences.jsonl"
    body = f"stages: [sft, {{method: reward, data: {{train: {pref}}}}}, rl]\n"
    _, plan = _plan(_spec(tmp_path, body), "local")
    sft, reward, rl = plan.stages
    assert reward.links.init_from is None and reward.produces == "reward_model"  # a reward model starts from base
    assert (rl.links.init_from, rl.links.reward_from) == (0, 1)
    assert rl.run_config.reward_model == reward.locations.output_dir


def test_capabilities_refuse_what_local_cannot_do(tmp_path):
    path = _spec(tmp_path, "compute: {spot: true, instance_count: 2}\n")
    with pytest.raises(SpecError) as err:
        _plan(path, "local")
    text = err.value.render()
    assert f"{path}:4:11" in text and "compute.spot" in text and "no spot capacity" in text
    assert "compute.instance_count" in text and "--provider aws" in text
    _plan(_spec(tmp_path, AWS + "compute: {spot: true, instance_count: 2}\n", "ok"), "aws")  # aws can


def test_plan_needs_no_bucket_or_role_but_submit_does(tmp_path):
    path = _spec(tmp_path, "aws: {region: us-east-1}\n")
    prov, plan = _plan(path, "aws")
    assert plan.estimate.cost is not None and plan.stages[0].locations.output_uri.startswith("s3://<aws.bucket>/")
    with pytest.raises(CloudftError, match="aws.bucket is not set"):
        prov.check_submit(plan.spec)


def test_remote_data_is_one_notion_everywhere(tmp_path):
    """An Azure ML data asset (azureml:NAME:VERSION) is remote like a URI: planned as it is, never looked up as a
    local file; a local validation file beside remote training data is refused at validate, with its line."""
    path = _spec(tmp_path, AZURE, "asset")
    path.write_text(path.read_text().replace("data/quickstart.jsonl", "azureml:my-train:3"))
    _, plan = _plan(path, "azure")
    assert plan.data[0].train == "azureml:my-train:3" and not plan.data[0].local
    assert plan.stages[0].locations.train == "azureml:my-train:3"
    mixed = _spec(tmp_path, AWS, "mixed")
    mixed.write_text(mixed.read_text().replace("data/quickstart.jsonl",
                                               "s3://b/train.jsonl, validation: data/quickstart.jsonl"))
    with pytest.raises(SpecError) as err:
        load_spec(mixed)
    assert "data.validation is a local file while data.train is in the cloud" in err.value.render()
    assert f"{mixed}:3:" in err.value.render()


def test_run_configs_carry_the_plans_memory_estimate_for_failure_messages():
    """train_entry cannot import cloudft, so what the planner expected travels in the run config (`planned`):
    an out-of-memory failure names it (tests/test_failures.py)."""
    from cloudft.plan import build_plan
    from cloudft.spec import load_spec

    plan = build_plan(load_spec(REPO / "examples" / "lora-llama3-8b.yaml"), "aws")
    planned = plan.stages[0].run_config.planned
    assert planned.peak_memory_gb == plan.estimate.memory.peak_gb_per_device
    assert planned.instance == plan.estimate.instance.type and planned.device_memory_gb == 24.0
    local = build_plan(load_spec(REPO / "examples" / "quickstart.yaml"), "local").stages[0].run_config.planned
    assert local.instance == "this machine"


def test_an_absurd_but_valid_spec_plans_with_its_absurd_estimate(tmp_path):
    """The planner's figure is not user input: a valid spec whose estimate is huge still plans (found by fuzzing:
    a bound on `planned.peak_memory_gb` made build_plan raise a pydantic error)."""
    spec = tmp_path / "big.yaml"
    spec.write_text(f"name: big\nbase_model: meta-llama/Llama-3.1-70B\n"
                    f"data: {{train: {EXAMPLE_DATA / 'quickstart.jsonl'}}}\n"
                    "training: {per_device_batch_size: 4096, max_length: 131072}\n")
    plan = build_plan(load_spec(spec), "local")
    assert plan.stages[0].run_config.planned.peak_memory_gb > 1e6
