"""Reward model with TRL's RewardTrainer: a sequence-classification head (one score) on the base model,
trained on prompt/chosen/rejected pairs (Bradley-Terry loss).

Saved to the output dir so that `train_entry.scoring.load_reward_model(output_dir, base)` scores text:
- LoRA family on the base model: the adapter (task SEQ_CLS; the new `score` head is saved with it through
  modules_to_save);
- full fine-tuning, or a run that started from an earlier stage (`init_adapter`, merged into the backbone
  first, or `init_model`'s full weights): the full sequence-classification model, since the result no longer
  sits on the bare base model.
The `rl` method scores its generations with this model.
"""

from __future__ import annotations

import json
from typing import Any

from ..context import TrainContext
from ..events import log
from ..modeling import load_model, load_tokenizer, peft_config
from .common import load_split, make_trainer, train_and_save

SEQ_CLS = "sequence_classification"


def _reward_base(ctx: TrainContext, tokenizer):
    model = load_model(ctx.cfg, ctx.precision, ctx.model_source, task=SEQ_CLS, num_labels=1, what=ctx.model_label)
    model.config.pad_token_id = tokenizer.pad_token_id
    if ctx.layout.init_adapter is None:
        return model, peft_config(ctx.cfg.peft, "SEQ_CLS", tokenizer_source=ctx.tokenizer_source)
    from peft import PeftModel

    log(f"reward: merging the starting adapter {ctx.layout.init_adapter} into the backbone")
    model = PeftModel.from_pretrained(model, str(ctx.layout.init_adapter)).merge_and_unload()
    return model, peft_config(ctx.cfg.peft, "SEQ_CLS", tokenizer_source=ctx.tokenizer_source)


def build_trainer(ctx: TrainContext):
    from trl import RewardConfig, RewardTrainer

    tokenizer = load_tokenizer(ctx.tokenizer_source)
    train_ds, eval_ds = load_split(ctx, "reward")
    model, pconf = _reward_base(ctx, tokenizer)
    args = RewardConfig(**ctx.training_args(), max_length=ctx.cfg.training.max_length, dataset_num_proc=None)
    return make_trainer(ctx, RewardTrainer, model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                        processing_class=tokenizer, peft_config=pconf)


def run(ctx: TrainContext) -> dict[str, Any]:
    trainer = build_trainer(ctx)
    metrics = train_and_save(ctx, trainer)
    if ctx.policy.interrupted or not ctx.world.is_main:
        return metrics
    out = ctx.layout.output_dir
    started_elsewhere = ctx.layout.init_adapter is not None or ctx.layout.init_model is not None
    if started_elsewhere and (out / "adapter_config.json").is_file():
        # the adapter sits on a backbone that is not the bare base model: save the full scorer instead
        merged = trainer.model.merge_and_unload()
        (out / "adapter_config.json").unlink()
        for f in out.glob("adapter_model.*"):
            f.unlink()
        merged.save_pretrained(str(out))
    (out / "reward_model.json").write_text(json.dumps(
        {"base_model": ctx.cfg.base_model, "adapter": (out / "adapter_config.json").is_file()}, indent=2))
    return metrics
