"""Odds Ratio Preference Optimization with TRL's ORPOTrainer (prompt/chosen/rejected; no reference model).

ORPO lives in `trl.experimental` since TRL 1.x (it can change without deprecation), so its import is
isolated here: a TRL upgrade that moves or changes it breaks this method only.
"""

from __future__ import annotations

from typing import Any

from ..context import TrainContext
from ..modeling import load_tokenizer
from .common import load_split, make_trainer, policy_model, train_and_save


def _orpo():
    """(ORPOConfig, ORPOTrainer) from wherever this TRL keeps them."""
    try:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    except ImportError:  # TRL < 1.0 shipped ORPO at the top level
        try:
            from trl import ORPOConfig, ORPOTrainer
        except ImportError as exc:
            raise RuntimeError("this TRL has no ORPO trainer (looked in trl.experimental.orpo and trl); "
                               "pin trl to a release that ships it or use method dpo") from exc
    return ORPOConfig, ORPOTrainer


def build_trainer(ctx: TrainContext):
    ORPOConfig, ORPOTrainer = _orpo()
    t = ctx.cfg.training
    tokenizer = load_tokenizer(ctx.tokenizer_source)
    train_ds, eval_ds = load_split(ctx, "orpo")
    model, pconf = policy_model(ctx)
    extra: dict[str, Any] = {}
    if t.max_prompt_length:
        extra["max_completion_length"] = max(1, t.max_length - t.max_prompt_length)
    common = {**ctx.training_args(), "remove_unused_columns": False}  # ORPO's collator needs every column
    args = ORPOConfig(**common, max_length=t.max_length, beta=t.beta, **extra)
    return make_trainer(ctx, ORPOTrainer, model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                        processing_class=tokenizer, peft_config=pconf)


def run(ctx: TrainContext) -> dict[str, Any]:
    return train_and_save(ctx, build_trainer(ctx))
