"""LLaMA-Factory's alpaca format (instruction, input, output, system, history), its ranking and KTO forms.

Source: https://github.com/hiyouga/LLaMA-Factory/blob/main/data/README.md (Alpaca Format). `instruction` and a
non-empty `input` make the prompt (a blank line between them); `system` and `history` ([[query, answer], ...],
whose answers LLaMA-Factory also trains on) need the conversational form, `alpaca_conversational`.
"""

from __future__ import annotations

from typing import Any

from ..problems import RecordError
from .base import SourceFormat, bool_label, is_bool_label, join_prompt, optional_text, register, text
from .preference import standard

ALPACA_COLUMNS = {"instruction": "prompt (first)", "input": "prompt (after a blank line, when not empty)"}
CONVERSATIONAL_KEYS = ("system", "history")


def prompt_of(obj: dict, first: str = "instruction", second: str = "input") -> str:
    return join_prompt(text(obj, first, empty_reason="empty_prompt"), optional_text(obj, second))


def _no_conversation(obj: dict, name: str) -> None:
    for key in CONVERSATIONAL_KEYS:
        if obj.get(key):
            raise RecordError(key, "needs_conversational",
                              f"'{key}' needs the conversational form, but the data is read as '{name}'",
                              "set data.format: alpaca_conversational (a system prompt and earlier turns become "
                              "chat messages)")


def instruction(second: str, answer: str):
    """The converter of an instruction format: `instruction` + optional `second` → prompt, `answer` →
    completion (optional for prompt-only RL data)."""

    def convert(obj: dict, prompt_only: bool = False) -> dict:
        out = {"prompt": prompt_of(obj, "instruction", second)}
        if not (prompt_only and obj.get(answer) in (None, "")):
            out["completion"] = text(obj, answer)
        return out

    return convert


def instruction_format(name: str, second: str, answer: str, *, origin: str, reference: str,
                       example: dict) -> SourceFormat:
    """An instruction format whose columns are `instruction`, an optional `second` and `answer` (Axolotl's
    gpteacher, SageMaker JumpStart's Dolly-style samples): a prompt and a completion, as `instruction` builds."""
    return SourceFormat(
        name=name, canonical="prompt_completion", convert=instruction(second, answer),
        required=("instruction", answer),
        columns={"instruction": "prompt (first)", second: "prompt (after a blank line, when not empty)",
                 answer: "completion"},
        origin=origin, reference=reference, example=example,
    )


_plain_alpaca = instruction("input", "output")


def convert(obj: dict, prompt_only: bool = False) -> dict:
    _no_conversation(obj, "alpaca")
    return _plain_alpaca(obj, prompt_only)


def history_turns(value: Any) -> list[dict[str, str]]:
    """LLaMA-Factory history: [[query, answer], ...] → alternating user/assistant messages."""
    if value in (None, "", []):
        return []
    if not isinstance(value, list):
        raise RecordError("history", "wrong_type", "'history' must be a list of [query, answer] pairs")
    turns = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) and x.strip() for x in pair)):
            raise RecordError(f"history[{i}]", "wrong_type", "each history entry is [query, answer], two texts")
        turns += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return turns


def convert_conversational(obj: dict, prompt_only: bool = False) -> dict:
    system = optional_text(obj, "system")
    prompt = ([{"role": "system", "content": system}] if system.strip() else []) + history_turns(obj.get("history"))
    prompt.append({"role": "user", "content": prompt_of(obj)})
    out: dict[str, Any] = {"prompt": prompt}
    if not (prompt_only and obj.get("output") in (None, "")):
        out["completion"] = [{"role": "assistant", "content": text(obj, "output")}]
    return out


def convert_preference(obj: dict, prompt_only: bool = False) -> dict:
    _no_conversation(obj, "alpaca_preference")
    return standard(prompt_of(obj), text(obj, "chosen"), text(obj, "rejected"))


def convert_kto(obj: dict, prompt_only: bool = False) -> dict:
    _no_conversation(obj, "alpaca_kto")
    return {"prompt": prompt_of(obj), "completion": text(obj, "output"),
            "label": bool_label(obj.get("kto_tag"), "kto_tag")}


def _plain(obj: dict) -> float:
    return -1.0 if any(obj.get(k) for k in CONVERSATIONAL_KEYS) else 0.0




REFERENCE = "https://github.com/hiyouga/LLaMA-Factory/blob/main/data/README.md#alpaca-format"
CONV_COLUMNS = {"system": "needs alpaca_conversational when not empty", "history": "needs alpaca_conversational"}

register(
    SourceFormat(
        name="alpaca", canonical="prompt_completion", convert=convert, required=("instruction", "output"),
        columns={**ALPACA_COLUMNS, "output": "completion", **CONV_COLUMNS},
        origin="Stanford Alpaca; LLaMA-Factory alpaca (SFT); Axolotl alpaca",
        reference=REFERENCE,
        example={"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        evidence=_plain,
    ),
    SourceFormat(
        name="alpaca_conversational", canonical="prompt_completion", convert=convert_conversational,
        required=("instruction", "output"),
        columns={**ALPACA_COLUMNS, "output": "completion (an assistant message)",
                 "system": "prompt: the system message", "history": "prompt: earlier user/assistant turns"},
        origin="LLaMA-Factory alpaca with system and history",
        reference=REFERENCE,
        example={"instruction": "And in German?", "input": "", "output": "Katze",
                 "system": "You translate single words.", "history": [["cat in French?", "chat"]]},
        priority=1,  # reads every alpaca record; chosen over `alpaca` when some record has a system or history
    ),
    SourceFormat(
        name="alpaca_preference", canonical="preference", convert=convert_preference,
        required=("instruction", "chosen", "rejected"),
        columns={**ALPACA_COLUMNS, "chosen": "chosen", "rejected": "rejected", **CONV_COLUMNS},
        origin="LLaMA-Factory alpaca preference (ranking: true)",
        reference=REFERENCE,
        example={"instruction": "Name a primary colour.", "input": "", "chosen": "Red.", "rejected": "Green."},
        evidence=lambda obj: -1.0 if isinstance(obj.get("chosen"), (dict, list)) else _plain(obj),
    ),
    SourceFormat(
        name="alpaca_kto", canonical="kto", convert=convert_kto, required=("instruction", "output", "kto_tag"),
        columns={**ALPACA_COLUMNS, "output": "completion", "kto_tag": "label (true: desirable)", **CONV_COLUMNS},
        origin="LLaMA-Factory alpaca KTO",
        reference=REFERENCE,
        example={"instruction": "Name a primary colour.", "input": "", "output": "Green.", "kto_tag": False},
        evidence=lambda obj: _plain(obj) if is_bool_label(obj.get("kto_tag")) else -1.0,
    ),
)
