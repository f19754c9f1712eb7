"""Kahneman-Tversky Optimization with TRL's KTOTrainer: unpaired prompt/completion/label data
(thumbs up/down from the labeling app). With an adapter, the reference is the adapter-disabled base.

KTO's default loss estimates a KL term from mismatched completions within a batch, which needs at least
two samples per device batch; with `per_device_batch_size: 1` the `apo_zero_unpaired` loss (no KL term)
is used instead. Class imbalance is corrected with desirable/undesirable weights (TRL's advice: keep
desirable_weight * n_desirable / (undesirable_weight * n_undesirable) within [1, 4/3]).
"""

from __future__ import annotations

from typing import Any

from ..context import TrainContext
from ..events import log
from ..modeling import load_tokenizer
from .common import load_split, make_trainer, policy_model, train_and_save
from .dpo import precompute_pays


def class_weights(labels: list[bool]) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) so that both classes weigh the same in the loss."""
    good = sum(1 for x in labels if x)
    bad = len(labels) - good
    if good == 0 or bad == 0:
        return 1.0, 1.0
    if good >= bad:
        return 1.0, good / bad
    return bad / good, 1.0


def build_trainer(ctx: TrainContext):
    from trl import KTOConfig, KTOTrainer

    t = ctx.cfg.training
    tokenizer = load_tokenizer(ctx.tokenizer_source)
    train_ds, eval_ds = load_split(ctx, "kto")
    model, pconf = policy_model(ctx)
    loss_type = "kto" if t.per_device_batch_size > 1 else "apo_zero_unpaired"
    if loss_type != "kto":
        log("kto: per_device_batch_size 1 cannot estimate the KL term; using loss apo_zero_unpaired")
    desirable, undesirable = class_weights(list(train_ds["label"]))
    args = KTOConfig(**ctx.training_args(), max_length=t.max_length, beta=t.beta, loss_type=loss_type,
                     desirable_weight=desirable, undesirable_weight=undesirable,
                     precompute_ref_log_probs=precompute_pays(ctx, len(train_ds)))
    return make_trainer(ctx, KTOTrainer, model=model, ref_model=None, args=args, train_dataset=train_ds,
                        eval_dataset=eval_ds, processing_class=tokenizer, peft_config=pconf)


def run(ctx: TrainContext) -> dict[str, Any]:
    return train_and_save(ctx, build_trainer(ctx))
