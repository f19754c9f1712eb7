"""benchmarks/gpu_truth.py: the CPU smoke run of the GPU benchmark, its budget and OOM handling, and the
random-weight loader against the real checkpoint loading path."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO


def _script(name: str):
    """benchmarks/<name>.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    key = f"benchmark_{name}"  # not plain `outcome`: that name is a PyPI package (trio's)
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # dataclasses resolve their annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[key]


def _gpu_truth():
    return _script("gpu_truth")


def test_smoke_runs_every_arm_and_writes_json_and_table(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_truth.py"), "--smoke", "--out",
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu_truth.json").read_text())
    rows = {r["case"]: r for r in doc["cases"]}
    assert doc["meta"]["smoke"] and doc["meta"]["peak_tflops"] > 0
    assert {(r["arm"], r["method"], r["peft"]) for r in rows.values()} >= {
        ("train_entry", "sft", "lora"), ("train_entry", "sft", "qlora"), ("train_entry", "sft", "dora"),
        ("train_entry", "dpo", "lora"), ("trl_default", "sft", "lora"), ("pad_to_max", "sft", "lora")}
    for r in rows.values():
        if r["arm"] == "liger":
            assert r["status"] == "skipped" and "CUDA" in r["reason"]  # Triton kernels: GPU only
            continue
        assert r["status"] == "ok", r
        assert r["timed_steps"] >= 1 and r["tokens_per_s"] > 0 and 0 < r["mfu"] <= r["hfu"] < 1
        assert r["planner_peak_gib"] > 0 and r["model_flops_per_token"] > 0
        per_step = r["real_tokens"] / r["timed_steps"]
        if r["method"] == "dpo":
            # both sequences of each pair are cut to exactly max_length
            assert per_step == 2 * r["max_length"] * r["batch"]
        elif r["arm"] == "train_entry":
            # packed, padding-free rows: no pad tokens computed, at most max_length tokens per row
            assert r["padding_efficiency"] == 1.0 and per_step <= r["max_length"]
        elif r["arm"] == "trl_default":
            assert r["padding_efficiency"] < 1.0  # dynamic padding: pad tokens counted as computed, not real
        elif r["arm"] == "pad_to_max":
            assert r["computed_tokens"] == r["timed_steps"] * r["batch"] * r["max_length"]
            assert r["padding_efficiency"] < 0.9  # chat-length samples padded to max_length
    gc_on = rows["tiny-llama/sft-lora/128/gc"]
    assert gc_on["hfu"] > gc_on["mfu"]  # recompute counted as hardware FLOPs only
    table = (tmp_path / "gpu_truth.md").read_text()
    assert all(f"| {name} |" in table for name in rows)
    assert "Smoke run on a CPU" in table


def test_spent_budget_skips_the_remaining_cases_and_says_so(tmp_path):
    gt = _gpu_truth()
    assert gt.main(["--smoke", "--budget-s", "0", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "gpu_truth.json").read_text())
    assert doc["cases"] and all(r["status"] == "skipped" for r in doc["cases"])
    assert "time budget" in doc["meta"]["budget_note"]
    assert doc["meta"]["budget_note"] in (tmp_path / "gpu_truth.md").read_text()


def test_out_of_memory_is_a_recorded_result_not_a_crash():
    import torch

    gt = _gpu_truth()
    case = gt.Case("llama-3.1-8b", "train_entry", max_length=16384)

    def explode():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 7.83 GiB")

    row = gt.guarded(case, explode, "cpu")
    assert row["status"] == "OOM" and "7.83 GiB" in row["error"] and row["case"] == case.name

    def broken():
        raise KeyError("lm_head")

    assert gt.guarded(case, broken, "cpu")["status"] == "error"


def test_random_weights_load_like_a_checkpoint_through_train_entry(tmp_path):
    """QLoRA through train_entry's load_model: random weights give the same quantized model as a real checkpoint."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from train_entry.config import DataConfig, PeftConfig, RunConfig
    from train_entry.modeling import load_model

    gt = _gpu_truth()
    folder = gt.model_dir("tiny-llama", tmp_path, words=200)
    saved = tmp_path / "checkpoint"
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(saved)
    cfg = RunConfig(name="t", base_model=str(saved), peft=PeftConfig(type="qlora"), data=DataConfig(train="x.jsonl"))
    real = load_model(cfg, "fp32", str(saved))
    loader = AutoModelForCausalLM.__dict__.get("from_pretrained")
    with gt.random_weights("cpu"):
        fake = load_model(cfg.model_copy(update={"base_model": str(folder)}), "fp32", str(folder))
    assert not (folder / "model.safetensors").exists()
    assert fake.is_loaded_in_4bit and real.is_loaded_in_4bit

    def shape(model):
        return {n: (type(m).__name__) for n, m in model.named_modules()}, \
            {n: (p.dtype, tuple(p.shape), p.requires_grad) for n, p in model.named_parameters()}

    assert shape(fake) == shape(real)
    q = fake.model.layers[0].self_attn.q_proj.weight
    import bitsandbytes.functional as bnbf

    values = bnbf.dequantize_4bit(q.data, q.quant_state)
    assert 0.01 < float(values.std()) < 0.03  # initializer_range 0.02: random, not empty memory
    assert AutoModelForCausalLM.__dict__.get("from_pretrained") is loader  # restored after the block
    assert torch.isfinite(fake(input_ids=torch.tensor([[5, 6, 7]])).logits).all()


def test_module_patches_made_inside_a_case_are_undone():
    from transformers.models.llama import modeling_llama

    gt = _gpu_truth()
    original = modeling_llama.LlamaRMSNorm
    with gt.restored_module("transformers.models.llama.modeling_llama"):
        modeling_llama.LlamaRMSNorm = object
        modeling_llama.liger_marker = True
    assert modeling_llama.LlamaRMSNorm is original and not hasattr(modeling_llama, "liger_marker")


@pytest.mark.parametrize("name,key", [("NVIDIA H200", "H200"), ("NVIDIA H100 80GB HBM3", "H100"),
                                      ("NVIDIA H100 NVL", "H100-NVL"), ("NVIDIA H100 PCIe", None),
                                      ("NVIDIA L40S", "L40S"), ("NVIDIA A10G", "A10G"), ("Tesla T4", "T4")])
def test_device_names_map_to_the_planner_gpu_table(name, key):
    from cloudft.planner.catalog import gpu_specs

    assert _gpu_truth().gpu_key(name) == key
    assert key is None or key in gpu_specs()


# -- benchmarks/outcome.py -----------------------------------------------------------------------------

def _outcome():
    return _script("outcome")


def test_outcome_split_is_fixed_and_keeps_each_prompt_on_one_side(tmp_path):
    from helpers import HH_RLHF, shared_file

    oc = _outcome()
    pairs, quarantined = oc.load_pairs(shared_file(HH_RLHF), tmp_path)
    assert len(pairs) + quarantined == 2312 and 0 < quarantined < 50
    assert len((tmp_path / "quarantine.jsonl").read_text().splitlines()) == quarantined  # kept, with the reason
    train, held = oc.split(pairs, 400)
    again = oc.split(list(reversed(pairs)), 400)[1]
    assert len(held) >= 400 and len(train) + len(held) == len(pairs)
    assert [p["prompt"] for p in held] == [p["prompt"] for p in again]  # independent of file order
    key = lambda p: json.dumps(p["prompt"], sort_keys=True)  # noqa: E731
    assert not {key(p) for p in train} & {key(p) for p in held}
    cut = oc.last_turn(held[0])
    assert cut["prompt"] == held[0]["prompt"][-1:] and cut["prompt"][0]["role"] == "user"


def test_outcome_figures_on_known_scores():
    oc = _outcome()
    s = oc.Settings(bootstrap=200, beta=0.1)
    # 4 pairs of (sum log p, tokens): SFT prefers chosen in pairs 0-1 only; DPO moves every margin by +20 nats
    sft = {"chosen": [(-10.0, 5), (-20.0, 10), (-40.0, 10), (-50.0, 20)],
           "rejected": [(-30.0, 10), (-25.0, 10), (-30.0, 5), (-35.0, 10)]}
    dpo = {"chosen": [(c - 10, n) for c, n in sft["chosen"]], "rejected": [(r - 30, n) for r, n in sft["rejected"]]}
    figs = oc.figures({"base": sft, "sft": sft, "dpo": dpo}, s)
    assert figs["accuracy_sft"][0] == 0.5 and figs["accuracy_dpo"][0] == 1.0  # margins -10, -15 flip; +20, +5 stay
    assert figs["reward_accuracy_dpo"][0] == 1.0 and abs(figs["reward_margin_dpo"][0] - 2.0) < 1e-9
    assert abs(figs["loss_sft"][0] - 120 / 45) < 1e-9  # token-weighted NLL of the chosen answers
    assert figs["accuracy_dpo_minus_sft"][0] == 0.5
    lo, hi = figs["accuracy_sft"][1:]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0
    # |shift| 20 exceeds |margin| 5, 10, 15 but not 20
    assert figs["pairs_dpo_could_flip"] == 0.75 and figs["dpo_shift_abs_median_nats"] == 20.0
    assert figs["corr_dpo_shift_sft_margin"] == 0.0  # the shift is the same for every pair
    assert abs(_outcome().correlation([1, 2, 3], [2, 4, 7]) - 0.9934) < 1e-3
    tie = {"chosen": [(0.0, 0)], "rejected": [(0.0, 0)]}  # both answers cut off by max_length
    assert oc.wins(tie) == [0.5]
