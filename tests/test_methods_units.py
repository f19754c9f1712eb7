"""The rules behind the methods and the report, without training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from methods_fixtures import FAST_PEFT, hh_records, hh_to_preference

from train_entry.config import RunConfig
from train_entry.context import TrainContext
from train_entry.layout import Layout
from train_entry.runtime import World


def _ctx(tmp_path: Path, peft="lora", world_size=1, init_adapter=None, **training) -> TrainContext:
    cfg = RunConfig.model_validate({"name": "u", "base_model": "m", "method": "dpo", "data": {"train": "t.jsonl"},
                                    "peft": {**FAST_PEFT, "type": peft}, "training": training})
    layout = Layout(output_dir=tmp_path / "out", checkpoint_dir=tmp_path / "ck", train=tmp_path / "t.jsonl",
                    validation=None, init_adapter=init_adapter, reward_model=None, platform="local")
    return TrainContext(cfg=cfg, layout=layout, world=World(0, 0, world_size), precision="fp32")


def test_precompute_ref_log_probs_rule(tmp_path):
    from train_entry.methods.dpo import precompute_pays

    # full fine-tuning: precomputing spares a second full copy of the weights
    assert precompute_pays(_ctx(tmp_path, peft="none", max_steps=5), 100)
    # adapter, less than one pass: the adapter-disabled reference is free; precompute would waste work
    assert not precompute_pays(_ctx(tmp_path, max_steps=5, per_device_batch_size=4), 100)
    assert not precompute_pays(_ctx(tmp_path, epochs=1), 100)
    # adapter, several passes: pay the reference forward once instead of once per epoch
    assert precompute_pays(_ctx(tmp_path, epochs=3), 100)
    assert precompute_pays(_ctx(tmp_path, max_steps=60, per_device_batch_size=4), 100)
    # the data is split over the processes: 2 x 4 x 15 steps = 120 samples > 100 rows
    assert precompute_pays(_ctx(tmp_path, world_size=2, max_steps=15, per_device_batch_size=4), 100)
    assert not precompute_pays(_ctx(tmp_path, world_size=1, max_steps=15, per_device_batch_size=4), 100)


def test_rl_generation_batch_holds_whole_prompt_groups(tmp_path):
    from train_entry.methods.rl import generation_batch_size

    assert generation_batch_size(_ctx(tmp_path, per_device_batch_size=4, num_generations=4)) == 4
    assert generation_batch_size(_ctx(tmp_path, per_device_batch_size=2, num_generations=3)) == 6
    assert generation_batch_size(_ctx(tmp_path, per_device_batch_size=2, gradient_accumulation_steps=2,
                                      num_generations=8, world_size=1)) == 8


def test_rl_prompts_from_chat_messages():
    from datasets import Dataset

    from train_entry.methods.rl import to_prompts

    ds = Dataset.from_list([{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                                          {"role": "assistant", "content": "a"}]}])
    assert to_prompts(ds)[0]["prompt"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]


def test_kto_class_weights_balance_the_classes():
    from train_entry.methods.kto import class_weights

    assert class_weights([True] * 30 + [False] * 10) == (1.0, 3.0)
    assert class_weights([True] * 10 + [False] * 20) == (2.0, 1.0)
    assert class_weights([True] * 5) == (1.0, 1.0)


def test_hh_conversion_shares_the_leading_turns():
    rec = hh_to_preference({"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: no.",
                            "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: ok!"})
    assert [m["role"] for m in rec["prompt"]] == ["user", "assistant", "user"]
    assert rec["chosen"] == [{"role": "assistant", "content": "no."}]
    assert rec["rejected"] == [{"role": "assistant", "content": "ok!"}]
    assert len(hh_records(3)) == 3


def test_text_metrics_use_the_packages():
    from train_entry.evaluate import text_metrics

    same = text_metrics(["the sum is 102"], ["the sum is 102"])
    assert same["rougeL"] == pytest.approx(1.0) and same["bleu"] == pytest.approx(100.0)
    other = text_metrics(["a cat"], ["the sum is 102"])
    assert other["rougeL"] == 0.0 and other["bleu"] < 5


def test_without_the_report_extras_there_are_no_plots_nor_rouge_and_the_report_says_why(tmp_path):
    """The Hugging Face training image lacks rouge-score (and may lack matplotlib): hidden here in a subprocess
    (a None entry in sys.modules makes the import fail as for a missing package)."""
    import subprocess
    import sys

    from helpers import REPO

    out = tmp_path / "out"
    out.mkdir()
    (out / "train_log.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    script = f"""
import json, sys, types
from pathlib import Path
sys.modules["matplotlib"] = sys.modules["rouge_score"] = None
from train_entry.evaluate import missing_text_metrics, text_metrics
from train_entry.report import write_report
cfg = types.SimpleNamespace(name="u", stage=0, method="sft", base_model="m", peft=types.SimpleNamespace(type="lora"))
ctx = types.SimpleNamespace(cfg=cfg, layout=types.SimpleNamespace(output_dir=Path({str(out)!r})))
notes = list(missing_text_metrics().values())
write_report(ctx, {{}}, [], notes)
print(json.dumps(text_metrics(["the sum is 102"], ["the sum is 102"])))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == {"bleu": pytest.approx(100.0)}  # sacrebleu is there
    report = (out / "report.md").read_text()
    assert "No plots: matplotlib cannot be imported" in report and not list(out.glob("*.png"))
    assert "- ROUGE-L not computed: rouge-score cannot be imported" in report and "BLEU not computed" not in report


def test_held_out_split_is_the_training_complement(tmp_path):
    from datasets import Dataset

    from train_entry.splits import split_held_out

    ds = Dataset.from_list([{"x": i} for i in range(50)])
    train, held = split_held_out(ds, 0.2, seed=7)
    again = split_held_out(ds, 0.2, seed=7)[1]
    assert len(held) == 10 and held["x"] == again["x"]
    assert not set(train["x"]) & set(held["x"])


def test_report_plots_the_logged_losses(tmp_path):
    from train_entry.report import write_report

    ctx = _ctx(tmp_path)
    out = ctx.layout.output_dir
    out.mkdir(parents=True)
    rows = [{"step": s, "loss": 1.0 / s, "rewards/margins": 0.1 * s} for s in range(1, 6)]
    rows.append({"step": 5, "eval_loss": 0.3, "eval_rewards/margins": 0.4})
    (out / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    path = write_report(ctx, {"val_loss_base": 2.5, "val_loss_tuned": 1.25, "quantized_size_mb": 0.5},
                        [{"prompt": "p|q", "base": "b", "tuned": "t"}], ["a note"])
    text = path.read_text()
    assert "| validation loss, base | 2.5 |" in text and "| validation loss, tuned | 1.25 |" in text
    assert "| quantized copy size (MiB) | 0.5 |" in text
    assert "| p\\|q | b | t |" in text and "- a note" in text
    assert (out / "loss.png").stat().st_size > 1000 and (out / "reward_margins.png").stat().st_size > 1000


def test_runs_on_the_tiny_model_say_their_figures_show_the_pipeline_not_learning(tmp_path, tiny_model):
    from train_entry.cli import _after_training
    from train_entry.report import write_report
    from train_entry.tiny import TINY_NOTE, is_tiny_model

    assert is_tiny_model(tiny_model) and not is_tiny_model(tmp_path) and not is_tiny_model("meta-llama/Llama-3.1-8B")
    ctx = _ctx(tmp_path)
    ctx.cfg.base_model, ctx.cfg.eval.enabled = str(tiny_model), False
    ctx.layout.output_dir.mkdir(parents=True)
    metrics: dict = {}
    _after_training(ctx, metrics, ["stage 0 (sft) train"])
    assert json.loads((ctx.layout.output_dir / "metrics.json").read_text())["note"] == TINY_NOTE
    text = write_report(ctx, {"pref_accuracy": 0.5, **metrics}, [], []).read_text()
    assert f"## Notes\n\n- {TINY_NOTE}" in text


def test_report_without_reward_margins_has_no_margin_plot(tmp_path):
    from train_entry.report import write_report

    ctx = _ctx(tmp_path)
    ctx.layout.output_dir.mkdir(parents=True)
    (ctx.layout.output_dir / "train_log.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    text = write_report(ctx, {}, [], []).read_text()
    assert "loss.png" in text and "reward_margins" not in text
    assert not (ctx.layout.output_dir / "reward_margins.png").exists()
