"""Supervised fine-tuning with TRL's SFTTrainer: full, LoRA, QLoRA, DoRA and the prompt-learning family.

Prompt/completion data trains on the completion only; chat `messages` use the tokenizer's chat template.
Packing (on by default) uses TRL's best-fit-decreasing packing with per-sample position_ids, so no sample
attends to another; prompt-learning methods (prefix/prompt/p_tuning) prepend virtual tokens and use
dynamic padding instead.
"""

from __future__ import annotations

from typing import Any

from ..context import TrainContext
from ..data import load_dataset
from ..modeling import attach_adapter, load_model, load_tokenizer, peft_config


def build_trainer(ctx: TrainContext):
    """The configured SFTTrainer (also used by the throughput benchmark)."""
    from trl import SFTConfig, SFTTrainer

    cfg, layout, t = ctx.cfg, ctx.layout, ctx.cfg.training
    tokenizer = load_tokenizer(ctx.tokenizer_source)
    train_ds, fmt = load_dataset(layout.train, cfg.data.format, "sft", cfg.data.columns)
    eval_ds = None
    if layout.validation is not None:
        eval_ds, _ = load_dataset(layout.validation, fmt, "sft", cfg.data.columns)
    model = load_model(cfg, ctx.precision)
    pconf = None
    if layout.init_adapter is not None:
        model = attach_adapter(model, layout.init_adapter)
    else:
        pconf = peft_config(cfg.peft, "CAUSAL_LM", tokenizer_source=ctx.tokenizer_source)
    packing = t.packing and not cfg.peft.is_prompt_learning
    args = SFTConfig(
        **ctx.training_args(),
        max_length=t.max_length,
        packing=packing,
        packing_strategy="bfd",
        padding_free=packing,
        dataset_num_proc=None,
    )
    return ctx.quiet(SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                processing_class=tokenizer, peft_config=pconf, callbacks=ctx.callbacks))


def run(ctx: TrainContext) -> dict[str, Any]:
    trainer = build_trainer(ctx)
    result = trainer.train(resume_from_checkpoint=ctx.resume_checkpoint())
    metrics: dict[str, Any] = dict(result.metrics)
    if ctx.policy.interrupted:
        return metrics
    if trainer.eval_dataset is not None:
        metrics.update(trainer.evaluate())
    trainer.save_model(str(ctx.layout.output_dir))
    if ctx.world.is_main:
        trainer.processing_class.save_pretrained(str(ctx.layout.output_dir))
    return metrics
