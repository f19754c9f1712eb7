"""Packing is exact: a packed batch from train_entry's own SFT pipeline gives the same loss as the same
samples run one by one (position_ids reset per sample, so no sample attends to another)."""

from __future__ import annotations

import torch

from helpers import EXAMPLE_DATA, read_jsonl, write_jsonl
from train_entry.config import DataConfig, OutputsConfig, PeftConfig, RunConfig, TrainingConfig
from train_entry.context import TrainContext
from train_entry.layout import resolve
from train_entry.methods.sft import build_trainer
from train_entry.runtime import World


def _token_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """Sum of next-token cross-entropy over labelled positions, and their count."""
    shift_logits, shift_labels = logits[:-1], labels[1:]
    keep = shift_labels != -100
    loss = torch.nn.functional.cross_entropy(shift_logits[keep].float(), shift_labels[keep], reduction="sum")
    return loss.item(), int(keep.sum())


def test_packed_loss_equals_unpacked_mean(tmp_path, tiny_model):
    train = write_jsonl(tmp_path / "train.jsonl", read_jsonl(EXAMPLE_DATA / "quickstart.jsonl")[:40])
    cfg = RunConfig(name="pack", base_model=str(tiny_model), peft=PeftConfig(type="none"),
                    data=DataConfig(train=str(train)),
                    training=TrainingConfig(max_steps=1, per_device_batch_size=8, max_length=128, packing=True),
                    outputs=OutputsConfig(output_dir=str(tmp_path / "o"), checkpoint_dir=str(tmp_path / "c")))
    ctx = TrainContext(cfg=cfg, layout=resolve(cfg, tmp_path / "run.json"), world=World(0, 0, 1), precision="fp32")
    trainer = build_trainer(ctx)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "position_ids" in batch and "attention_mask" not in batch  # padding-free rows
    pos, ids, labels = batch["position_ids"][0], batch["input_ids"][0], batch["labels"][0]
    starts = (pos == 0).nonzero().flatten().tolist()
    assert len(starts) >= 4, "expected several samples packed into one row"
    real_tokens = int((labels != -100).sum())
    assert real_tokens > 0

    model = trainer.model.eval()
    with torch.no_grad():
        packed_logits = model(input_ids=ids[None], position_ids=pos[None], use_cache=False).logits[0]
        packed_sum, packed_n = _token_ce(packed_logits, labels)
        unpacked_sum, unpacked_n = 0.0, 0
        bounds = starts + [len(ids)]
        for a, b in zip(bounds, bounds[1:]):
            logits = model(input_ids=ids[None, a:b], use_cache=False).logits[0]
            s, n = _token_ce(logits, labels[a:b])
            unpacked_sum, unpacked_n = unpacked_sum + s, unpacked_n + n
    assert packed_n == unpacked_n
    assert abs(packed_sum / packed_n - unpacked_sum / unpacked_n) < 1e-3
    # and the logits agree position by position, which a cross-sample leak would break
    with torch.no_grad():
        one = model(input_ids=ids[None, bounds[1]:bounds[2]], use_cache=False).logits[0]
    assert torch.allclose(packed_logits[bounds[1]:bounds[2]], one, atol=1e-4)
