"""estimate_plan / check_budget on real plans (build_plan with the real data resolver), and the CLI output."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cloudft.errors import CloudftError
from cloudft.plan import build_plan, check_before_submit
from cloudft.planner import check_budget
from cloudft.planner.catalog import load_catalog
from cloudft.planner.estimate import STARTUP_HOURS
from cloudft.spec import load_spec_text
from helpers import EXAMPLE_DATA, REPO, write_jsonl

SFT_DATA = EXAMPLE_DATA / "quickstart.jsonl"
PREF_DATA = EXAMPLE_DATA / "preferences.jsonl"


def _spec(body: str, **over):
    text = textwrap.dedent(f"""
        name: plan-test
        base_model: {over.get('model', 'meta-llama/Llama-3.1-8B-Instruct')}
        data: {{train: {over.get('data', SFT_DATA)}}}
        training: {over.get('training', '{max_length: 1024, per_device_batch_size: 2, epochs: 1}')}
    """) + textwrap.dedent(body)
    return load_spec_text(text)


def _big_data(tmp_path, n=2000):
    recs = [{"prompt": f"Question {i}: " + "word " * 1200, "completion": " answer " * 400} for i in range(n)]
    return write_jsonl(tmp_path / "big.jsonl", recs)


def test_aws_plan_has_memory_instance_cost_and_picks_cheapest_that_fits():
    plan = build_plan(_spec(""), "aws")
    mem, inst, cost = (plan.to_dict()[k] for k in ("memory", "instance", "cost"))
    assert {"peak_gb_per_device", "weights_gb", "activations_gb", "logits_gb", "optimizer_gb"} <= set(mem)
    assert {"type", "gpus", "gpu_memory_gb", "count", "gpu", "price_per_hour"} <= set(inst)
    assert {"hours", "on_demand_usd", "spot_usd", "step_seconds", "tokens_per_s"} <= set(cost)
    assert mem["peak_gb_per_device"] < inst["gpu_memory_gb"]
    chosen = cost["on_demand_usd"]
    for alt in inst.get("alternatives", []):
        assert alt["on_demand_usd"] >= chosen
    assert cost["spot_usd"] < cost["on_demand_usd"]
    assert cost["tokens_from"] and "record count" in cost["tokens_from"][0]


def test_more_data_costs_more_and_hours_scale(tmp_path):
    small = build_plan(_spec(""), "aws").to_dict()["cost"]
    data = _big_data(tmp_path)
    big = build_plan(_spec("", data=data, training="{max_length: 4096, per_device_batch_size: 1}"), "aws").to_dict()["cost"]
    assert big["train_tokens"] > 100 * small["train_tokens"]
    assert big["hours"] > small["hours"] + 0.05
    assert big["hours"] - STARTUP_HOURS == pytest.approx(big["steps"] * big["step_seconds"] / 3600, rel=0.01)
    # records longer than max_length are truncated: a shorter max_length trains fewer tokens
    short = build_plan(_spec("", data=data, training="{max_length: 1024, per_device_batch_size: 2}"), "aws")
    assert short.estimate.cost.steps * 2 * 1024 <= 2000 * 1024 + 2048
    assert big["on_demand_usd"] > small["on_demand_usd"]


def test_instance_type_from_spec_is_honoured_and_warned_when_it_does_not_fit():
    plan = build_plan(_spec("compute: {instance_type: ml.p5.48xlarge}"), "aws")
    assert plan.estimate.instance.type == "ml.p5.48xlarge" and plan.estimate.instance.gpus == 8
    tight = build_plan(_spec("compute: {instance_type: ml.g5.xlarge}\npeft: {type: none}"), "aws")
    assert tight.estimate.instance.type == "ml.g5.xlarge"
    assert any("does not fit" in w for w in tight.warnings)


def test_gpu_hint_narrows_the_choice_and_big_models_get_big_gpus():
    plan = build_plan(_spec("compute: {gpu: H100}"), "aws")
    assert plan.estimate.instance.gpu == "H100"
    nofit = build_plan(_spec("", model="meta-llama/Llama-3.1-70B"), "azure")
    assert nofit.estimate.cost is None and nofit.estimate.instance.type is None  # azure has no default instance
    assert any("gradient_checkpointing: true the peak would be" in w for w in nofit.warnings)
    big = build_plan(_spec("", model="meta-llama/Llama-3.1-70B",
                           training="{gradient_checkpointing: true, per_device_batch_size: 2}"), "azure")
    inst = big.estimate.instance
    assert inst.gpus * inst.gpu_memory_gb >= 140  # 70B bf16 weights alone are 140 GB
    assert big.estimate.memory.peak_gb_per_device <= inst.gpu_memory_gb


def test_multi_stage_sums_stages_and_dpo_costs_more_per_token(tmp_path):
    pref = write_jsonl(tmp_path / "pref.jsonl",
                       [{"prompt": "Q " * 100 + str(i), "chosen": " yes" * 80, "rejected": " no" * 80}
                        for i in range(3000)])
    two = build_plan(_spec(f"""
        stages:
          - sft
          - method: dpo
            data: {{train: {pref}}}
    """), "aws").to_dict()["cost"]
    assert len(two["stages"]) == 2
    assert two["hours"] == pytest.approx(sum(s["hours"] for s in two["stages"]), abs=0.01)
    sft, dpo = two["stages"]
    assert float(dpo["flops_per_token"]) > float(sft["flops_per_token"]) * 1.3  # reference forward


def test_local_gets_memory_and_this_machine():
    plan = build_plan(_spec(""), "local")
    assert plan.estimate.memory is not None and plan.estimate.cost.billing == "this machine"
    assert plan.estimate.cost.hours > 0 and plan.estimate.cost.estimated_usd is None  # time here, no bill
    assert plan.estimate.instance.type is None and plan.estimate.instance.chosen == "this machine"
    assert "this machine" in plan.to_dict()["memory"]["device"]


def test_architecture_from_local_config_dir(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": True}))
    plan = build_plan(_spec("", model=model), "azure")
    assert plan.estimate.memory.architecture_from.startswith("local")
    assert plan.estimate.memory.params_b == pytest.approx(1.24, rel=0.02)


def test_unknown_model_offline_warns_and_uses_the_default_instance():
    plan = build_plan(_spec("", model="someone/unknown-model-7b"), "aws")
    assert plan.estimate.memory is None and plan.estimate.cost is None
    assert plan.estimate.instance.type == "ml.g5.2xlarge" and plan.estimate.instance.gpus == 1
    assert any("unknown offline" in w for w in plan.warnings)
    assert any("using ml.g5.2xlarge" in w for w in plan.warnings)


def test_budget_without_an_estimate_is_refused_unless_forced():
    """A budget the plan cannot check is not a pass: no estimate (unknown model) with a budget set is refused."""
    plan = build_plan(_spec("budget: {max_cost_usd: 5}", model="someone/unknown-model-7b"), "aws")
    with pytest.raises(CloudftError, match="no time/cost estimate"):
        check_budget(plan.spec, plan.provider, plan.estimate)
    notes = check_budget(plan.spec, plan.provider, plan.estimate, force=True)
    assert notes and "--force" in notes[0]


def test_budget_guard_refuses_with_numbers_unless_forced():
    plan = build_plan(_spec("budget: {max_cost_usd: 0.01, max_hours: 0.01}"), "aws")
    with pytest.raises(CloudftError) as err:
        check_budget(plan.spec, plan.provider, plan.estimate)
    msg = err.value.message
    assert "max_cost_usd $0.01" in msg and "max_hours 0.01" in msg and f"${plan.estimate.cost.estimated_usd:,.2f}" in msg
    notes = check_budget(plan.spec, plan.provider, plan.estimate, force=True)
    assert any("--force" in w for w in notes)
    with pytest.raises(CloudftError):
        check_before_submit(plan)  # the budget guard is one of submit's checks
    ok = build_plan(_spec("budget: {max_cost_usd: 1000}"), "aws")
    assert check_budget(ok.spec, ok.provider, ok.estimate) == []


def test_spot_budget_uses_spot_price():
    plan = build_plan(_spec("compute: {spot: true}"), "azure")
    cost = plan.to_dict()["cost"]
    assert cost["billing"] == "spot" and cost["estimated_usd"] == cost["spot_usd"]


def test_cli_plan_json_and_no_heavy_imports(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: cli-test
        base_model: Qwen/Qwen2.5-0.5B-Instruct
        data: {{train: {SFT_DATA}}}
        aws: {{bucket: my-bucket, role_arn: "arn:aws:iam::123456789012:role/r"}}
    """))
    code = textwrap.dedent(f"""
        import sys, json, io, contextlib
        from cloudft.cli.main import main
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                main(["plan", {str(spec)!r}, "--provider", "aws", "--json"])
            except SystemExit as e:
                assert not e.code, e.code
        heavy = [m for m in ("torch", "transformers", "sagemaker", "azure.ai.ml") if m in sys.modules]
        print(json.dumps({{"plan": json.loads(buf.getvalue()), "heavy": heavy}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    plan = result["plan"]
    assert plan["instance"]["type"] in {i.type for i in load_catalog("aws")}
    assert plan["cost"]["hours"] > 0 and plan["memory"]["peak_gb_per_device"] > 0
