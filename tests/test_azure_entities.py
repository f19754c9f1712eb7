"""Azure provider, offline: spec section, dry-run YAML (validated by the SDK, loadable with load_*), entities."""

from __future__ import annotations

import dataclasses

from pathlib import Path

import pytest
import yaml
from azure.ai.ml import load_data, load_environment, load_job, load_online_deployment, load_online_endpoint

from cloudft.errors import CloudftError, SpecError
from cloudft.plan import build_plan
from cloudft.providers.azure import AzureProvider
from cloudft.providers.azure.handle import AzureHandle
from cloudft.providers.azure.deploy import serve_entities, write_serving_yaml
from cloudft.providers.azure.entities import training_environment
from cloudft.providers.azure.section import AzureSection
from cloudft.registry import RunRecord
from cloudft.spec import load_spec, load_spec_text

ROOT = Path(__file__).resolve().parents[1]
LORA = ROOT / "examples" / "azure-lora.yaml"
SFT_DPO = ROOT / "examples" / "azure-sft-dpo.yaml"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_HOME", str(tmp_path / "home"))
    for var in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)


def dry_run(spec_path: Path, out: Path) -> list[dict]:
    prov = AzureProvider()
    spec = load_spec(spec_path)
    prov.validate(spec)
    return prov.submit(build_plan(spec, "azure", locate=prov.locate), dry_run=True, out_dir=str(out))


def test_single_stage_dry_run_writes_command_job_that_loads_and_validates(tmp_path):
    written = dry_run(LORA, tmp_path)
    job = load_job(tmp_path / "job.yml")
    assert job.type == "command"
    job._validate()  # CommandJob's own check (raises on failure)
    assert job.command.startswith("python cloudft_launch.py python -m train_entry --config cloudft_run/stage0.json")
    assert "torchrun" not in job.command and "--train ${{inputs.train}}" in job.command
    assert job.distribution.process_count_per_instance == 1  # Standard_NC24ads_A100_v4 has one GPU
    assert job.resources.instance_type == "Standard_NC24ads_A100_v4" and job.resources.shm_size == "32g"
    raw = yaml.safe_load((tmp_path / "job.yml").read_text())
    assert raw["inputs"]["train"]["path"].startswith("azureml:azure-lora-sft-train:")
    assert job.inputs["train"].path.startswith("azure-lora-sft-train:")
    assert job.outputs["checkpoints"].mode == "rw_mount"
    # checkpoints are keyed by the stage's work (spec + data), not the run, so a resubmit resumes
    ckpt = job.outputs["checkpoints"].path
    assert "/paths/cloudft/checkpoints/azure-lora/0-" in ckpt
    again = tmp_path / "again"
    dry_run(LORA, again)  # a second submit (new run id) of the same spec and data uses the same checkpoints
    assert load_job(again / "job.yml").outputs["checkpoints"].path == ckpt
    assert load_job(again / "job.yml").outputs["adapter"].path != job.outputs["adapter"].path
    assert raw["environment"].startswith("azureml:cloudft-train:")
    # serverless supports no system-assigned identity: the workspace's user-assigned one, by client id
    assert job.identity.type == "managed_identity" and job.identity.client_id == "00000000-0000-0000-0000-0000000000c1"
    assert job.environment_variables["AZURE_CLIENT_ID"] == job.identity.client_id
    # secrets: names only, never values, in the job definition
    assert job.environment_variables["CLOUDFT_SECRETS"] == "HF_TOKEN=hf-token"
    assert job.environment_variables["CLOUDFT_KEY_VAULT"] == "cloudft-kv"
    run_json = yaml.safe_load((tmp_path / "code" / "cloudft_run" / "stage0.json").read_text())
    assert {k: run_json["distributed"][k] for k in ("nnodes", "nproc_per_node", "launcher", "strategy")} == {
        "nnodes": 1, "nproc_per_node": 1, "launcher": "platform", "strategy": "single"}
    assert run_json["tracking"]["mlflow"] is True and run_json["env_secrets"] == ["HF_TOKEN"]
    assert (tmp_path / "code" / "train_entry" / "config.py").exists()
    assert (tmp_path / "code" / "cloudft_launch.py").exists()
    kinds = [w.get("then", "").split(" --file")[0] for w in written if "then" in w]
    assert kinds == ["az ml data create", "az ml data create", "az ml environment create", "az ml job create"][-len(kinds):]
    for data_file in tmp_path.glob("data-*.yml"):
        data = load_data(data_file)
        assert data.type == "uri_file" and Path(data.path).is_file() and data.version == data.tags["cloudft.sha256"]
    env = load_environment(tmp_path / "environment.yml")
    assert env.name == "cloudft-train" and "azureml-mlflow" in str(env.conda_file)


def test_pipeline_dry_run_wires_dpo_to_sft_adapter_spot_two_nodes(tmp_path):
    dry_run(SFT_DPO, tmp_path)
    job = load_job(tmp_path / "job.yml")
    assert job.type == "pipeline"
    result = job._validate(raise_error=False)
    assert result.passed, result.error_messages
    raw = yaml.safe_load((tmp_path / "job.yml").read_text())
    # the documented CLI form (how-to-use-serverless-compute, "Pipeline job"); load_job reads it as "serverless"
    assert raw["settings"] == {"default_compute": "azureml:serverless", "force_rerun": True}
    assert job.settings.default_compute == "serverless"
    sft, dpo = raw["jobs"]["stage0_sft"], raw["jobs"]["stage1_dpo"]
    assert dpo["inputs"]["init_adapter"]["path"] == "${{parent.jobs.stage0_sft.outputs.adapter}}"
    assert "--init-adapter ${{inputs.init_adapter}}" in dpo["component"]["command"]
    for step in (sft, dpo):
        assert step["component"]["is_deterministic"] is False
        assert step["queue_settings"] == {"job_tier": "spot", "priority": "low"}
        assert step["resources"]["instance_count"] == 2
        assert step["distribution"] == {"process_count_per_instance": 2, "type": "pytorch"}
    assert raw["outputs"]["adapter"]["path"].endswith("/1-dpo/adapter/")
    stage1 = yaml.safe_load((tmp_path / "code" / "cloudft_run" / "stage1.json").read_text())
    assert stage1["method"] == "dpo" and stage1["outputs"]["init_adapter"].endswith("/0-sft/adapter/")
    assert {k: stage1["distributed"][k] for k in ("nnodes", "nproc_per_node", "launcher", "strategy")} == {
        "nnodes": 2, "nproc_per_node": 2, "launcher": "platform", "strategy": "ddp"}


def test_environment_version_follows_content():
    a = training_environment(AzureSection())
    assert training_environment(AzureSection()).version == a.version
    b = training_environment(AzureSection(environment={"base_image": "mcr.microsoft.com/other:1"}))
    assert b.version != a.version
    img = training_environment(AzureSection(environment={"image": "acr.azurecr.io/cloudft/train:1"}))
    assert img.image == "acr.azurecr.io/cloudft/train:1" and img.conda_file is None
    assert training_environment(AzureSection(environment={"reference": "azureml:mine:3"})) is None


def test_azure_section_errors_are_located():
    text = LORA.read_text().replace("  key_vault: cloudft-kv", "  key_vualt: cloudft-kv")
    with pytest.raises(SpecError) as err:
        AzureProvider().validate(load_spec_text(text, str(LORA)))
    problem = err.value.problems[0]
    assert problem.field == "azure.key_vualt" and problem.line is not None and "key_vault" in problem.fix


def test_env_secret_refs_and_serverless_without_sku_are_refused():
    text = LORA.read_text().replace("keyvault:hf-token", "env:HF_TOKEN")
    with pytest.raises(CloudftError, match="is not resolved by the azure provider"):
        AzureProvider().validate(load_spec_text(text, str(LORA)))
    text = LORA.read_text().replace("  instance_type: Standard_NC24ads_A100_v4   # 1x A100 80 GB\n", "")
    prov = AzureProvider()
    spec = load_spec_text(text, str(LORA))
    prov.validate(spec)
    plan = build_plan(spec, "azure", locate=prov.locate)
    picked = plan.estimate.instance  # the planner's pick: serverless uses it
    out = prov.submit(plan, dry_run=True, out_dir=None)
    assert picked.type and out[-1]["instance_type"] == picked.type
    unplanned = dataclasses.replace(plan, estimate=dataclasses.replace(
        plan.estimate, instance=dataclasses.replace(picked, type=None)))
    with pytest.raises(CloudftError, match="serverless compute needs an instance type"):
        prov.submit(unplanned, dry_run=True, out_dir=None)


def test_cluster_compute_uses_cluster_and_leaves_tier_to_it(tmp_path):
    text = SFT_DPO.read_text().replace("  priority: low", "  compute: gpu-lowpri")
    prov = AzureProvider()
    spec = load_spec_text(text, str(SFT_DPO))
    prov.validate(spec)
    prov.submit(build_plan(spec, "azure", locate=prov.locate), dry_run=True, out_dir=str(tmp_path))
    raw = yaml.safe_load((tmp_path / "job.yml").read_text())
    assert raw["settings"]["default_compute"] == "azureml:gpu-lowpri"
    assert "queue_settings" not in raw["jobs"]["stage0_sft"]


def test_endpoint_and_deployment_validate_and_round_trip(tmp_path):
    handle = AzureHandle(stages=("0-sft",), job_type="command", azure={},
                         outputs={"0-sft": "azureml://datastores/workspaceblobstore/paths/cloudft/r/0-sft/adapter/"},
                         base_model="Qwen/Qwen2.5-0.5B-Instruct", instance_type="Standard_NC24ads_A100_v4")
    run = RunRecord(run_id="azure-lora-1", name="azure-lora", provider="azure", status="completed",
                    handle=handle.model_dump(mode="json"))
    endpoint, deployment = serve_entities(run, AzureSection(), "azure-lora-abc123", None)
    write_serving_yaml(endpoint, deployment, tmp_path)
    ep = load_online_endpoint(tmp_path / "endpoint.yml")
    dep = load_online_deployment(tmp_path / "deployment.yml")
    assert ep.name == "azure-lora-abc123" and ep.auth_mode == "key"
    assert dep.instance_type == "Standard_NC24ads_A100_v4" and dep.code_configuration.scoring_script == "score.py"
    assert Path(dep.code_configuration.code, "score.py").is_file()
    assert dep.model.path.endswith("/0-sft/adapter/") and dep.environment_variables["CLOUDFT_BASE_MODEL"]
    assert dep.readiness_probe.initial_delay >= 300


def test_stack_outputs_fill_unset_keys_and_spec_wins(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text('{"subscription_id": "sub-from-stack", "resource_group": "rg-stack", "workspace": "ws-stack",'
                       ' "compute": "gpu-cluster", "key_vault": "kv-stack"}')
    text = LORA.read_text().replace("  subscription_id: 00000000-0000-0000-0000-000000000000\n", "")
    prov = AzureProvider()
    prov.stack = str(outputs)
    section = prov.section(load_spec_text(text, str(LORA)))
    assert section.subscription_id == "sub-from-stack" and section.compute == "gpu-cluster"
    assert section.workspace == "cloudft-ws" and section.key_vault == "cloudft-kv"  # the spec's values win


def test_s3_data_is_refused_with_a_clear_error():
    text = LORA.read_text().replace("train: data/quickstart.jsonl", "train: s3://bucket/train.jsonl", 1)
    assert "s3://bucket" in text
    spec = load_spec_text(text, str(LORA))
    prov = AzureProvider()
    with pytest.raises(CloudftError, match="data.train is s3:"):
        prov.validate(spec)
