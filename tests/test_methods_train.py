"""Every training method trains a few steps on the tiny model, and what it saves reloads and works."""

from __future__ import annotations

import json

import pytest
import torch
from methods_fixtures import hh_records, kto_data, metrics_of, preference_split, run_stage, write_config

from helpers import EXAMPLE_DATA, write_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("methods")


@pytest.fixture(scope="module")
def pref(work):
    return preference_split(work)


@pytest.fixture(scope="module")
def dpo_run(work, tiny_model, pref):
    """DPO with LoRA, held-out data, fixed prompts, merged and NF4 exports."""
    cfg = write_config(work, "dpo", tiny_model, "dpo", *pref, eval={"prompts": ["Compute 2 + 3."]},
                       export={"merge": True, "quantize": "nf4"})
    rc, out = run_stage(cfg)
    assert rc == 0
    return out


def _lora_b(state: dict) -> list[torch.Tensor]:
    return [v for k, v in state.items() if "lora_B" in k]


def _generate(model, tokenizer, prompt="Compute 2 + 3.", n=5):
    enc = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return out.shape[1] - enc["input_ids"].shape[1]


def test_dpo_adapter_reloads_and_generates(dpo_run, tiny_model):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # LoRA B starts at zero: a trained adapter has moved it
    assert any(b.abs().sum() > 0 for b in _lora_b(load_file(dpo_run / "adapter_model.safetensors")))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(dpo_run))
    assert _generate(model, AutoTokenizer.from_pretrained(dpo_run)) == 5
    assert not (dpo_run / "ref").exists()


def test_dpo_evaluation_agrees_with_trl(dpo_run):
    m = metrics_of(dpo_run)
    for key in ("val_loss_base", "val_loss_tuned", "val_ppl_tuned", "pref_accuracy", "reward_margin",
                "rougeL_tuned", "bleu_base"):
        assert key in m, key
    assert m["val_ppl_tuned"] == pytest.approx(torch.exp(torch.tensor(m["val_loss_tuned"])).item(), rel=1e-4)
    # our held-out implicit-reward accuracy vs TRL's own eval (8 pairs; TRL also scores the EOS token)
    assert abs(m["pref_accuracy"] - m["eval_rewards/accuracies"]) <= 0.125 + 1e-9
    assert m["reward_margin"] == pytest.approx(m["eval_rewards/margins"], abs=0.02)


def test_dpo_exports_merged_and_quantized(dpo_run):
    m = metrics_of(dpo_run)
    # merging is exact: same validation loss as base + adapter
    assert m["merged_val_loss"] == pytest.approx(m["val_loss_tuned"], abs=1e-4)
    qcfg = json.loads((dpo_run / "quantized-nf4" / "config.json").read_text())["quantization_config"]
    assert qcfg["load_in_4bit"] and qcfg["bnb_4bit_quant_type"] == "nf4"
    assert m["quantized_size_mb"] < m["full_size_mb"]
    assert m["quantized_val_loss_change"] == pytest.approx(m["quantized_val_loss"] - m["val_loss_tuned"])
    assert abs(m["quantized_val_loss_change"]) < 1.0


def test_dpo_report_and_plots(dpo_run):
    m = metrics_of(dpo_run)
    report = (dpo_run / "report.md").read_text()
    assert m["report"] == str(dpo_run / "report.md")
    assert f"| validation loss, tuned | {m['val_loss_tuned']:.4g} |" in report
    assert f"| held-out preference accuracy | {m['pref_accuracy']:.4g} |" in report
    assert "| Compute 2 + 3. |" in report  # the side-by-side generations
    for png in ("loss.png", "reward_margins.png"):
        assert (dpo_run / png).read_bytes()[:8] == PNG_MAGIC
        assert f"]({png})" in report
    logged = [json.loads(x) for x in (dpo_run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3]


def test_dpo_conversational_full_finetune(work, tiny_model, capsys):
    """Real HH-RLHF pairs in TRL's conversational format, full fine-tuning: the reference log-probs are
    precomputed, so no second copy of the model is kept."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_jsonl(work / "hh.jsonl", hh_records(8))
    cfg = write_config(work, "dpo-chat", tiny_model, "dpo", data, peft={"type": "none"},
                       training={"max_steps": 2, "learning_rate": 1e-3, "max_length": 96}, eval={"enabled": False})
    rc, out = run_stage(cfg)
    assert rc == 0
    assert "dpo: reference = precomputed log-probs" in capsys.readouterr().out
    tuned = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [n for n, p in tuned.named_parameters() if not torch.equal(p, base.get_parameter(n))]
    assert changed
    assert _generate(tuned, AutoTokenizer.from_pretrained(out), n=3) == 3


def test_sft_then_dpo_continues_the_adapter(work, tiny_model, pref):
    from safetensors.torch import load_file

    sft = write_config(work, "chain-sft", tiny_model, "sft", EXAMPLE_DATA / "quickstart.jsonl",
                       eval={"enabled": False})
    rc, sft_out = run_stage(sft)
    assert rc == 0
    dpo = write_config(work, "chain-dpo", tiny_model, "dpo", pref[0], eval={"enabled": False},
                       outputs={"init_adapter": str(sft_out)})
    rc, dpo_out = run_stage(dpo)
    assert rc == 0
    before, after = load_file(sft_out / "adapter_model.safetensors"), load_file(dpo_out / "adapter_model.safetensors")
    assert set(before) == set(after)  # the same adapter, trained further
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not (dpo_out / "ref").exists()  # TRL's frozen reference copy is not part of the result


def test_orpo_trains_and_reloads(work, tiny_model, pref):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rc, out = run_stage(write_config(work, "orpo", tiny_model, "orpo", *pref))
    assert rc == 0
    m = metrics_of(out)
    assert m["val_loss_tuned"] < m["val_loss_base"]  # ORPO's NLL term fits the chosen answers
    assert "pref_accuracy" in m
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(out))
    assert _generate(model, AutoTokenizer.from_pretrained(out)) == 5


def test_kto_unpaired_labels(work, tiny_model):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    rc, out = run_stage(write_config(work, "kto", tiny_model, "kto", *kto_data(work), eval={"enabled": False}))
    assert rc == 0
    assert any(b.abs().sum() > 0 for b in _lora_b(load_file(out / "adapter_model.safetensors")))
    assert "eval_rewards/chosen" in metrics_of(out)  # KTO's own held-out evaluation ran
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(out))


def test_reward_model_then_rl(work, tiny_model, pref):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from train_entry.scoring import load_reward_model, score

    rc, rm_out = run_stage(write_config(work, "reward", tiny_model, "reward", *pref,
                                        training={"max_steps": 4}))
    assert rc == 0
    m = metrics_of(rm_out)
    # held-out accuracy from our scorer equals RewardTrainer's own evaluation on the same pairs
    assert m["pref_accuracy"] == pytest.approx(m["eval_accuracy"])
    rm, tok = load_reward_model(rm_out, base=str(tiny_model))
    scores = score(rm, tok, ["Compute 1 + 1. The sum is 2.", "Compute 1 + 1. The sum is 3."])
    assert len(scores) == 2 and scores[0] != scores[1]

    rl = write_config(work, "rl", tiny_model, "rl", pref[0], pref[1], reward_model=str(rm_out),
                      training={"max_steps": 2, "num_generations": 2, "max_new_tokens": 8})
    rc, out = run_stage(rl)
    assert rc == 0
    m = metrics_of(out)
    assert {"rl_reward_base", "rl_reward_tuned"} <= set(m)
    logged = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("reward" in r for r in logged)  # RLOO logged the reward model's scores while training
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(out))
    assert _generate(model, AutoTokenizer.from_pretrained(out)) == 5


def test_rl_without_reward_model_is_a_config_error(work, tiny_model, pref):
    rc, out = run_stage(write_config(work, "rl-no-rm", tiny_model, "rl", pref[0]))
    assert rc == 2
    assert not (out / "adapter_model.safetensors").exists()
