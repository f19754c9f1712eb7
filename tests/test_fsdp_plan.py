"""Sharded training in the plan: `distributed:` in the spec, the strategy the planner chooses (and why), the
memory model it uses, and the hand-off: the stage's run config shards exactly when the plan says sharded, on every
provider (local torchrun, SageMaker's Torchrun driver, Azure ML's PyTorch distribution)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import textwrap

import pytest

from cloudft.errors import CloudftError, SpecError
from cloudft.plan import build_plan
from cloudft.planner.memory import Setup, estimate_memory
from cloudft.providers import get_provider
from cloudft.spec import load_spec, load_spec_text
from helpers import EXAMPLE_DATA, REPO
from test_cli import cloudft

EXAMPLES = REPO / "examples"
FULL_13B = EXAMPLES / "fsdp-llama2-13b-full.yaml"
QLORA_70B = EXAMPLES / "fsdp-qlora-llama3-70b.yaml"
AWS = "aws: {region: us-east-1, bucket: b, role_arn: 'arn:aws:iam::111122223333:role/r'}\n"
AZURE = "azure: {subscription_id: 00000000-0000-0000-0000-000000000000, resource_group: rg, workspace: ws}\n"


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_HOME", str(tmp_path / "home"))
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _spec(tmp_path, body: str, model: str = "meta-llama/Llama-2-13b-hf", name: str = "shard"):
    shutil.copytree(EXAMPLE_DATA, tmp_path / "data", dirs_exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nbase_model: {model}\ndata: {{train: data/quickstart.jsonl}}\n"
                    + textwrap.dedent(body))
    return path


def _plan(path, provider: str):
    spec = load_spec(path)
    prov = get_provider(provider)
    prov.validate(spec)
    return prov, build_plan(spec, provider, locate=prov.locate)


def _agrees(plan) -> None:
    """The plan's strategy is the one every stage runs: sharded in the plan <=> sharding on in the run config."""
    choice = plan.estimate.instance
    for stage in plan.stages:
        dist = stage.run_config.distributed
        assert dist.strategy == choice.strategy
        assert (dist.strategy == "fsdp") == (choice.strategy == "fsdp") == ("FSDP" in choice.distribution)
        assert (dist.nnodes, dist.nproc_per_node) == (choice.count, max(choice.gpus, 1))


FULL_FT = "peft: {type: none}\ntraining: {per_device_batch_size: 1, max_length: 2048, gradient_checkpointing: true, " \
          "precision: bf16}\n"


def test_acceptance_13b_full_fine_tune_on_p4d_is_sharded_in_plan_and_run_config():
    proc = cloudft("plan", str(FULL_13B), "--provider", "aws", "--json")
    plan = json.loads(proc.stdout)
    inst = plan["instance"]
    assert (inst["type"], inst["gpus"], inst["strategy"]) == ("ml.p4d.24xlarge", 8, "fsdp")
    assert inst["distribution"] == "sharded (FSDP over 8 GPUs)"
    assert "data parallel needs" in inst["strategy_reason"]  # the plan says why
    assert plan["memory"]["peak_gb_per_device"] <= 40 * 0.92  # fits an A100 40 GB once sharded
    for stage in plan["stages"]:
        dist = stage["run_config"]["distributed"]
        assert dist["strategy"] == "fsdp" and dist["nproc_per_node"] == 8 and dist["launcher"] == "torchrun"
    table = cloudft("plan", str(FULL_13B), "--provider", "aws").stdout
    assert "sharded (FSDP over 8 GPUs)" in table


def test_70b_qlora_example_is_sharded_and_its_load_peak_is_planned():
    _, plan = _plan(QLORA_70B, "aws")
    choice, mem = plan.estimate.instance, plan.estimate.memory
    assert choice.strategy == "fsdp" and choice.gpus >= 2 and choice.gpu == "L40S"
    assert "data parallel needs" in choice.strategy_reason
    # the whole 4-bit model sits on each GPU while it loads, before FSDP shards it
    assert mem.load_peak_gb is not None and mem.load_peak_gb > 35
    assert mem.peak_gb_per_device >= mem.load_peak_gb and mem.peak_gb_per_device <= choice.gpu_memory_gb * 0.92
    _agrees(plan)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_run_config_follows_the_plans_strategy(example):
    spec = load_spec(example)
    planned = 0
    for provider in ("local", "aws", "azure"):
        prov = get_provider(provider)
        try:
            prov.validate(spec)
        except SpecError:
            continue  # a spec for another provider (its secrets, data or capabilities)
        _agrees(build_plan(spec, provider, locate=prov.locate))
        planned += 1
    assert planned


SMALL = "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.mark.parametrize("model,body,provider,strategy", [
    (SMALL, "", "aws", "single"),  # the cheapest instance holds it on one GPU
    (SMALL, "compute: {instance_type: ml.g5.12xlarge}\n", "aws", "ddp"),  # fits each GPU: data parallel
    (SMALL, "compute: {instance_type: ml.g5.12xlarge}\ndistributed: {strategy: fsdp}\n", "aws", "fsdp"),  # asked
    (None, "", "aws", "fsdp"),  # LoRA of 13B, 4 x 1024 tokens without checkpointing: no single GPU holds it
    (None, FULL_FT + "compute: {instance_type: ml.p4d.24xlarge}\n", "aws", "fsdp"),  # does not fit: sharded
    (None, FULL_FT + "compute: {instance_type: Standard_ND96asr_v4}\n", "azure", "fsdp"),
    (None, FULL_FT + "compute: {instance_type: ml.p4d.24xlarge}\ndistributed: {strategy: ddp}\n", "aws", "ddp"),
    (SMALL, "compute: {gpus_per_node: 2}\ndistributed: {strategy: fsdp}\n", "local", "fsdp"),
    (SMALL, "compute: {gpus_per_node: 2}\n", "local", "ddp"),
])
def test_strategy_choice_and_run_config_agree(tmp_path, model, body, provider, strategy):
    extra = AWS if provider == "aws" else AZURE if provider == "azure" else ""
    _, plan = _plan(_spec(tmp_path, body + extra, model=model or "meta-llama/Llama-2-13b-hf"), provider)
    assert plan.estimate.instance.strategy == strategy
    assert plan.estimate.instance.strategy_reason
    _agrees(plan)


def test_explicit_ddp_that_does_not_fit_is_kept_and_warned(tmp_path):
    _, plan = _plan(_spec(tmp_path, FULL_FT + "compute: {instance_type: ml.p4d.24xlarge}\n"
                                   "distributed: {strategy: ddp}\n" + AWS), "aws")
    assert plan.estimate.instance.strategy == "ddp"
    assert plan.estimate.instance.strategy_reason == "distributed.strategy: ddp"
    assert any("does not fit" in w for w in plan.warnings)


def test_memory_estimate_follows_the_explicit_strategy(tmp_path):
    """`strategy: fsdp` on an instance where data parallel fits: the estimate is the sharded one."""
    base = "compute: {instance_type: ml.g5.12xlarge}\n" + AWS
    _, ddp = _plan(_spec(tmp_path, base, model=SMALL, name="ddp"), "aws")
    _, fsdp = _plan(_spec(tmp_path, base + "distributed: {strategy: fsdp}\n", model=SMALL, name="fsdp"), "aws")
    assert ddp.estimate.memory.distribution == "data parallel (DDP)"
    assert fsdp.estimate.memory.distribution == "sharded (FSDP over 4 GPUs)"
    assert fsdp.estimate.memory.weights_gb < ddp.estimate.memory.weights_gb


def test_fsdp_on_one_gpu_is_refused(tmp_path):
    with pytest.raises(CloudftError, match="nothing to shard over"):
        _plan(_spec(tmp_path, "compute: {instance_type: ml.g5.2xlarge}\ndistributed: {strategy: fsdp}\n" + AWS,
                    model=SMALL), "aws")
    with pytest.raises(CloudftError, match="nothing to shard over"):
        _plan(_spec(tmp_path, "distributed: {strategy: fsdp}\n", model=SMALL, name="local"), "local")


def test_explicit_fsdp_only_considers_instances_with_several_gpus(tmp_path):
    _, plan = _plan(_spec(tmp_path, "distributed: {strategy: fsdp}\n" + AWS, model=SMALL), "aws")
    assert plan.estimate.instance.gpus * plan.estimate.instance.count >= 2
    assert plan.estimate.instance.strategy == "fsdp"


def test_fsdp_settings_with_ddp_are_refused_at_the_field():
    text = "name: x\nbase_model: m\ndata: {train: a.jsonl}\ndistributed:\n  strategy: ddp\n  cpu_offload: true\n"
    with pytest.raises(SpecError) as err:
        load_spec_text(text, path="s.yaml")
    rendered = err.value.render()
    assert "s.yaml:6" in rendered and "distributed.cpu_offload applies to strategy fsdp only" in rendered
    with pytest.raises(SpecError, match="'fsdpp' is not allowed"):
        load_spec_text("name: x\nbase_model: m\ndata: {train: a.jsonl}\ndistributed: {strategy: fsdpp}\n")


def test_prompt_learning_is_not_sharded(tmp_path):
    """Prefix/prompt/P-tuning encoders sit outside the decoder layers FSDP wraps (PyTorch refuses the mixed
    Tensor/DTensor embedding): refused with fsdp, never chosen by auto."""
    text = ("name: x\nbase_model: m\ndata: {train: a.jsonl}\npeft: {type: prompt}\n"
            "distributed: {strategy: fsdp}\n")
    with pytest.raises(SpecError, match="prompt-learning methods cannot be sharded") as err:
        load_spec_text(text, path="s.yaml")
    assert "s.yaml:5" in err.value.render()
    body = "peft: {type: prefix}\ntraining: {per_device_batch_size: 16, max_length: 4096}\n" \
           "compute: {instance_type: ml.g5.12xlarge}\n" + AWS
    _, plan = _plan(_spec(tmp_path, body), "aws")
    assert plan.estimate.instance.strategy == "ddp"
    assert plan.estimate.instance.strategy_reason.endswith("and prompt-learning methods are not sharded")
    _agrees(plan)


def test_hybrid_shard_needs_a_provider_with_several_nodes(tmp_path):
    path = _spec(tmp_path, "compute: {gpus_per_node: 2}\ndistributed: {strategy: fsdp, sharding: hybrid_shard}\n")
    with pytest.raises(SpecError, match="hybrid_shard replicates the model across nodes"):
        get_provider("local").validate(load_spec(path))


def test_hybrid_shard_across_two_nodes(tmp_path):
    body = FULL_FT + "compute: {instance_type: ml.p4d.24xlarge, instance_count: 2}\n"
    _, full = _plan(_spec(tmp_path, body + "distributed: {strategy: fsdp}\n" + AWS, name="full"), "aws")
    _, hybrid = _plan(_spec(tmp_path, body + "distributed: {strategy: fsdp, sharding: hybrid_shard}\n" + AWS,
                            name="hybrid"), "aws")
    assert full.estimate.instance.distribution == "sharded (FSDP over 16 GPUs)"
    assert hybrid.estimate.instance.distribution == "sharded (FSDP over 8 GPUs, replicated over 2 nodes)"
    # hybrid keeps a node's share of the model on each GPU: more memory than sharding over both nodes
    assert hybrid.estimate.memory.optimizer_gb == pytest.approx(2 * full.estimate.memory.optimizer_gb, rel=0.01)
    dist = hybrid.stages[0].run_config.distributed
    assert (dist.strategy, dist.sharding, dist.nnodes, dist.nproc_per_node) == ("fsdp", "hybrid_shard", 2, 8)


def test_cpu_offload_moves_the_shards_to_host_memory(tmp_path):
    body = FULL_FT + "compute: {instance_type: ml.p4d.24xlarge}\n" + AWS
    _, on_gpu = _plan(_spec(tmp_path, body + "distributed: {strategy: fsdp}\n", name="gpu"), "aws")
    _, offload = _plan(_spec(tmp_path, body + "distributed: {strategy: fsdp, cpu_offload: true}\n", name="cpu"),
                       "aws")
    gpu, host = on_gpu.estimate.memory, offload.estimate.memory
    assert host.optimizer_gb == 0 and host.trainable_params_gb == 0
    assert host.cpu_offload_gb == pytest.approx(gpu.trainable_params_gb + gpu.optimizer_gb + gpu.gradients_gb
                                                - host.gradients_gb, rel=0.02)
    assert host.peak_gb_per_device < gpu.peak_gb_per_device / 2
    assert offload.estimate.instance.distribution.endswith("CPU offload)")
    assert offload.stages[0].run_config.distributed.cpu_offload is True
    assert offload.estimate.cost.step_seconds > 1.5 * on_gpu.estimate.cost.step_seconds  # offloading is slower


def test_sharded_memory_model_matches_what_train_entry_runs():
    """FSDP2 as train_entry sets it up: fp32 master weights of a 16-bit full fine-tune (16 bytes per parameter
    with AdamW, split over the GPUs), frozen LoRA bases sharded in their dtype, two layers gathered at a time."""
    from cloudft.planner.arch import from_table

    arch = from_table("meta-llama/Llama-2-13b-hf")
    full = Setup(peft="none", seq_len=2048, micro_batch=1, gradient_checkpointing=True, shard_devices=8)
    m = estimate_memory(arch, full)
    state = m["trainable_params_gb"] + m["gradients_gb"] + m["optimizer_gb"]
    layer = arch.linear_params / arch.layers * 2 / 2**30  # one bf16 layer's unsharded gradients
    assert state - layer == pytest.approx(16 * arch.params / 8 / 2**30, rel=0.01)
    lora = estimate_memory(arch, dataclasses.replace(full, peft="lora"))
    unsharded = estimate_memory(arch, dataclasses.replace(full, peft="lora", shard_devices=1))
    gathered = 2 * arch.linear_params / arch.layers * 2 / 2**30 + arch.vocab * arch.hidden * 2 / 2**30
    assert lora["weights_gb"] == pytest.approx(unsharded["weights_gb"] / 8 + gathered, rel=0.01)
    assert "load_peak_gb" not in lora and lora["host_gb_per_process"] == pytest.approx(unsharded["weights_gb"],
                                                                                      rel=0.01)


def test_run_config_reaches_sagemaker_torchrun_and_azure_pytorch_distribution(tmp_path):
    from azure.ai.ml import load_job

    from cloudft.providers.aws.staging import stage_source_dir
    from train_entry.config import RunConfig

    prov, plan = _plan(FULL_13B, "aws")
    requests = prov.submit(plan, dry_run=True)
    job = next(r["params"] for r in requests if r["operation"] == "CreateTrainingJob")
    assert job["ResourceConfig"]["InstanceType"] == "ml.p4d.24xlarge"
    assert any(r["params"]["Key"].endswith("sm_drivers/distributed.json") for r in requests
               if r["operation"] == "PutObject")  # the SDK's Torchrun driver starts the 8 processes
    code = stage_source_dir(tmp_path / "code", plan.stages[0].run_config)
    assert RunConfig.read(code / "run.json").distributed.strategy == "fsdp"

    path = _spec(tmp_path, FULL_FT + "compute: {instance_type: Standard_ND96asr_v4}\n" + AZURE, name="az")
    prov, plan = _plan(path, "azure")
    prov.submit(plan, dry_run=True, out_dir=str(tmp_path / "az"))
    azjob = load_job(tmp_path / "az" / "job.yml")
    assert azjob.distribution.process_count_per_instance == 8
    staged = RunConfig.read(tmp_path / "az" / "code" / "cloudft_run" / "stage0.json")
    assert (staged.distributed.strategy, staged.distributed.launcher) == ("fsdp", "platform")


def test_fsdp_only_settings_on_an_unsharded_plan_are_reported_not_dropped(tmp_path):
    """`cpu_offload` and `checkpoints` mean something under FSDP only: when `auto` picks data parallel (the model
    fits one GPU), the plan says they are not used instead of carrying them silently."""
    from cloudft.plan import build_plan
    from cloudft.spec import load_spec_text

    spec = load_spec_text(f"""
name: small
base_model: Qwen/Qwen2.5-0.5B-Instruct
data: {{train: {EXAMPLE_DATA / 'quickstart.jsonl'}}}
compute: {{instance_type: ml.g5.12xlarge}}
distributed: {{cpu_offload: true, checkpoints: full}}
""")
    plan = build_plan(spec, "aws")
    assert plan.estimate.instance.strategy == "ddp"
    assert any("distributed.checkpoints, distributed.cpu_offload apply to FSDP only" in w for w in plan.warnings)
