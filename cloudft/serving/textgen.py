"""Load what a deploy serves (a base plus a PEFT adapter of any kind, or full or merged weights) and generate text,
with transformers. One module for every transformers server: the local server, the smoke test's local reference
(the same request through the adapter, in this process), and Azure's score.py, whose code snapshot carries this
file as `cloudft_textgen.py` (so it imports nothing from cloudft: torch, transformers and peft only)."""

from __future__ import annotations

import json
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence


@dataclass(frozen=True)
class Generation:
    """One generated continuation: its text (without the prompt), token count and why it ended."""

    text: str
    tokens: int
    finish_reason: Literal["stop", "length"]


def adapter_base(adapter: Path, fallback: str) -> str:
    """The base model an adapter was trained on (its adapter_config.json), else `fallback`."""
    try:
        return json.loads((Path(adapter) / "adapter_config.json").read_text())["base_model_name_or_path"] or fallback
    except (OSError, ValueError, KeyError, TypeError):
        return fallback


@dataclass
class TextModel:
    """A causal LM ready to generate; `has_adapter` when it is a PeftModel (the bare base is one switch away)."""

    model: Any
    tokenizer: Any
    has_adapter: bool
    context: Optional[int]
    prompt_learning: bool = False  # a prefix / prompt / P-tuning adapter: decoded step by step (see _stepwise)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def chat_text(self, messages: Sequence[dict]) -> str:
        """The prompt for a chat: the tokenizer's chat template with the assistant turn opened."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("this model's tokenizer has no chat template: use /v1/completions with a plain prompt")
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def generate(self, ids: list[int], max_new_tokens: int, *, temperature: float = 0.0, top_p: float = 1.0,
                 stop: Sequence[str] = (), seed: Optional[int] = None, adapter: bool = True) -> Generation:
        """Continue `ids`: greedy when temperature is 0, else sampled. `adapter=False` asks the bare base."""
        import torch

        tok = self.tokenizer
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids], device=device)
        eos = tok.eos_token_id
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tok.pad_token_id or eos}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:  # the checkpoint's generation_config may set sampling; a greedy request overrides it
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=tok)
        base_only = self.model.disable_adapter() if self.has_adapter and not adapter else nullcontext()
        with self._lock, torch.no_grad(), base_only:
            if seed is not None:
                torch.manual_seed(seed)
            if self.prompt_learning and adapter:
                new = self._stepwise(input_ids, max_new_tokens, temperature, top_p, stop)
            else:
                out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
                new = out[0][len(ids):].tolist()
        finish: Literal["stop", "length"] = "stop" if (eos is not None and eos in new) or \
            len(new) < max_new_tokens else "length"
        text = tok.decode(new, skip_special_tokens=True)
        cut = [i for i in (text.find(s) for s in stop) if i >= 0]
        if cut:  # OpenAI's answers end before the stop sequence
            text, finish = text[:min(cut)], "stop"
        return Generation(text=text, tokens=len(new), finish_reason=finish)


    def _stepwise(self, input_ids: Any, max_new_tokens: int, temperature: float, top_p: float,
                  stop: Sequence[str]) -> list[int]:
        """Decoding with one full forward pass per token (no KV cache), the way training scores the sequence.

        For prompt-learning adapters only: with transformers 5 and PEFT 0.21, `PeftModel.generate` drops a prefix
        adapter's key/values (transformers now reads `cache`, PEFT passes `past_key_values`) and places prompt-tuning
        tokens wrongly after the first step, so its answers are not the adapter's (tests/test_serve_local.py
        compares both with forward-pass decoding). Exact, at O(n^2) cost in the answer's length."""
        import torch
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

        seq, new, eos = input_ids, [], self.tokenizer.eos_token_id
        for _ in range(max_new_tokens):
            logits = self.model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[:, -1, :]
            if temperature > 0:
                logits = TemperatureLogitsWarper(temperature)(seq, logits)
                if top_p < 1:
                    logits = TopPLogitsWarper(top_p)(seq, logits)
                nxt = torch.multinomial(torch.softmax(logits.float(), dim=-1), 1)
            else:
                nxt = logits.argmax(dim=-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
            new.append(int(nxt))
            if new[-1] == eos or (stop and any(s in self.tokenizer.decode(new, skip_special_tokens=True)
                                               for s in stop)):
                break
        return new


def load_text_model(weights: str, adapter: Optional[str] = None) -> TextModel:
    """`weights` (a base model or full/merged weights: hub id or folder), with `adapter` (any PEFT adapter folder)
    on top when given. float32 on CPU, bfloat16 on a GPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    tok_src = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else weights
    tokenizer = AutoTokenizer.from_pretrained(tok_src)
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.bfloat16 if cuda else torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model = model.to("cuda" if cuda else "cpu").eval()
    context = getattr(model.config, "max_position_embeddings", None)
    prompt_learning = bool(adapter) and bool(getattr(model, "active_peft_config", None)) and \
        model.active_peft_config.is_prompt_learning
    return TextModel(model=model, tokenizer=tokenizer, has_adapter=adapter is not None,
                     context=int(context) if isinstance(context, int) else None, prompt_learning=prompt_learning)
