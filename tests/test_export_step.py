"""Export (merge, quantize) is a step of its own: it runs when `export` asks, with evaluation off, for reward
stages, and after a failed evaluation."""

from __future__ import annotations

import json

import pytest
import torch
from methods_fixtures import metrics_of, preference_split, run_stage, write_config

from helpers import EXAMPLE_DATA

LORA = {"type": "lora", "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


def _logits(model, tok, text="Compute 2 + 3."):
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


def test_exports_run_with_evaluation_disabled(work, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = write_config(work, "no-eval", tiny_model, "sft", EXAMPLE_DATA / "quickstart.jsonl", peft=LORA,
                       training={"max_steps": 2}, eval={"enabled": False}, export={"merge": True, "quantize": "nf4"})
    rc, out = run_stage(cfg)
    assert rc == 0
    m = metrics_of(out)
    assert m["merged_dir"] == str(out / "merged") and m["quantized_dir"] == str(out / "quantized-nf4")
    assert m["quantized_size_mb"] < m["full_size_mb"]
    assert "val_loss_tuned" not in m  # evaluation stayed off
    tok = AutoTokenizer.from_pretrained(out / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(out))
    assert torch.allclose(_logits(merged, tok), _logits(adapted, tok), atol=1e-4)  # merging is exact
    q = json.loads((out / "quantized-nf4" / "config.json").read_text())["quantization_config"]
    assert q["load_in_4bit"] and q["bnb_4bit_quant_type"] == "nf4"
    assert "merged weights size (MiB)" in (out / "report.md").read_text()


def test_reward_stage_exports_a_merged_and_quantized_scorer(work, tiny_model):
    from train_entry.scoring import load_reward_model, score

    train, _ = preference_split(work, n_train=8, n_val=4)
    cfg = write_config(work, "reward", tiny_model, "reward", train, peft=LORA, training={"max_steps": 2},
                       eval={"enabled": False}, export={"merge": True, "quantize": "8bit"})
    rc, out = run_stage(cfg)
    assert rc == 0
    m = metrics_of(out)
    assert m["artifact"] == "reward_model" and m["reward_weights"] == "adapter"
    merged_cfg = json.loads((out / "merged" / "config.json").read_text())
    assert merged_cfg["architectures"] == ["LlamaForSequenceClassification"]
    texts = ["Compute 1 + 1. The sum is 2.", "Compute 1 + 1. The sum is 3."]
    from_adapter = score(*load_reward_model(out, base=str(tiny_model)), texts)
    from_merged = score(*load_reward_model(out / "merged"), texts)
    assert from_merged == pytest.approx(from_adapter, abs=1e-4)
    quantized = json.loads((out / "quantized-8bit" / "config.json").read_text())
    assert quantized["architectures"] == ["LlamaForSequenceClassification"]
    assert quantized["quantization_config"]["load_in_8bit"]


def test_a_failed_evaluation_does_not_skip_the_export(work, tiny_model, monkeypatch):
    import sacrebleu

    def broken(*args, **kwargs):
        raise RuntimeError("BLEU scorer crashed")

    monkeypatch.setattr(sacrebleu, "corpus_bleu", broken)  # evaluation's text metrics fail (library, not ours)
    train, val = preference_split(work, n_train=8, n_val=4)
    cfg = write_config(work, "eval-fails", tiny_model, "dpo", train, val, peft=LORA, training={"max_steps": 2},
                       export={"merge": True})
    rc, out = run_stage(cfg)
    assert rc == 0
    m = metrics_of(out)
    assert (out / "merged" / "model.safetensors").is_file() and m["merged_dir"] == str(out / "merged")
    assert "evaluation failed: RuntimeError: BLEU scorer crashed" in (out / "report.md").read_text()
