"""Generate candidate answer pairs: two samples per prompt from one model, or one from each of two models.

A model is a run id (resolved through the registry and its provider's artifacts), a model directory, or a PEFT
adapter directory (`adapter_config.json`: the base model is loaded first, then the adapter). torch,
transformers and peft are imported only here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from ..errors import CloudftError


@dataclass
class Sampling:
    """Generation settings, recorded with every pair."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int = 128
    seed: int = 0

    def check(self) -> None:
        if self.temperature <= 0:
            raise CloudftError("--temperature must be > 0 (sampling two different answers needs randomness)")
        if not 0 < self.top_p <= 1:
            raise CloudftError("--top-p must be in (0, 1]")
        if self.top_k < 0 or self.max_new_tokens < 1:
            raise CloudftError("--top-k must be >= 0 and --max-new-tokens >= 1")


def _prompt_of(rec: Any, where: str) -> dict:
    """One prompt record: `prompt` (text or messages) or MT-Bench's `turns` (the user turns of one dialog)."""
    from .pairs import _is_prompt

    if not isinstance(rec, dict):
        raise CloudftError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    pid = rec.get("id", rec.get("prompt_id", rec.get("question_id")))
    if "turns" in rec:
        turns = rec["turns"]
        if not (isinstance(turns, list) and turns and all(isinstance(t, str) and t.strip() for t in turns)):
            raise CloudftError(f"{where}: 'turns' must be a non-empty list of user turns (text)")
        return {"id": pid, "turns": turns}
    prompt = rec.get("prompt")
    if not (isinstance(prompt, str) and prompt.strip()) and not (isinstance(prompt, list) and _is_prompt(prompt)):
        raise CloudftError(f"{where}: needs a 'prompt' (a string or a list of {{role, content}} messages) or "
                           "'turns' (a list of user turns)")
    return {"id": pid, "prompt": prompt}


def load_prompts(path: str | Path) -> list[dict]:
    """Prompts from JSONL (`prompt`: string or messages, or `turns`: MT-Bench's list of user turns; optional
    `id`/`question_id`) or a text file (one prompt a line)."""
    from .pairs import iter_json_lines

    path = Path(path)
    if not path.exists():
        raise CloudftError(f"prompts file {path} does not exist")
    out: list[dict] = []
    if path.suffix in (".jsonl", ".json"):
        for n, rec in iter_json_lines(path):
            p = _prompt_of(rec, f"{path}:{n}")
            out.append({**p, "id": str(p["id"]) if p["id"] is not None else f"q-{n}"})
    else:
        with path.open("rb") as fh:
            for n, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise CloudftError(f"{path}:{n}: invalid UTF-8 at byte {exc.start}",
                                       hint="re-encode the file as UTF-8") from None
                if line.strip():
                    out.append({"id": f"q-{n}", "prompt": line})
    if not out:
        raise CloudftError(f"prompts file {path} has no prompts")
    return out


def resolve_model(ref: str) -> Path:
    """A run id or a path → the directory to load (model or adapter)."""
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
            raise CloudftError(f"{ref} is neither a model directory (config.json) nor an adapter directory "
                               "(adapter_config.json)")
        return path
    from ..providers import get_provider
    from ..registry import Registry

    rec = Registry().get(ref)
    out = Path(get_provider(rec.provider).artifacts(rec))
    if not out.is_dir():
        raise CloudftError(f"run {rec.run_id} has no output directory yet ({out})",
                           hint="wait for the run to complete (`cloudft status RUN`)")
    return out


def load_model(path: Path) -> tuple[Any, Any]:
    """(model, tokenizer) with the real from_pretrained; adapters load their base model first."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_cfg = path / "adapter_config.json"
    if adapter_cfg.exists():
        from peft import PeftModel

        base = json.loads(adapter_cfg.read_text()).get("base_model_name_or_path")
        if not base:
            raise CloudftError(f"{adapter_cfg} names no base_model_name_or_path")
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(path))
        tok_dir = path if (path / "tokenizer_config.json").exists() else base
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path))
        tok_dir = path
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def _encode(tokenizer: Any, prompt: Any) -> Any:
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                             return_dict=True)
    return tokenizer(prompt, return_tensors="pt")


def sample(model: Any, tokenizer: Any, prompt: Any, n: int, s: Sampling) -> list[str]:
    """`n` sampled completions (new tokens only, special tokens removed)."""
    import torch

    enc = _encode(tokenizer, prompt)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                             max_new_tokens=s.max_new_tokens, num_return_sequences=n,
                             pad_token_id=tokenizer.pad_token_id)
    start = enc["input_ids"].shape[1]
    return [tokenizer.decode(seq[start:], skip_special_tokens=True) for seq in out]


def dialog(prompt: dict, model: Any, tokenizer: Any, s: Sampling) -> Any:
    """The prompt the pair answers. For MT-Bench-style `turns`, every turn but the last is answered by `model`
    (one sample each), so the pair compares answers to the last turn in the same dialog."""
    if "turns" not in prompt:
        return prompt["prompt"]
    msgs: list[dict] = []
    for turn in prompt["turns"][:-1]:
        msgs.append({"role": "user", "content": turn})
        msgs.append({"role": "assistant", "content": sample(model, tokenizer, msgs, 1, s)[0]})
    msgs.append({"role": "user", "content": prompt["turns"][-1]})
    return msgs


def generate_pairs(prompts: list[dict], model_a: str, model_b: Optional[str], s: Sampling) -> Iterator[dict]:
    """Yield one pair per prompt: two samples of `model_a`, or one of `model_a` and one of `model_b`.
    Multi-turn prompts (`turns`) pair the answers to their last turn (see `dialog`)."""
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # before torch/peft load it: an optional-kernel notice
    import torch

    try:  # no weight-loading progress bars or deprecation warnings between cloudft's own lines
        from train_entry.runtime import quiet_libraries

        quiet_libraries()
    except ImportError:
        pass

    s.check()
    torch.manual_seed(s.seed)
    ma, ta = load_model(resolve_model(model_a))
    mb, tb = load_model(resolve_model(model_b)) if model_b else (None, None)
    settings = asdict(s)
    for i, p in enumerate(prompts):
        prompt = dialog(p, ma, ta, s)
        if mb is None:
            a, b = sample(ma, ta, prompt, 2, s)
        else:
            a, b = sample(ma, ta, prompt, 1, s)[0], sample(mb, tb, prompt, 1, s)[0]
        yield {"pair_id": f"p-{i + 1:06d}", "prompt_id": p["id"], "prompt": prompt, "response_a": a,
               "response_b": b, "model_a": model_a, "model_b": model_b or model_a, "generation": settings}
