"""Anthropic HH-RLHF: chosen and rejected are whole dialogs with "\\n\\nHuman:" / "\\n\\nAssistant:" turns.

Source: https://huggingface.co/datasets/Anthropic/hh-rlhf (and the copy in ../shared/data). The shared turns
before the last assistant reply become the conversational prompt; the last replies become chosen/rejected.
"""

from __future__ import annotations

import re

from ..problems import RecordError
from .base import SourceFormat, register, text
from .chat import check_turn_order

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


def split_hh_dialog(dialog: str, field: str) -> tuple[list[dict[str, str]], str]:
    """Split an HH-RLHF dialog into its prompt turns (user/assistant messages) and the final assistant reply."""
    cut = dialog.rfind(ASSISTANT)
    if cut < 0:
        raise RecordError(field, "wrong_type", "no '\\n\\nAssistant:' turn in the dialog")
    head, reply = dialog[:cut], dialog[cut + len(ASSISTANT):]
    turns: list[dict[str, str]] = []
    for part in re.split(r"(\n\nHuman:|\n\nAssistant:)", head)[1:]:
        if part in (HUMAN, ASSISTANT):
            turns.append({"role": "user" if part == HUMAN else "assistant", "content": ""})
        elif turns:
            turns[-1]["content"] = part.strip()
    if not turns:
        raise RecordError(field, "empty_prompt", "no '\\n\\nHuman:' turn before the last assistant reply")
    return turns, reply.strip()


def convert(obj: dict, prompt_only: bool = False) -> dict:
    chosen, rejected = text(obj, "chosen"), text(obj, "rejected")
    p1, c = split_hh_dialog(chosen, "chosen")
    p2, r = split_hh_dialog(rejected, "rejected")
    if p1 != p2:
        raise RecordError("rejected", "turn_order", "chosen and rejected have different dialog histories",
                          "both dialogs must share every turn before the last assistant reply")
    for i, turn in enumerate(p1):
        if not turn["content"]:
            raise RecordError(f"chosen (turn {i + 1})", "empty_field", "empty turn in the dialog history")
    check_turn_order(p1, "prompt", last="user")
    if not c:
        raise RecordError("chosen", "empty_field", "the chosen reply is empty")
    if not r:
        raise RecordError("rejected", "empty_field", "the rejected reply is empty")
    if c == r:
        raise RecordError("rejected", "chosen_equals_rejected", "chosen and rejected replies are the same")
    return {"prompt": p1, "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}]}


def _evidence(obj: dict) -> float:
    chosen = obj.get("chosen")
    return 0.5 if "prompt" not in obj and isinstance(chosen, str) and ASSISTANT in chosen else -1.0


register(SourceFormat(
    name="hh_rlhf", canonical="preference", convert=convert, required=("chosen", "rejected"),
    columns={"chosen": "prompt (the shared turns) + chosen (the last assistant reply)",
             "rejected": "rejected (the last assistant reply)"},
    origin="Anthropic HH-RLHF",
    reference="https://huggingface.co/datasets/Anthropic/hh-rlhf",
    example={"chosen": "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?",
             "rejected": "\n\nHuman: Hi\n\nAssistant: What do you want?"},
    evidence=_evidence,
))
