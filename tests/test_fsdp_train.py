"""Sharded training on this CPU machine: two processes (torchrun + gloo) running PyTorch FSDP2 through accelerate, as
train_entry sets it up for `distributed.strategy: fsdp` (train_entry/sharding.py).

- Sharded and data-parallel training of the tiny model (same data order, same seed) give the same losses and the
  same final weights within TOLERANCE: full fine-tuning (fp32, full weights gathered on rank 0), and QLoRA with
  activation checkpointing (4-bit weights stored in the compute dtype and sharded, the adapter gathered on rank 0).
- kill -9 of a sharded run (launcher and ranks) resumes from the newest complete checkpoint and ends where an
  uninterrupted run ends; `cloudft stop` (SIGTERM) of a local FSDP run makes every rank checkpoint at the same step
  and stop, and submitting the spec again resumes there.
"""

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
from train_entry.config import (DataConfig, DistributedConfig, OutputsConfig, PeftConfig, RunConfig,
                                TrainingConfig)

#: float32 on the CPU: sharding changes only the order in which the same gradients are summed. Measured: losses
#: differ by at most 5e-7 and weights by at most 2e-6 (full fine-tuning); QLoRA adapters are identical.
TOLERANCE = 1e-5
STEPS = 8
SAVE_STEPS = 3


def _config(root: Path, model: Path, train: Path, strategy: str, peft: str, **training) -> Path:
    t = dict(max_steps=STEPS, per_device_batch_size=4, max_length=64, logging_steps=1, learning_rate=5e-3,
             lr_scheduler="constant", warmup_ratio=0.0, save_steps=SAVE_STEPS, save_total_limit=3, packing=False)
    t.update(training)
    cfg = RunConfig(
        name=root.name, base_model=str(model),
        peft=PeftConfig(type=peft, r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]),
        data=DataConfig(train=str(train)), training=TrainingConfig(**t),
        distributed=DistributedConfig(strategy=strategy, nproc_per_node=2, launcher="torchrun"),
        outputs=OutputsConfig(output_dir=str(root / "out"), checkpoint_dir=str(root / "ckpt")),
    )
    cfg.eval.enabled = False
    cfg.tracking.tensorboard = False
    return cfg.write(root / "run.json")


def _torchrun(config: Path) -> subprocess.Popen:
    """Two ranks under torchrun, in their own session (the test can signal the launcher's group)."""
    log = open(config.parent / "console.txt", "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "train_entry", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _console(config: Path) -> str:
    return (config.parent / "console.txt").read_text()


def _steps_logged(out: Path) -> int:
    log = out / "train_log.jsonl"
    return sum(1 for line in log.read_text().splitlines() if '"loss"' in line) if log.exists() else 0


def _losses(out: Path) -> list[float]:
    return [row["loss"] for row in read_jsonl(out / "train_log.jsonl") if "loss" in row]


def _weights(out: Path) -> dict:
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (out / "adapter_config.json").is_file() else "model.safetensors"
    return load_file(str(out / name))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fsdp-data")
    return write_jsonl(root / "train.jsonl", read_jsonl(EXAMPLE_DATA / "quickstart.jsonl")[:48])


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model, train_file):
    """finished(strategy, peft, **training) → the output dir of that run to the end (each run once per module)."""
    done: dict[tuple, Path] = {}

    def run(strategy: str, peft: str, **training) -> Path:
        key = (strategy, peft, tuple(sorted(training.items())))
        if key not in done:
            root = tmp_path_factory.mktemp(f"{strategy}-{peft}")
            config = _config(root, tiny_model, train_file, strategy, peft, **training)
            proc = _torchrun(config)
            assert proc.wait(timeout=400) == 0, _console(config)[-4000:]
            done[key] = root / "out"
        return done[key]

    return run


def _events(out: Path, name: str) -> list[dict]:
    """The `name` events of both ranks' logs."""
    return [json.loads(line.split("##cloudft ", 1)[1]) for log in ("train_entry.log", "train_entry.rank1.log")
            for line in (out / log).read_text().splitlines() if f'"event": "{name}"' in line]


def _rank_digests(out: Path) -> set[str]:
    events = _events(out, "rank_digest")
    assert {e["rank"] for e in events} == {0, 1}
    return {e["digest"] for e in events}


def test_fsdp_full_fine_tune_matches_data_parallel(finished):
    sharded, replicated = finished("fsdp", "none"), finished("ddp", "none")
    loss_diff = max(abs(a - b) for a, b in zip(_losses(sharded), _losses(replicated)))
    assert len(_losses(sharded)) == len(_losses(replicated)) == STEPS
    weight_diff = _max_diff(_weights(sharded), _weights(replicated))
    print(f"\nfull fine-tuning, FSDP vs DDP over 2 processes: max |loss diff| {loss_diff:.2e}, "
          f"max |weight diff| {weight_diff:.2e}")
    assert loss_diff <= TOLERANCE and weight_diff <= TOLERANCE
    assert _losses(sharded)[-1] < _losses(sharded)[0]  # it trained
    assert len(_rank_digests(sharded)) == 1  # the gathered weights are the same on both ranks
    assert all(e["held_mib"] <= 0.55 * e["total_mib"] for e in _events(sharded, "shards"))  # half each
    assert "fsdp: FSDP2 full_shard over 2 processes; one unit per LlamaDecoderLayer" in \
        (sharded / "train_entry.log").read_text()
    # checkpoints are sharded (one file per rank), complete, and the marker lists every rank's files
    ckpt = sharded.parent / "ckpt" / f"checkpoint-{SAVE_STEPS}"
    listed = json.loads((ckpt / MARKER).read_text())["files"]
    for part in ("pytorch_model_fsdp_0", "optimizer_0"):
        assert {f"{part}/__0_0.distcp", f"{part}/__1_0.distcp", f"{part}/.metadata"} <= set(listed)
    assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json"} <= set(listed)
    # the final weights load as a normal model
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(sharded).dtype.is_floating_point


def test_fsdp_qlora_with_activation_checkpointing_matches_data_parallel(finished):
    sharded = finished("fsdp", "qlora", gradient_checkpointing=True)
    replicated = finished("ddp", "qlora", gradient_checkpointing=True)
    loss_diff = max(abs(a - b) for a, b in zip(_losses(sharded), _losses(replicated)))
    adapter_diff = _max_diff(_weights(sharded), _weights(replicated))
    print(f"\nQLoRA + activation checkpointing, FSDP vs DDP: max |loss diff| {loss_diff:.2e}, "
          f"max |adapter diff| {adapter_diff:.2e}")
    assert loss_diff <= TOLERANCE and adapter_diff <= TOLERANCE
    assert (sharded / "adapter_config.json").is_file() and not (sharded / "model.safetensors").exists()
    assert "activation checkpointing on" in (sharded / "train_entry.log").read_text()
    # each rank holds half of the model, 4-bit weights included: stored in the compute dtype (fp32 here)
    shards = _events(sharded, "shards")
    assert {e["rank"] for e in shards} == {0, 1}
    for e in shards:
        assert e["held_mib"] <= 0.55 * e["total_mib"]
        assert e["linear4bit"] == e["linear4bit_sharded"] > 0 and e["linear4bit_storage"] == "float32"


def test_fsdp_kill_9_resumes_and_ends_like_an_uninterrupted_run(finished, tiny_model, train_file, tmp_path):
    import psutil

    reference = finished("fsdp", "none")
    config = _config(tmp_path / "killed", tiny_model, train_file, "fsdp", "none")
    out = tmp_path / "killed" / "out"
    proc = _torchrun(config)
    kill_at = random.Random().randint(SAVE_STEPS + 1, STEPS - 2)
    deadline = time.time() + 300
    while _steps_logged(out) < kill_at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    ranks = psutil.Process(proc.pid).children(recursive=True)
    assert len(ranks) >= 2
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher; its ranks (own sessions) die with it (PR_SET_PDEATHSIG)
    proc.wait()
    gone, alive = psutil.wait_procs(ranks, timeout=20)
    assert not alive, f"ranks still running after the launcher was killed: {alive}"
    assert not (out / "model.safetensors").exists()
    partial = tmp_path / "killed" / "ckpt" / f"checkpoint-{STEPS + 100}"  # as a kill in the middle of a save
    partial.mkdir()
    (partial / "trainer_state.json").write_text("{truncated")
    assert latest_valid(tmp_path / "killed" / "ckpt") != partial

    again = _torchrun(config)
    assert again.wait(timeout=400) == 0, _console(config)[-4000:]
    log = (out / "train_entry.log").read_text()
    resumed = [json.loads(line.split("##cloudft ", 1)[1])["resumed_from"] for line in log.splitlines()
               if '"train_start"' in line]
    assert resumed[-1] >= SAVE_STEPS, log[-3000:]
    assert "skipping incomplete or corrupt checkpoint" in log
    assert _max_diff(_weights(out), _weights(reference)) <= TOLERANCE


def test_fsdp_local_run_stops_with_a_checkpoint_of_every_rank_and_resubmit_resumes(tmp_path, tiny_model):
    """The local provider end to end: `cloudft submit` plans FSDP over 2 processes and its runner starts torchrun;
    `cloudft stop` (SIGTERM) makes both ranks checkpoint at the same step and stop; the same spec again resumes
    there (and is stopped too). The run is long enough that a stop never arrives after training ended, however
    loaded the machine; finishing after a resume is test_fsdp_kill_9_resumes_and_ends_like_an_uninterrupted_run's."""
    from test_cli import cloudft, write_spec

    spec = write_spec(tmp_path, tiny_model, max_steps=100000, save_steps=100000, per_device_batch_size=4)
    spec.write_text(spec.read_text() + "compute: {gpus_per_node: 2}\ndistributed: {strategy: fsdp}\n")
    info = json.loads(cloudft("submit", str(spec), "--detach", "--json").stdout)
    plan = json.loads((Path(info["run_dir"]) / "plan.json").read_text())
    assert plan["instance"]["strategy"] == "fsdp" and plan["stages"][0]["run_config"]["distributed"]["strategy"] \
        == "fsdp"
    out = Path(plan["stages"][0]["run_config"]["outputs"]["output_dir"])
    deadline = time.time() + 300
    while time.time() < deadline and _steps_logged(out) < 2:
        time.sleep(0.2)
    assert _steps_logged(out) >= 2, (Path(info["run_dir"]) / "log.txt").read_text()[-3000:]
    assert "stopped" in cloudft("stop", info["run_id"], timeout=120).stdout
    assert json.loads(cloudft("status", info["run_id"], "--json").stdout)["status"] == "stopped"
    ckpt = latest_valid(Path(plan["stages"][0]["run_config"]["outputs"]["checkpoint_dir"]))
    assert ckpt is not None, "SIGTERM did not leave a complete checkpoint"
    step = json.loads((ckpt / "trainer_state.json").read_text())["global_step"]
    assert step >= 2 and [p.name for p in ckpt.parent.glob("checkpoint-*")] == [ckpt.name]  # one step for all
    listed = json.loads((ckpt / MARKER).read_text())["files"]
    assert {"pytorch_model_fsdp_0/__0_0.distcp", "pytorch_model_fsdp_0/__1_0.distcp", "rng_state_0.pth",
            "rng_state_1.pth"} <= set(listed)
    for name in ("train_entry.log", "train_entry.rank1.log"):  # both ranks stopped after the checkpoint
        assert '"event": "interrupted"' in (out / name).read_text()

    again = json.loads(cloudft("submit", str(spec), "--detach", "--json").stdout)  # the same spec and data
    log = Path(again["run_dir"]) / "0-sft" / "output" / "train_entry.log"
    deadline = time.time() + 300
    while time.time() < deadline and '"train_start"' not in (log.read_text() if log.exists() else ""):
        time.sleep(0.2)
    starts = [json.loads(line.split("##cloudft ", 1)[1]) for line in log.read_text().splitlines()
              if '"train_start"' in line]
    assert starts and starts[-1]["resumed_from"] == step, log.read_text()[-3000:]
    assert "stopped" in cloudft("stop", again["run_id"], timeout=120).stdout


def test_fsdp_run_config_started_as_one_process_is_a_config_error(tiny_model, train_file, tmp_path, capsys):
    from train_entry.cli import train

    config = _config(tmp_path / "one", tiny_model, train_file, "fsdp", "lora")
    assert train(["--config", str(config)]) == 2
    said = capsys.readouterr().out
    assert "distributed.strategy: fsdp but this is a single process" in said and "torchrun --nproc_per_node 2" in said
