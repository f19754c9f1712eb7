"""TRL's preference type: prompt + chosen + rejected, standard or conversational, explicit or implicit prompt.

Source: https://huggingface.co/docs/trl/dataset_formats#preference. An implicit standard prompt is the text
chosen and rejected share, cut as TRL's `extract_prompt` cuts it; an implicit conversational prompt is the
leading turns they share.
"""

from __future__ import annotations

from typing import Any

from ..problems import RecordError
from .base import SourceFormat, register, text
from .chat import answer_turns, check_turn_order, messages, prompt_turns, tools_list, with_tools


def _implicit_text(chosen: str, rejected: str) -> tuple[str, str, str]:
    idx = min(len(chosen), len(rejected))
    for i in range(idx):
        if chosen[i] != rejected[i]:
            idx = i - 1 if i and chosen[i - 1] == " " else i
            break
    return chosen[:idx], chosen[idx:], rejected[idx:]


def conversational(prompt: Any, chosen: Any, rejected: Any, tools: Any = None) -> dict:
    """A conversational pair: the prompt turns, then one or more assistant turns each."""
    tools, declared = tools_list(tools)
    if prompt is None:  # implicit prompt: the leading turns chosen and rejected share
        c, r = messages(chosen, "chosen", declared), messages(rejected, "rejected", declared)
        n = 0
        while n < min(len(c), len(r)) - 1 and c[n] == r[n]:
            n += 1
        if not n:
            raise RecordError("prompt", "empty_prompt", "chosen and rejected share no leading turn to use as prompt")
        p, c, r = c[:n], c[n:], r[n:]
        check_turn_order(p, "prompt", last=("user", "tool"))
        check_turn_order(c, "chosen", first="assistant")
        check_turn_order(r, "rejected", first="assistant")
    else:
        p = prompt_turns(prompt, "prompt", declared)
        c, r = answer_turns(chosen, "chosen", declared), answer_turns(rejected, "rejected", declared)
    if c == r:
        raise RecordError("rejected", "chosen_equals_rejected", "chosen and rejected are the same messages")
    return with_tools({"prompt": p, "chosen": c, "rejected": r}, tools)


def standard(prompt: str, chosen: str, rejected: str) -> dict:
    if chosen.strip() == rejected.strip():
        raise RecordError("rejected", "chosen_equals_rejected", "chosen and rejected are the same text")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def convert(obj: dict, prompt_only: bool = False) -> dict:
    chosen, rejected, prompt = obj.get("chosen"), obj.get("rejected"), obj.get("prompt")
    if isinstance(chosen, list) or isinstance(rejected, list) or isinstance(prompt, list):
        return conversational(prompt, chosen, rejected, obj.get("tools"))
    c, r = text(obj, "chosen"), text(obj, "rejected")
    if prompt is None:
        p, c, r = _implicit_text(c, r)
        if not p.strip():
            raise RecordError("prompt", "empty_prompt", "no prompt, and chosen and rejected share no leading text")
        for key, value in (("chosen", c), ("rejected", r)):
            if not value.strip():
                raise RecordError(key, "empty_field", f"'{key}' holds nothing after the text it shares with the "
                                                      "other answer (the implicit prompt)")
    else:
        p = text(obj, "prompt", empty_reason="empty_prompt")
    return standard(p, c, r)


def _evidence(obj: dict) -> float:
    # chosen/rejected given as single message objects are LLaMA-Factory's ranking form, not TRL's
    return -1.0 if isinstance(obj.get("chosen"), dict) or isinstance(obj.get("rejected"), dict) else 0.0


register(SourceFormat(
    name="preference", canonical="preference", convert=convert, required=("chosen", "rejected"),
    columns={"prompt": "prompt (text or messages; absent: the shared start of chosen and rejected)",
             "chosen": "chosen", "rejected": "rejected", "tools": "tools (conversational form)"},
    origin="TRL preference (DPO, ORPO, reward); Axolotl chatml.prompt_pairs",
    reference="https://huggingface.co/docs/trl/dataset_formats#preference",
    example={"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    evidence=_evidence, nested=("prompt", "chosen", "rejected"),
))
