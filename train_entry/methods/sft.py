"""Supervised fine-tuning with TRL's SFTTrainer: full, LoRA, QLoRA, DoRA and the prompt-learning family.

Prompt/completion data trains on the completion only; chat `messages` use the tokenizer's chat template;
conversations with tool calling are rendered with `tools=` and train on assistant turns only (train_entry.data).
Packing (on by default) uses TRL's best-fit-decreasing packing into padding-free rows with per-sample
position_ids, so no sample attends to another; prompt-learning methods (prefix/prompt/p_tuning) prepend
virtual tokens to every sample and use dynamic padding instead.
"""

from __future__ import annotations

from typing import Any

from ..context import TrainContext
from ..data import render_tool_conversations
from ..modeling import load_tokenizer
from .common import load_split, make_trainer, policy_model, train_and_save


def build_trainer(ctx: TrainContext):
    """The configured SFTTrainer (also used by the packing test and the throughput benchmark)."""
    from trl import SFTConfig, SFTTrainer

    cfg, t = ctx.cfg, ctx.cfg.training
    tokenizer = load_tokenizer(ctx.tokenizer_source)
    train_ds, eval_ds = load_split(ctx, "sft")
    # tool calling: rendered with tools= through the chat template, loss on assistant turns only
    train_ds, eval_ds = render_tool_conversations(train_ds, tokenizer), render_tool_conversations(eval_ds, tokenizer)
    model, pconf = policy_model(ctx)
    packing = t.packing and not cfg.peft.is_prompt_learning
    args = SFTConfig(
        **ctx.training_args(),
        max_length=t.max_length,
        packing=packing,
        packing_strategy="bfd",
        padding_free=packing,
        dataset_num_proc=None,
    )
    return make_trainer(ctx, SFTTrainer, model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                        processing_class=tokenizer, peft_config=pconf)


def run(ctx: TrainContext) -> dict[str, Any]:
    return train_and_save(ctx, build_trainer(ctx))
