"""Reward model with TRL's RewardTrainer: a sequence-classification head (one score) on the base model,
trained on prompt/chosen/rejected pairs (Bradley-Terry loss).

Saved to the output dir so that `load_reward_model(output_dir, base)` scores text:
- LoRA family: the adapter (task SEQ_CLS; the new `score` head is saved with it through modules_to_save);
- full fine-tuning, or a run that started from an `init_adapter`: the full sequence-classification model
  (the starting adapter is merged into the backbone first, so the result no longer matches the bare base).
The `rl` method scores its generations with this model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..context import TrainContext
from ..events import log
from ..modeling import load_model, load_tokenizer, peft_config
from .common import load_split, train_and_save

SEQ_CLS = "sequence_classification"


def _reward_base(ctx: TrainContext, tokenizer):
    model = load_model(ctx.cfg, ctx.precision, task=SEQ_CLS, num_labels=1)
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
    return ctx.quiet(RewardTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                   processing_class=tokenizer, peft_config=pconf, callbacks=ctx.callbacks))


def run(ctx: TrainContext) -> dict[str, Any]:
    trainer = build_trainer(ctx)
    metrics = train_and_save(ctx, trainer)
    if ctx.policy.interrupted or not ctx.world.is_main:
        return metrics
    out = ctx.layout.output_dir
    if ctx.layout.init_adapter is not None and (out / "adapter_config.json").is_file():
        # the adapter sits on a merged backbone: save the full scorer instead
        merged = trainer.model.merge_and_unload()
        (out / "adapter_config.json").unlink()
        for f in out.glob("adapter_model.*"):
            f.unlink()
        merged.save_pretrained(str(out))
    (out / "reward_model.json").write_text(json.dumps(
        {"base_model": ctx.cfg.base_model, "adapter": (out / "adapter_config.json").is_file()}, indent=2))
    return metrics


def load_reward_model(path: str | Path, base: Optional[str] = None, dtype=None):
    """(model, tokenizer) of a saved reward model, merged and in eval mode: `model(**enc).logits[:, 0]` scores."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    kwargs = {"num_labels": 1, "dtype": dtype or torch.float32}
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        base = base or json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        model = AutoModelForSequenceClassification.from_pretrained(base, **kwargs)
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
    tokenizer = load_tokenizer(str(path) if (path / "tokenizer_config.json").is_file() else base)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def score(model, tokenizer, texts: list[str], max_length: int = 1024, batch_size: int = 8) -> list[float]:
    """Reward-model scores of full texts (prompt + completion), each ending in EOS as in reward training."""
    import torch

    eos = tokenizer.eos_token or ""
    texts = [t if t.endswith(eos) else t + eos for t in texts]
    scores: list[float] = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length, add_special_tokens=False).to(device)
            scores.extend(model(**enc).logits[:, 0].float().tolist())
    return scores


class RewardModelScorer:
    """A TRL reward function (`prompts, completions -> list[float]`) backed by a trained reward model.

    Scores the text the way RewardTrainer trained on it: chat-templated for conversational samples, plain
    prompt + completion otherwise, always ending in EOS."""

    __name__ = "reward_model"

    def __init__(self, model, tokenizer, max_length: int = 1024):
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length

    def text(self, prompt, completion) -> str:
        if isinstance(prompt, str):
            return prompt + completion
        return self.tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=False)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        texts = [self.text(p, c) for p, c in zip(prompts, completions)]
        return score(self.model, self.tokenizer, texts, self.max_length)
