"""Trainer callbacks: progress events + JSONL log, time-based checkpoints, SIGTERM (spot) handling,
and the completion marker on every checkpoint."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback

from .checkpoints import mark_complete
from .events import emit, log
from .progress import EVALUATE, Phase


class ProgressCallback(TrainerCallback):
    """Emit `##cloudft` events and append every log dict to train_log.jsonl (main process only)."""

    def __init__(self, log_path: Path, stage: int, method: str):
        self.log_path = log_path
        self.stage = stage
        self.method = method
        self._eval: Optional[Phase] = None

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        """Evaluation batches (the trainer's own held-out evaluation) as an `evaluate` phase."""
        if self._eval is None:
            try:
                total = len(eval_dataloader.dataset)
            except (AttributeError, TypeError):
                total = None
            self._eval = Phase(EVALUATE, total=total, unit="samples", label="held-out evaluation").__enter__()
        self._eval.advance(args.per_device_eval_batch_size * max(1, args.world_size))

    def on_evaluate(self, args, state, control, **kwargs):
        if self._eval is not None:
            self._eval.__exit__(None, None, None)
            self._eval = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            emit("train_start", stage=self.stage, method=self.method, max_steps=state.max_steps,
                 resumed_from=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch, **logs}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if "loss" in logs:
            emit("step", step=state.global_step, max_steps=state.max_steps, loss=logs["loss"])
        elif any(k.startswith("eval_") for k in logs):
            emit("eval", step=state.global_step, **{k: v for k, v in logs.items() if k.startswith("eval_")})

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            emit("train_end", stage=self.stage, step=state.global_step)
        if args.world_size > 1 and model is not None:
            # every rank reports a digest of its trainable weights: data-parallel replicas must agree, and so
            # must the gathered weights of a sharded run
            emit("rank_digest", rank=args.process_index, digest=trainable_digest(model))
        import torch

        if torch.cuda.is_available():  # measured peak per GPU, to check the planner's memory model against
            emit("gpu_memory", rank=args.process_index,
                 max_allocated_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1),
                 max_reserved_mib=round(torch.cuda.max_memory_reserved() / 2**20, 1))


def trainable_digest(model) -> str:
    """SHA-256 over the trainable parameters (names and float32 bytes, rounded to 1e-6). Sharded parameters
    (FSDP2 DTensors) are gathered first, so every rank must call it."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.requires_grad:
            value = p.full_tensor() if hasattr(p, "full_tensor") else p
            h.update(name.encode())
            h.update(torch.round(value.detach().float().cpu() * 1e6).to(torch.int64).numpy().tobytes())
    return h.hexdigest()


class CheckpointPolicyCallback(TrainerCallback):
    """Checkpoint every `minutes` (on top of save_steps), and on SIGTERM: save, then stop.

    SIGTERM is what spot interruptions and `cloudft stop` send; the trainer finishes the current step,
    saves a checkpoint, and the process exits with EXIT_INTERRUPTED. With several processes every rank takes the
    same decision at the same step (a sharded save is a collective: a rank that saved alone would hang): the
    ranks' flags are combined after each step, so a signal or a clock seen by one rank stops or saves them all.
    """

    def __init__(self, minutes: float = 0.0, per_node: int = 1):
        self.minutes = minutes
        self.per_node = per_node  # processes per node: the first of each node marks what its node wrote
        self.last_save = time.monotonic()
        self.interrupted = False
        self._previous: Any = None

    def install(self) -> None:
        """Take SIGTERM for this run; `uninstall` gives it back (an embedding process keeps its own handler)."""
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def uninstall(self) -> None:
        """Restore the SIGTERM handler that was in place before `install`."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum, frame) -> None:
        if not self.interrupted:
            log("SIGTERM received: saving a checkpoint, then exiting")
        self.interrupted = True

    def on_step_end(self, args, state, control, **kwargs):
        due = bool(self.minutes) and time.monotonic() - self.last_save >= self.minutes * 60
        stop, due = any_rank(self.interrupted, due) if args.world_size > 1 else (self.interrupted, due)
        if stop:
            self.interrupted = True
            control.should_save = True
            control.should_training_stop = True
        elif due:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_save = time.monotonic()
        if args.world_size > 1:
            barrier()  # every rank has written its part (RNG state, shards) before any marker lists the files
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        per_node = max(1, min(self.per_node, args.world_size))
        if args.process_index % per_node == 0 and ckpt.is_dir():
            mark_complete(ckpt, node=args.process_index // per_node, nodes=max(1, args.world_size // per_node))
        if args.world_size > 1:
            barrier()  # no rank goes on (or exits after a SIGTERM) before the markers are written


def _group_device():
    """Where collectives of the default process group take tensors (NCCL: the process's GPU)."""
    import torch
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def any_rank(*flags: bool) -> tuple[bool, ...]:
    """Each flag, true when it is true on any rank (one all-reduce)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return tuple(flags)
    t = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=_group_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
