"""Online RL against a trained reward model with TRL's RLOOTrainer (REINFORCE leave-one-out).

This is the "reward model + PPO" RLHF recipe in today's TRL (which no longer ships PPO): for each prompt the
policy samples `num_generations` completions, the reward model from the `reward` stage
(`ctx.layout.reward_model`) scores them (`RewardModelScorer`: the text as the reward model was trained on it,
ending in EOS), and each completion's advantage is its reward minus the mean of the
others (no value model). `training.beta` is the KL coefficient against the reference: the base with the
adapter disabled, or a frozen copy of the previous stage's adapter when the run continues one.

Prompts come from the `prompt` column of any prompt-bearing data (prompt/completion, preference, kto), or
from chat `messages` up to the last assistant turn.
"""

from __future__ import annotations

import math
from typing import Any

from ..context import TrainContext
from ..data import DataError
from ..events import log
from ..modeling import load_tokenizer
from ..scoring import RewardModelScorer, load_reward_model
from .common import load_split, make_trainer, policy_model, train_and_save


def to_prompts(ds):
    """A dataset with only a `prompt` column (string, or a list of chat messages)."""
    if "prompt" in ds.column_names:
        return ds.select_columns(["prompt"])

    def cut(row):
        msgs = row["messages"]
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=len(msgs))
        return {"prompt": msgs[:last]}

    return ds.map(cut, remove_columns=ds.column_names)


def generation_batch_size(ctx: TrainContext) -> int:
    """Completions per generation round: whole prompt groups and whole optimizer batches."""
    t = ctx.cfg.training
    per_step = t.per_device_batch_size * ctx.world.world_size * t.gradient_accumulation_steps
    return math.lcm(per_step, t.num_generations)


def build_trainer(ctx: TrainContext):
    import torch
    from trl import RLOOConfig, RLOOTrainer

    from ..runtime import torch_dtype

    t = ctx.cfg.training
    if ctx.layout.reward_model is None:
        raise DataError("method rl needs a reward model: run a `reward` stage first (stages: [sft, reward, rl]) "
                        "or set reward_model / --reward-model")
    tokenizer = load_tokenizer(ctx.tokenizer_source)
    train_ds, _ = load_split(ctx, "rl")
    model, pconf = policy_model(ctx)
    rm, rm_tokenizer = load_reward_model(ctx.layout.reward_model, base=ctx.cfg.base_model,
                                         dtype=torch_dtype(ctx.precision))
    if torch.cuda.is_available():
        rm = rm.to(f"cuda:{ctx.world.local_rank}")
    log(f"rl: RLOO with the reward model in {ctx.layout.reward_model}, {t.num_generations} completions/prompt")
    # no eval during training: evaluation scores held-out generations with the reward model afterwards
    common = {**ctx.training_args(), "eval_strategy": "no", "eval_steps": None}
    args = RLOOConfig(**common, beta=t.beta, num_generations=t.num_generations,
                      max_completion_length=t.max_new_tokens, generation_batch_size=generation_batch_size(ctx))
    return make_trainer(ctx, RLOOTrainer, model=model,
                        reward_funcs=[RewardModelScorer(rm, rm_tokenizer, t.max_length)], args=args,
                        train_dataset=to_prompts(train_ds), processing_class=tokenizer, peft_config=pconf)


def run(ctx: TrainContext) -> dict[str, Any]:
    return train_and_save(ctx, build_trainer(ctx))
