"""Every PEFT type trains a few steps on the tiny model through train_entry: the loss goes down, and the
saved adapter reloads with PeftModel.from_pretrained and generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import EXAMPLE_DATA, read_jsonl, write_jsonl
from train_entry.cli import train
from train_entry.config import DataConfig, OutputsConfig, PeftConfig, RunConfig, TrainingConfig

PEFT_CASES = {
    "none": dict(learning_rate=2e-3),
    "lora": dict(learning_rate=1e-2),
    "qlora": dict(learning_rate=1e-2),
    "dora": dict(learning_rate=1e-2),
    "prefix": dict(learning_rate=3e-2),
    "prompt": dict(learning_rate=3e-1),
    "p_tuning": dict(learning_rate=3e-2),
}


def run_config(tmp_path: Path, model: Path, peft: str, **training) -> Path:
    records = read_jsonl(EXAMPLE_DATA / "quickstart.jsonl")[:16]
    train_file = write_jsonl(tmp_path / "train.jsonl", records)
    cfg = RunConfig(
        name=f"t-{peft}", base_model=str(model),
        peft=PeftConfig(type=peft, r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "v_proj"],
                        num_virtual_tokens=4, encoder_hidden_size=32),
        data=DataConfig(train=str(train_file)),
        training=TrainingConfig(max_steps=12, per_device_batch_size=8, max_length=64, logging_steps=1,
                                lr_scheduler="constant", warmup_ratio=0.0, save_steps=100, **training),
        outputs=OutputsConfig(output_dir=str(tmp_path / "out"), checkpoint_dir=str(tmp_path / "ckpt")),
    )
    cfg.eval.enabled = False
    return cfg.write(tmp_path / "run.json")


def losses(out: Path) -> list[float]:
    return [row["loss"] for row in read_jsonl(out / "train_log.jsonl") if "loss" in row]


@pytest.mark.parametrize("peft", list(PEFT_CASES))
def test_peft_type_trains_and_reloads(tmp_path, tiny_model, peft):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = run_config(tmp_path, tiny_model, peft, **PEFT_CASES[peft])
    assert train(["--config", str(config)]) == 0
    out = tmp_path / "out"
    seen = losses(out)
    assert len(seen) == 12
    assert sum(seen[-3:]) / 3 < sum(seen[:3]) / 3, seen
    assert json.loads((out / "metrics.json").read_text())["train_loss"] > 0

    tok = AutoTokenizer.from_pretrained(out)
    if peft == "none":
        model = AutoModelForCausalLM.from_pretrained(out)
    else:
        from peft import PeftModel

        assert (out / "adapter_config.json").is_file()
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), out)
    inputs = tok("What is the capital of Japan?", return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] > inputs["input_ids"].shape[1]


def test_qlora_loads_the_base_in_nf4_with_double_quant(tmp_path, tiny_model):
    import bitsandbytes as bnb

    from train_entry.modeling import load_model

    cfg = RunConfig.read(run_config(tmp_path, tiny_model, "qlora"))
    assert cfg.peft.quantization.double_quant and cfg.peft.quantization.quant_type == "nf4"
    model = load_model(cfg, "fp32", cfg.base_model)
    q = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert q, "no 4-bit linear layers"
    assert q[0].weight.quant_state.nested  # double quantization
    assert q[0].weight.quant_type == "nf4"


def test_merge_command_writes_full_weights(tmp_path, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from train_entry.cli import main

    assert train(["--config", str(run_config(tmp_path, tiny_model, "lora", learning_rate=1e-2))]) == 0
    with pytest.raises(SystemExit) as done:
        main(["merge", "--adapter", str(tmp_path / "out"), "--out", str(tmp_path / "merged")])
    assert done.value.code == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "out")
    ids = torch.tensor([[5, 9, 17, 33]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)


def test_train_gives_back_the_callers_sigterm_handler(tmp_path, tiny_model):
    """train() takes SIGTERM for the run only: an embedding process (a notebook, the SDK, a test worker) keeps its
    own handler afterwards. Before, train_entry's checkpoint handler stayed, so SIGTERM no longer ended the process
    and forked children (the data pipeline's workers) ignored Pool.terminate()."""
    import signal

    def callers_handler(signum, frame):  # pragma: no cover - never delivered
        pass

    config = run_config(tmp_path, tiny_model, "lora", learning_rate=1e-2)
    before = signal.signal(signal.SIGTERM, callers_handler)
    try:
        assert train(["--config", str(config)]) == 0
        assert signal.getsignal(signal.SIGTERM) is callers_handler
    finally:
        signal.signal(signal.SIGTERM, before)
