"""TRL's prompt-completion and prompt-only types, standard (strings) or conversational (message lists).

Source: https://huggingface.co/docs/trl/dataset_formats (Prompt-completion, Prompt-only; tool calling).
"""

from __future__ import annotations

from typing import Any

from .base import SourceFormat, register, text
from .chat import answer_turns, prompt_turns, tools_list, with_tools


def convert(obj: dict, prompt_only: bool = False) -> dict:
    prompt = obj.get("prompt")
    key = "completion" if "completion" in obj or "response" not in obj else "response"
    if isinstance(prompt, list):
        tools, declared = tools_list(obj.get("tools"))
        out: dict[str, Any] = {"prompt": prompt_turns(prompt, "prompt", declared)}
        if not (prompt_only and obj.get(key) in (None, "", [])):
            out["completion"] = answer_turns(obj.get(key), key, declared)
        return with_tools(out, tools)
    out = {"prompt": text(obj, "prompt", empty_reason="empty_prompt")}
    if not (prompt_only and obj.get(key) in (None, "")):
        out["completion"] = text(obj, key)
    return out


register(SourceFormat(
    name="prompt_completion", canonical="prompt_completion", convert=convert, required=("prompt",),
    columns={"prompt": "prompt (text, or messages ending with a user turn)",
             "completion": "completion (text, or assistant messages)",
             "response": "completion (when there is no 'completion' column)",
             "tools": "tools (tool schemas, conversational form)"},
    origin="TRL prompt-completion / prompt-only; OpenAI legacy completions",
    reference="https://huggingface.co/docs/trl/dataset_formats#prompt-completion",
    example={"prompt": "The sky is", "completion": " blue."},
    nested=("prompt", "completion"),
))
