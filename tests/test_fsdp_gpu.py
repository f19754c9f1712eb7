"""Sharded training on CUDA GPUs: what the CPU tests (tests/test_fsdp_train.py) cannot show. Skipped without two
CUDA GPUs (FSDP over NCCL needs one GPU per process).

- FSDP-QLoRA in bf16: the 4-bit weights are stored in bfloat16 (the compute dtype) and sharded, each GPU holds
  less than a data-parallel replica, and training matches data-parallel QLoRA.
- Full fine-tuning in bf16: FSDP trains fp32 master weights; the final weights are gathered on rank 0 and saved in
  bf16, like an unsharded run's.

Run: .venv/bin/pytest tests/test_fsdp_gpu.py -q -s (about a minute on two GPUs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import EXAMPLE_DATA, read_jsonl, write_jsonl
from train_entry.config import (DataConfig, DistributedConfig, OutputsConfig, PeftConfig, RunConfig,
                                TrainingConfig)


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


pytestmark = pytest.mark.skipif(_gpus() < 2, reason="needs two CUDA GPUs (FSDP over NCCL: one GPU per process)")

#: bf16 on GPUs: reductions run in a different order and precision under FSDP (reduce-scatter) than under DDP
#: (all-reduce), so losses agree to about 1e-2, not bit for bit.
BF16_TOLERANCE = 2e-2


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """Large enough that sharding shows in the memory a GPU holds (~30M parameters), small enough for seconds."""
    from train_entry.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "small-llama"
    return build_tiny_model(out, data=[EXAMPLE_DATA / "quickstart.jsonl"], hidden_size=512, layers=8, heads=8)


def _run(root: Path, model: Path, strategy: str, peft: str, **dist) -> Path:
    train = write_jsonl(root / "train.jsonl", read_jsonl(EXAMPLE_DATA / "quickstart.jsonl")[:64])
    cfg = RunConfig(
        name=root.name, base_model=str(model),
        peft=PeftConfig(type=peft, r=8, alpha=16, dropout=0.0, target_modules="all-linear"),
        data=DataConfig(train=str(train)),
        training=TrainingConfig(max_steps=8, per_device_batch_size=4, max_length=128, logging_steps=1,
                                learning_rate=1e-3, lr_scheduler="constant", warmup_ratio=0.0, save_steps=4,
                                packing=False, precision="bf16", gradient_checkpointing=True),
        distributed=DistributedConfig(**{"strategy": strategy, "nproc_per_node": 2, "launcher": "torchrun", **dist}),
        outputs=OutputsConfig(output_dir=str(root / "out"), checkpoint_dir=str(root / "ckpt")),
    )
    cfg.eval.enabled = False
    cfg.tracking.tensorboard = False
    config = cfg.write(root / "run.json")
    procs = cfg.distributed.nnodes * cfg.distributed.nproc_per_node
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
                           "-m", "train_entry", "--config", str(config)], capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return root / "out"


def _events(out: Path, name: str) -> list[dict]:
    return [json.loads(line.split("##cloudft ", 1)[1]) for log in ("train_entry.log", "train_entry.rank1.log")
            for line in (out / log).read_text().splitlines() if f'"event": "{name}"' in line]


def _losses(out: Path) -> list[float]:
    return [row["loss"] for row in read_jsonl(out / "train_log.jsonl") if "loss" in row]


def _close(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(y), 1e-6) for x, y in zip(a, b))


def _sharded_and_replicated(root: Path, model: Path, peft: str) -> tuple[Path, Path]:
    """The same run under FSDP and under DDP; their losses agree within BF16_TOLERANCE."""
    sharded, replicated = _run(root / "fsdp", model, "fsdp", peft), _run(root / "ddp", model, "ddp", peft)
    diff = _close(_losses(sharded), _losses(replicated))
    print(f"\n{peft}: FSDP vs DDP (bf16, 2 GPUs): max relative loss difference {diff:.2e}")
    assert diff <= BF16_TOLERANCE
    return sharded, replicated


def test_fsdp_qlora_bf16_shards_the_4bit_weights_and_matches_ddp(tmp_path, small_model):
    sharded, replicated = _sharded_and_replicated(tmp_path, small_model, "qlora")
    for e in _events(sharded, "shards"):
        assert e["linear4bit"] == e["linear4bit_sharded"] > 0 and e["linear4bit_storage"] == "bfloat16"
    fsdp_peak = max(e["max_allocated_mib"] for e in _events(sharded, "gpu_memory"))
    ddp_peak = max(e["max_allocated_mib"] for e in _events(replicated, "gpu_memory"))
    print(f"peak allocated per GPU: FSDP {fsdp_peak:.0f} MiB, DDP {ddp_peak:.0f} MiB")
    assert fsdp_peak < ddp_peak
    assert (sharded / "adapter_model.safetensors").is_file()


def test_fsdp_full_fine_tune_bf16_saves_gathered_bf16_weights(tmp_path, small_model):
    from safetensors.torch import load_file

    sharded, replicated = _sharded_and_replicated(tmp_path, small_model, "none")
    weights = load_file(str(sharded / "model.safetensors"))
    assert {str(v.dtype) for v in weights.values()} == {"torch.bfloat16"}
    assert weights.keys() == load_file(str(replicated / "model.safetensors")).keys()


@pytest.mark.skipif(_gpus() < 4, reason="hybrid_shard needs four GPUs here (2 'nodes' x 2 processes on one machine)")
def test_fsdp_hybrid_shard_trains_on_a_two_by_two_mesh(tmp_path, small_model):
    """HSDP through accelerate's ParallelismConfig (refused on CPUs by accelerate): shard within a node of 2,
    replicate across 2; each rank holds half of the model."""
    out = _run(tmp_path / "hsdp", small_model, "fsdp", "lora", sharding="hybrid_shard", nnodes=2)
    assert "hybrid: sharded over 2 per node, replicated over 2 nodes" in (out / "train_entry.log").read_text()
    assert (out / "adapter_model.safetensors").is_file() and _losses(out)[-1] < _losses(out)[0]
    assert all(e["held_mib"] <= 0.55 * e["total_mib"] for e in _events(out, "shards"))
