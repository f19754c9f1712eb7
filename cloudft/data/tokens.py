"""Token lengths with the spec's own tokenizer (`tokenizers`, no transformers import).

Conversational records are rendered with the model's chat template (tokenizer_config.json, rendered with jinja2
as transformers does) when there is one, so the count is what the trainer sees; plain records are tokenized as
prompt + completion. Preference records count the longer of prompt+chosen and prompt+rejected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

CHARS_PER_TOKEN_BOUND = 64  # no practical tokenizer packs more characters into one token


class TokenCounter:
    """Counts tokens of canonical records with a `tokenizer.json` (and the chat template beside it)."""

    def __init__(self, model_dir: Path):
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._render = _chat_renderer(self.model_dir / "tokenizer_config.json")

    @classmethod
    def for_model(cls, base_model: str, base_dir: Optional[Path] = None) -> tuple[Optional["TokenCounter"], str]:
        """The counter for a spec's `base_model`, or None and the reason the length check is skipped."""
        path = Path(base_model).expanduser()
        if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
            path = base_dir / path
        if (path / "tokenizer.json").is_file():
            return cls(path), f"{path.resolve()}/tokenizer.json"
        return None, (f"skipped: base_model '{base_model}' is not a local directory with tokenizer.json, "
                      "so token lengths were not checked (they are checked when the trainer loads the data)")

    def texts(self, record: dict) -> list[tuple[str, bool]]:
        """(text, add_special_tokens) pairs whose token counts make up the record's length (the longest counts).

        Chat-rendered text already holds the template's special tokens, as in transformers' apply_chat_template.
        """
        prompt = record.get("prompt")
        tools = record.get("tools")
        if isinstance(tools, str):  # canonical records keep tool schemas as JSON text
            tools = json.loads(tools)
        if "messages" in record:
            return [self._chat(record["messages"], tools)]
        if "text" in record:
            return [(record["text"], True)]
        answers = [record[k] for k in ("chosen", "rejected", "completion") if k in record]
        if isinstance(prompt, list):
            return [self._chat(prompt + a, tools) for a in answers] or [self._chat(prompt, tools)]
        return [(prompt + a, True) for a in answers] or [(prompt, True)]

    def _chat(self, messages: list[dict], tools: Optional[list] = None) -> tuple[str, bool]:
        if self._render is not None:
            from train_entry.data import restore_messages  # call arguments decoded, as train_entry renders them

            return self._render(restore_messages(messages), tools), False
        return plain_chat(messages, tools), True

    def lengths(self, records: Sequence[dict]) -> list[int]:
        """Token length of each record (the longest of its texts)."""
        groups: dict[bool, tuple[list[str], list[int]]] = {True: ([], []), False: ([], [])}
        for i, rec in enumerate(records):
            for text, special in self.texts(rec):
                groups[special][0].append(text)
                groups[special][1].append(i)
        out = [0] * len(records)
        for special, (texts, owners) in groups.items():
            if texts:
                for owner, enc in zip(owners, self.tokenizer.encode_batch_fast(texts, add_special_tokens=special)):
                    out[owner] = max(out[owner], len(enc.ids))
        return out


def plain_chat(messages: list[dict], tools: Optional[list] = None) -> str:
    """Messages as 'role: content' lines, tool calls and tool schemas as JSON (no chat template)."""
    lines = [f"tools: {json.dumps(tools, ensure_ascii=False)}"] if tools else []
    for m in messages:
        calls = m.get("tool_calls")
        lines.append(f"{m['role']}: {m['content']}" + (f" {json.dumps(calls, ensure_ascii=False)}" if calls else ""))
    return "\n".join(lines)


def text_length(record: dict) -> int:
    """Length of a record in characters (the longest of its texts), for stats without a tokenizer."""
    prompt = record.get("prompt")
    tools = record.get("tools")
    if "messages" in record:
        return len(plain_chat(record["messages"], tools))
    if "text" in record:
        return len(record["text"])
    size = (lambda v: len(v) if isinstance(v, str) else len(plain_chat(v, tools)))
    answers = [size(record[k]) for k in ("chosen", "rejected", "completion") if k in record]
    return size(prompt) + max(answers, default=0)


def _chat_renderer(config_path: Path) -> Optional[Callable[..., str]]:
    """Render messages with the tokenizer's chat template, as transformers does; None without one or jinja2."""
    if not config_path.is_file():
        return None
    try:
        cfg: dict[str, Any] = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    template = cfg.get("chat_template")
    if not template:
        jinja_file = config_path.parent / "chat_template.jinja"
        template = jinja_file.read_text() if jinja_file.is_file() else None
    if isinstance(template, list):  # named templates: take the default
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if not template:
        return None
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        return None
    from jinja2 import TemplateError

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    # what transformers adds to the template's environment (tool schemas are rendered with its tojson)
    env.filters["tojson"] = lambda x, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["raise_exception"] = raise_exception
    try:
        compiled = env.from_string(template)
    except TemplateError:
        return None
    specials = {k: _token_text(cfg.get(k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}

    def render(messages: list, tools: Optional[list] = None) -> str:
        try:
            return compiled.render(messages=messages, tools=tools, add_generation_prompt=False, **specials)
        except TemplateError:  # the trainer reports it with the template's own words; count the plain text
            return plain_chat(messages, tools)

    return render


def _token_text(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("content", "")
    return value or ""
