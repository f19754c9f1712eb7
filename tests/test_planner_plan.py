"""annotate_plan / check_budget on real plans (build_plan with the real data resolver), and the CLI output."""

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
    mem, inst, cost = plan.extras["memory"], plan.extras["instance"], plan.extras["cost"]
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
    small = build_plan(_spec(""), "aws").extras["cost"]
    data = _big_data(tmp_path)
    big = build_plan(_spec("", data=data, training="{max_length: 4096, per_device_batch_size: 1}"), "aws").extras["cost"]
    assert big["train_tokens"] > 100 * small["train_tokens"]
    assert big["hours"] > small["hours"] + 0.05
    assert big["hours"] - STARTUP_HOURS == pytest.approx(big["steps"] * big["step_seconds"] / 3600, rel=0.01)
    # records longer than max_length are truncated: a shorter max_length trains fewer tokens
    short = build_plan(_spec("", data=data, training="{max_length: 1024, per_device_batch_size: 2}"), "aws")
    assert short.extras["cost"]["steps"] * 2 * 1024 <= 2000 * 1024 + 2048
    assert big["on_demand_usd"] > small["on_demand_usd"]


def test_instance_type_from_spec_is_honoured_and_warned_when_it_does_not_fit():
    plan = build_plan(_spec("compute: {instance_type: ml.p5.48xlarge}"), "aws")
    assert plan.extras["instance"]["type"] == "ml.p5.48xlarge" and plan.extras["instance"]["gpus"] == 8
    tight = build_plan(_spec("compute: {instance_type: ml.g5.xlarge}\npeft: {type: none}"), "aws")
    assert tight.extras["instance"]["type"] == "ml.g5.xlarge"
    assert any("does not fit" in w for w in tight.warnings)


def test_gpu_hint_narrows_the_choice_and_big_models_get_big_gpus():
    plan = build_plan(_spec("compute: {gpu: H100}"), "aws")
    assert plan.extras["instance"]["gpu"] == "H100"
    nofit = build_plan(_spec("", model="meta-llama/Llama-3.1-70B"), "azure")
    assert "instance" not in nofit.extras
    assert any("gradient_checkpointing: true the peak would be" in w for w in nofit.warnings)
    big = build_plan(_spec("", model="meta-llama/Llama-3.1-70B",
                           training="{gradient_checkpointing: true, per_device_batch_size: 2}"), "azure")
    inst = big.extras["instance"]
    assert inst["gpus"] * inst["gpu_memory_gb"] >= 140  # 70B bf16 weights alone are 140 GB
    assert big.extras["memory"]["peak_gb_per_device"] <= inst["gpu_memory_gb"]


def test_multi_stage_sums_stages_and_dpo_costs_more_per_token(tmp_path):
    pref = write_jsonl(tmp_path / "pref.jsonl",
                       [{"prompt": "Q " * 100 + str(i), "chosen": " yes" * 80, "rejected": " no" * 80}
                        for i in range(3000)])
    two = build_plan(_spec(f"""
        stages:
          - sft
          - method: dpo
            data: {{train: {pref}}}
    """), "aws").extras["cost"]
    assert len(two["stages"]) == 2
    assert two["hours"] == pytest.approx(sum(s["hours"] for s in two["stages"]), abs=0.01)
    sft, dpo = two["stages"]
    assert float(dpo["flops_per_token"]) > float(sft["flops_per_token"]) * 1.3  # reference forward


def test_local_gets_memory_only():
    plan = build_plan(_spec(""), "local")
    assert "memory" in plan.extras and "instance" not in plan.extras and "cost" not in plan.extras
    assert "this machine" in plan.extras["memory"]["device"]


def test_architecture_from_local_config_dir(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": True}))
    plan = build_plan(_spec("", model=model), "azure")
    assert plan.extras["memory"]["architecture_from"].startswith("local")
    assert plan.extras["memory"]["params_b"] == pytest.approx(1.24, rel=0.02)


def test_unknown_model_offline_warns_and_skips_estimates():
    plan = build_plan(_spec("", model="someone/unknown-model-7b"), "aws")
    assert not {"memory", "instance", "cost"} & set(plan.extras)
    assert any("unknown offline" in w for w in plan.warnings)


def test_budget_guard_refuses_with_numbers_unless_forced():
    plan = build_plan(_spec("budget: {max_cost_usd: 0.01, max_hours: 0.01}"), "aws")
    with pytest.raises(CloudftError) as err:
        check_budget(plan)
    msg = err.value.message
    assert "max_cost_usd $0.01" in msg and "max_hours 0.01" in msg and f"${plan.extras['cost']['estimated_usd']:,.2f}" in msg
    check_budget(plan, force=True)
    assert any("--force" in w for w in plan.warnings)
    with pytest.raises(CloudftError):
        check_before_submit(plan)  # wired into plan.PRE_SUBMIT_CHECKS
    ok = build_plan(_spec("budget: {max_cost_usd: 1000}"), "aws")
    check_budget(ok)


def test_spot_budget_uses_spot_price():
    plan = build_plan(_spec("compute: {spot: true}"), "azure")
    cost = plan.extras["cost"]
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
