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


def test_varlen_attention_matches_per_sample_runs_with_gqa():
    """cloudft_varlen on a packed row equals each sample run alone; padded batches take the stock path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from train_entry.attention import register

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # grouped-query attention
    config._attn_implementation = register()
    model = LlamaForCausalLM(config).eval()
    lengths = [5, 9, 3, 7]
    samples = [torch.randint(0, 64, (n,)) for n in lengths]
    ids = torch.cat(samples)[None]
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    cu = torch.tensor([0, 5, 14, 17, 24], dtype=torch.int32)
    with torch.no_grad():
        alone = torch.cat([model(input_ids=s[None], use_cache=False).logits[0] for s in samples])
        from_positions = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
        from_cu = model(input_ids=ids, position_ids=pos, use_cache=False, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                        max_length_q=9, max_length_k=9).logits[0]
        # a padded batch (attention_mask present) goes through stock SDPA and still matches
        padded = torch.zeros(2, 9, dtype=torch.long)
        padded[0, :5], padded[1, :9] = samples[0], samples[1]
        mask = torch.zeros(2, 9, dtype=torch.long)
        mask[0, :5], mask[1, :9] = 1, 1
        batch = model(input_ids=padded, attention_mask=mask, use_cache=False).logits
    assert torch.allclose(from_positions, alone, atol=1e-5)
    assert torch.allclose(from_cu, alone, atol=1e-5)
    assert torch.allclose(batch[0, :5], alone[:5], atol=1e-5)
    assert torch.allclose(batch[1], alone[5:14], atol=1e-5)


def test_varlen_mask_takes_both_transformers_5_calling_conventions():
    """transformers 5.24 calls the mask with q_length, 5.3 (the SageMaker image's) with cache_position: an unpadded
    single packed row needs no mask under either; anything else goes to the installed sdpa_mask unchanged."""
    import torch

    from train_entry.attention import _varlen_mask

    assert _varlen_mask(1, q_length=8, kv_length=8) is None
    assert _varlen_mask(1, cache_position=torch.arange(8), kv_length=8) is None
    padded = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0]])
    mask = _varlen_mask(1, q_length=8, kv_length=8, attention_mask=padded)
    assert mask is not None and mask.shape[-1] == 8
