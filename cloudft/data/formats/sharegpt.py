"""ShareGPT as LLaMA-Factory writes it: `conversations` of {from, value} turns (human, gpt, function_call,
observation, system), optional `system` and `tools` columns; its ranking form (chosen/rejected turn objects)
and its KTO form (kto_tag).

Source: https://github.com/hiyouga/LLaMA-Factory/blob/main/data/README.md (Sharegpt Format). A `function_call`
turn's value is JSON, {"name", "arguments"} or a list of them (parallel calls); it becomes an assistant message
with `tool_calls`. An `observation` turn becomes a `tool` message. `tools` (often a JSON string of function
schemas) becomes the record's tool list.
"""

from __future__ import annotations

from typing import Any, Optional

from ..problems import RecordError
from .base import SourceFormat, bool_label, is_bool_label, parse_json_text, register
from .chat import check_turn_order, judged_answer, message, messages, tools_list, with_tools
from .preference import conversational

ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
            "model": "assistant", "chatgpt": "assistant", "system": "system", "observation": "tool",
            "tool": "tool", "function": "tool"}
TURN_KEYS = frozenset({"from", "value", "weight"})


def turn(value: Any, where: str) -> dict:
    """One {from, value} turn as an OpenAI-shaped message (function_call turns become tool calls)."""
    if not isinstance(value, dict):
        raise RecordError(where, "wrong_type", f"turn must be an object, got {type(value).__name__}")
    who = value.get("from")
    if isinstance(who, str) and who.lower() == "function_call":
        calls = parse_json_text(value.get("value"), f"{where}.value", "the function_call value")
        if isinstance(calls, dict):
            calls = [calls]
        if not isinstance(calls, list) or not calls:
            raise RecordError(f"{where}.value", "wrong_type",
                              "a function_call value is JSON {\"name\", \"arguments\"} or a list of them")
        return {"role": "assistant", "content": "", "tool_calls": calls}
    out = {"role": who, "content": value.get("value")}
    if "weight" in value:
        out["weight"] = value["weight"]
    return out


def conversation(obj: dict, key: str, declared: Optional[set[str]]) -> list[dict]:
    turns = obj.get(key)
    if turns is None:
        raise RecordError(key, "missing_field", f"'{key}' is missing")
    if not isinstance(turns, list):
        raise RecordError(key, "wrong_type", f"'{key}' must be a list of turns, got {type(turns).__name__}")
    shaped = [turn(t, f"{key}[{i}]") for i, t in enumerate(turns)]
    msgs = messages(shaped, key, declared, role_map=ROLE_MAP)
    system = obj.get("system")
    if isinstance(system, str) and system.strip() and msgs and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": system})  # a system turn overrides the column
    elif system is not None and not isinstance(system, str):
        raise RecordError("system", "wrong_type", f"'system' must be a string, got {type(system).__name__}")
    return msgs


def convert(obj: dict, prompt_only: bool = False) -> dict:
    tools, declared = tools_list(obj.get("tools"))
    msgs = conversation(obj, "conversations", declared)
    check_turn_order(msgs, "conversations")
    return with_tools({"messages": msgs}, tools)


def convert_kto(obj: dict, prompt_only: bool = False) -> dict:
    tools, declared = tools_list(obj.get("tools"))
    prompt, completion = judged_answer(conversation(obj, "conversations", declared), "conversations")
    return with_tools({"prompt": prompt, "completion": completion,
                       "label": bool_label(obj.get("kto_tag"), "kto_tag")}, tools)


def _answer(obj: dict, key: str, declared: Optional[set[str]]) -> list[dict]:
    if obj.get(key) is None:
        raise RecordError(key, "missing_field", f"'{key}' is missing")
    msg = message(turn(obj[key], key), key, declared, role_map=ROLE_MAP)
    if msg["role"] != "assistant":
        raise RecordError(f"{key}.from", "turn_order", f"'{key}' must be a gpt (or function_call) turn")
    return [msg]


def convert_preference(obj: dict, prompt_only: bool = False) -> dict:
    tools, declared = tools_list(obj.get("tools"))
    prompt = conversation(obj, "conversations", declared)
    check_turn_order(prompt, "conversations", last=("user", "tool"))
    return conversational(prompt, _answer(obj, "chosen", declared), _answer(obj, "rejected", declared), tools)


def _turns(obj: dict) -> float:
    turns = obj.get("conversations")
    return 0.0 if isinstance(turns, list) and all(isinstance(t, dict) and "from" in t for t in turns) else -1.0


REFERENCE = "https://github.com/hiyouga/LLaMA-Factory/blob/main/data/README.md#sharegpt-format"
COLUMNS = {"conversations": "messages (human → user, gpt → assistant, function_call → assistant tool_calls, "
                            "observation → tool)",
           "system": "a leading system message (unless the first turn is one)",
           "tools": "tools (JSON text or a list of function schemas)"}

register(
    SourceFormat(
        name="sharegpt", canonical="messages", convert=convert, required=("conversations",),
        columns=COLUMNS, origin="LLaMA-Factory sharegpt (incl. tool calling); Axolotl sharegpt",
        reference=REFERENCE,
        example={"conversations": [
            {"from": "human", "value": "What is the weather in Paris?"},
            {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"},
            {"from": "observation", "value": "18 C, cloudy"},
            {"from": "gpt", "value": "It is 18 C and cloudy in Paris."}],
            "system": "You are a weather bot.",
            "tools": "[{\"name\": \"get_weather\", \"description\": \"Current weather\", \"parameters\": "
                     "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}]"},
        evidence=_turns, nested=("conversations",), message_keys=TURN_KEYS,
    ),
    SourceFormat(
        name="sharegpt_preference", canonical="preference", convert=convert_preference,
        required=("conversations", "chosen", "rejected"),
        columns={**COLUMNS, "conversations": "prompt (turns ending with a human turn)",
                 "chosen": "chosen (one gpt turn)", "rejected": "rejected (one gpt turn)"},
        origin="LLaMA-Factory sharegpt preference (ranking: true), e.g. dpo_en_demo.json",
        reference=REFERENCE + "#preference-dataset-1",
        example={"conversations": [{"from": "human", "value": "Name a primary colour."}],
                 "chosen": {"from": "gpt", "value": "Red."}, "rejected": {"from": "gpt", "value": "Green."}},
        evidence=lambda obj: _turns(obj) if isinstance(obj.get("chosen"), dict) else -1.0,
        nested=("conversations", "chosen", "rejected"), message_keys=TURN_KEYS,
    ),
    SourceFormat(
        name="sharegpt_kto", canonical="kto", convert=convert_kto, required=("conversations", "kto_tag"),
        columns={**COLUMNS, "conversations": "prompt (all but the last turn) + completion (the last gpt turn)",
                 "kto_tag": "label (true: desirable)"},
        origin="LLaMA-Factory sharegpt KTO",
        reference=REFERENCE + "#kto-dataset-1",
        example={"conversations": [{"from": "human", "value": "Name a primary colour."},
                                   {"from": "gpt", "value": "Green."}], "kto_tag": False},
        evidence=lambda obj: _turns(obj) if is_bool_label(obj.get("kto_tag")) else -1.0,
        nested=("conversations",), message_keys=TURN_KEYS,
    ),
)
