"""Helpers every method shares: data split, the policy model (new or continued adapter, base or earlier
full weights), building the trainer with progress events, train + save."""

from __future__ import annotations

import shutil
from typing import Any, Optional

from ..context import TrainContext
from ..events import log
from ..modeling import attach_adapter, load_model, peft_config
from ..progress import dataset_maps, with_progress
from ..sharding import cpu_trainer, save_final
from ..splits import load_split as _load_split


def load_split(ctx: TrainContext, method: str):
    """(train, held-out or None) datasets in canonical columns for `method` (rule: train_entry/splits.py)."""
    train_ds, eval_ds, _ = _load_split(ctx.cfg, ctx.layout, method)
    return train_ds, eval_ds


def policy_model(ctx: TrainContext, task_type: str = "CAUSAL_LM"):
    """(model, peft_config): the starting weights (base model, or an earlier full fine-tuning stage's output)
    with the previous stage's adapter attached (trainable), or with a new adapter config for the trainer to
    apply (None for full fine-tuning)."""
    model = load_model(ctx.cfg, ctx.precision, ctx.model_source, what=ctx.model_label)
    if ctx.layout.init_adapter is not None:
        return attach_adapter(model, ctx.layout.init_adapter), None
    return model, peft_config(ctx.cfg.peft, task_type, tokenizer_source=ctx.tokenizer_source)


def make_trainer(ctx: TrainContext, trainer_cls: type, **kwargs: Any):
    """`trainer_cls(**kwargs)` with our callbacks; its tokenization, packing and reference log-prob passes
    (run by TRL's constructors) report progress events. A sharded run on CPUs gets FSDP there too
    (train_entry/sharding.py says why accelerate needs it)."""
    cls = with_progress(trainer_cls)
    if ctx.cfg.distributed.sharded:
        cls = cpu_trainer(cls)  # a no-op where accelerate turns FSDP on itself (GPUs)
    with dataset_maps():
        trainer = cls(**kwargs, callbacks=ctx.callbacks)
    return ctx.quiet(trainer)


def finished_state(checkpoint: Optional[str]) -> Optional[dict[str, Any]]:
    """The checkpoint's trainer state when it was saved at the end of training, else None."""
    import json
    from pathlib import Path

    if not checkpoint:
        return None
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        done = int(state["global_step"]) >= int(state["max_steps"]) > 0
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if done else None


def train_and_save(ctx: TrainContext, trainer) -> dict[str, Any]:
    """Train (resuming from the newest valid checkpoint), evaluate on held-out data, save model + tokenizer.

    Returns early, saving nothing final, when SIGTERM stopped the run (a checkpoint was written)."""
    resume = ctx.resume_checkpoint()
    ctx.resumed_from = resume
    if resume and ctx.world.is_main:
        log(f"resuming from {resume} (same spec and data as an earlier run; `cloudft submit --rerun` starts afresh)")
    finished = finished_state(resume)
    if finished is not None:
        # The same work already ran to the end: load its final weights instead of training again
        # (transformers would otherwise take one more step past max_steps when resuming at the end).
        trainer._load_from_checkpoint(resume)
        metrics: dict[str, Any] = {"already_trained": True, "global_step": finished["global_step"]}
        if ctx.world.is_main:
            log(f"already trained to step {finished['global_step']}: reusing those weights "
                "(`cloudft submit --rerun` retrains)")
    else:
        result = trainer.train(resume_from_checkpoint=resume)
        metrics = dict(result.metrics)
    if ctx.policy.interrupted:
        return metrics
    if trainer.eval_dataset is not None:
        metrics.update(trainer.evaluate())
    out = ctx.layout.output_dir
    if ctx.cfg.distributed.sharded:
        save_final(trainer, out, ctx.precision, full_weights=ctx.cfg.peft.type == "none")
    else:
        trainer.save_model(str(out))
    if ctx.world.is_main:
        # a frozen reference copy of a continued adapter is not part of the result
        if (out / "ref" / "adapter_config.json").is_file():
            shutil.rmtree(out / "ref")
        trainer.processing_class.save_pretrained(str(out))
    return metrics
