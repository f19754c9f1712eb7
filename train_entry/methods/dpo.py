"""Direct Preference Optimization with TRL's DPOTrainer (standard or conversational prompt/chosen/rejected).

Reference model:
- LoRA family / prompt learning, new adapter: `ref_model=None`, so TRL's reference is the same weights with the
  adapter disabled (no second copy of the model).
- Continuing a previous stage's adapter (`init_adapter`, e.g. `stages: [sft, dpo]`): TRL copies that adapter once as
  a frozen "ref" adapter (a few MB), so the reference is the SFT model, as DPO intends. Only "default" is saved.
- Full fine-tuning (`peft.type: none`): the reference would be a second full copy of the starting weights (the
  base model, or an earlier full fine-tuning stage's weights from `init_model`), so the reference log-probs are
  precomputed from them instead (see `precompute_pays`), with progress events (train_entry/progress.py).

"""

from __future__ import annotations

import math
from typing import Any

from ..context import TrainContext
from ..events import log
from ..modeling import load_tokenizer
from .common import load_split, make_trainer, policy_model, train_and_save


# -- DPO -------------------------------------------------------------------------------------------

def precompute_pays(ctx: TrainContext, train_rows: int) -> bool:
    """Precompute reference log-probs (one no-grad pass before training) when it saves something:

    - full fine-tuning: the reference is not kept in memory (saves a full copy of the weights);
    - the run makes more than one pass over the data: the reference forward is paid once, not once per epoch.

    With an adapter and at most one pass, the adapter-disabled reference already costs no memory and one
    forward per sample, and precomputing would also score samples that `max_steps` never reaches.
    """
    if ctx.cfg.peft.type == "none" and ctx.layout.init_adapter is None:
        return True
    t = ctx.cfg.training
    per_step = t.per_device_batch_size * t.gradient_accumulation_steps * ctx.world.world_size
    steps_per_epoch = max(1, math.ceil(train_rows / per_step))
    passes = t.max_steps / steps_per_epoch if t.max_steps > 0 else t.epochs
    return passes > 1


def build_trainer(ctx: TrainContext):
    from trl import DPOConfig, DPOTrainer

    t = ctx.cfg.training
    tokenizer = load_tokenizer(ctx.tokenizer_source)
    train_ds, eval_ds = load_split(ctx, "dpo")
    model, pconf = policy_model(ctx)
    if t.max_prompt_length:
        log("note: TRL >= 0.29 DPO has no max_prompt_length; max_length bounds prompt + completion")
    precompute = precompute_pays(ctx, len(train_ds))
    log(f"dpo: reference = {'precomputed log-probs' if precompute else reference_kind(ctx)}")
    args = DPOConfig(**ctx.training_args(), max_length=t.max_length, beta=t.beta,
                     precompute_ref_log_probs=precompute, dataset_num_proc=None)
    return make_trainer(ctx, DPOTrainer, model=model, ref_model=None, args=args, train_dataset=train_ds,
                        eval_dataset=eval_ds, processing_class=tokenizer, peft_config=pconf)


def reference_kind(ctx: TrainContext) -> str:
    if ctx.layout.init_adapter is not None:
        return "frozen copy of the previous stage's adapter"
    if ctx.cfg.peft.type == "none":
        return f"separate copy of the {ctx.model_label}"
    return f"{ctx.model_label} with the adapter disabled"


def run(ctx: TrainContext) -> dict[str, Any]:
    return train_and_save(ctx, build_trainer(ctx))

