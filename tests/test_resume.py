"""Resume after any interruption: kill -9 at a random step, start again, and the final adapter equals an
uninterrupted run's (CPU, same seed). Partial checkpoints are skipped, never loaded."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import EXAMPLE_DATA, read_jsonl, write_jsonl
from train_entry.checkpoints import MARKER, latest_valid
from train_entry.config import DataConfig, OutputsConfig, PeftConfig, RunConfig, TrainingConfig

STEPS = 16


def _config(tmp_path: Path, name: str, model: Path, train: Path) -> Path:
    cfg = RunConfig(
        name=name, base_model=str(model),
        peft=PeftConfig(type="lora", r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]),
        data=DataConfig(train=str(train)),
        training=TrainingConfig(max_steps=STEPS, per_device_batch_size=4, max_length=64, logging_steps=1,
                       learning_rate=5e-3, save_steps=3, save_total_limit=3, packing=False),
        outputs=OutputsConfig(output_dir=str(tmp_path / name / "out"), checkpoint_dir=str(tmp_path / name / "ckpt")),
    )
    cfg.eval.enabled = False
    cfg.tracking.tensorboard = False
    return cfg.write(tmp_path / name / "run.json")


def _start(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "train_entry", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _adapter(out: Path):
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


def _steps_logged(out: Path) -> int:
    log = out / "train_log.jsonl"
    if not log.exists():
        return 0
    return max((r["step"] for r in read_jsonl(log)), default=0)


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path, tiny_model):
    import torch

    train = write_jsonl(tmp_path / "train.jsonl", read_jsonl(EXAMPLE_DATA / "quickstart.jsonl")[:48])
    killed_cfg = _config(tmp_path, "killed", tiny_model, train)
    victim = _start(killed_cfg)
    kill_at = random.Random().randint(4, STEPS - 3)
    out = tmp_path / "killed" / "out"
    deadline = time.time() + 240
    while _steps_logged(out) < kill_at and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    ref = _start(_config(tmp_path, "ref", tiny_model, train))  # the uninterrupted run, same seed
    assert not (out / "adapter_model.safetensors").exists()
    # a checkpoint folder without its completion marker (as a kill mid-save leaves) must be skipped
    partial = tmp_path / "killed" / "ckpt" / f"checkpoint-{STEPS + 100}"
    partial.mkdir()
    (partial / "trainer_state.json").write_text("{truncated")
    assert latest_valid(tmp_path / "killed" / "ckpt") != partial

    again = _start(killed_cfg)
    output = again.communicate(timeout=300)[0]
    assert again.returncode == 0, output
    assert ref.wait(timeout=300) == 0, ref.stdout.read()
    assert '"resumed_from": 0' not in output, "the second start did not resume"
    assert "skipping incomplete or corrupt checkpoint" in output

    a, b = _adapter(tmp_path / "ref" / "out"), _adapter(out)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_sigterm_writes_a_checkpoint_and_exits_143(tmp_path, tiny_model):
    train = write_jsonl(tmp_path / "train.jsonl", read_jsonl(EXAMPLE_DATA / "quickstart.jsonl")[:48])
    cfg = RunConfig.read(_config(tmp_path, "term", tiny_model, train))
    cfg.training.max_steps = 100000
    cfg.training.save_steps = 100000
    config = cfg.write(tmp_path / "term" / "run.json")
    proc = _start(config)
    out = tmp_path / "term" / "out"
    deadline = time.time() + 120
    while _steps_logged(out) < 2 and time.time() < deadline:
        time.sleep(0.05)
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 143, output
    assert time.time() - started < 30
    ckpt = latest_valid(tmp_path / "term" / "ckpt")
    assert ckpt is not None and (ckpt / MARKER).is_file()
    assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] >= 2
