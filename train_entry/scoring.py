"""Reward models as scorers: load a trained reward model (adapter or full weights) and score texts.

Used by the `rl` method (its reward function) and by evaluation (held-out accuracy of a reward stage,
reward of generations after an `rl` stage). The `reward` method writes what `load_reward_model` reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .modeling import from_pretrained, load_tokenizer


def load_reward_model(path: str | Path, base: Optional[str] = None, dtype=None):
    """(model, tokenizer) of a saved reward model, merged and in eval mode: `model(**enc).logits[:, 0]` scores.

    An adapter reward model sits on `base` (default: the adapter's base_model_name_or_path)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    path = Path(path)
    kwargs = {"num_labels": 1, "dtype": dtype or torch.float32}
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        base = base or json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        model = from_pretrained(AutoModelForSequenceClassification, base, "reward model backbone", **kwargs)
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    else:
        model = from_pretrained(AutoModelForSequenceClassification, str(path), "reward model", **kwargs)
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
