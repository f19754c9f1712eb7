"""Chat messages with tool calling, as TRL and transformers' chat templates take them.

Canonical message: `{"role": system|user|assistant|tool, "content": str}`; an assistant message may carry
`tool_calls: [{"type": "function", "function": {"name", "arguments"}, "id"?}]` (content may then be empty) and
`weight: 0` (OpenAI: not trained on); a tool message may carry `name` and `tool_call_id`. The tools a
conversation may call are a record-level `tools` list of `{"type": "function", "function": {"name", ...}}`
(https://huggingface.co/docs/trl/dataset_formats#tool-calling, OpenAI's chat fine-tuning format with tools).

`tools` and each call's `arguments` are kept as JSON text, as OpenAI writes arguments and LLaMA-Factory writes
tools: the canonical file sorts object keys, and a schema's or an argument object's key order is part of the
text the model sees (chat templates render them with `tojson`). TRL's trainers read `tools` given as JSON text;
train_entry decodes both before rendering.

Turn order: [system], then user → assistant; an assistant that calls tools → one or more tool results →
assistant; an assistant that does not → user.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import json

from ..problems import RecordError
from .base import check_chars, check_depth, parse_json_text

ROLES = ("system", "user", "assistant", "tool")
NEXT = {"user": ("assistant",), "assistant": ("user",), "call": ("tool",), "tool": ("tool", "assistant")}


def tools_list(value: Any, field: str = "tools") -> tuple[Optional[list[dict]], Optional[set[str]]]:
    """The record's tool schemas in the OpenAI/transformers form, and their function names.

    Accepts a list (or a JSON string of one, as LLaMA-Factory writes it) of `{"type": "function", "function":
    {...}}` or of bare function schemas `{"name", "description", "parameters"}`. (None, None) when absent."""
    value = parse_json_text(value, field, f"'{field}'")
    if value is None or value == []:
        return None, None
    if not isinstance(value, list):
        raise RecordError(field, "wrong_type", f"'{field}' must be a list of tool schemas, got {type(value).__name__}")
    check_depth(value, field)
    out, names = [], set()
    for i, tool in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(tool, dict):
            raise RecordError(where, "wrong_type", f"a tool schema must be an object, got {type(tool).__name__}")
        if "function" in tool:
            fn, kind = tool["function"], tool.get("type", "function")
            if kind != "function" or not isinstance(fn, dict):
                raise RecordError(where, "wrong_type", "tools must be {'type': 'function', 'function': {...}}")
        else:
            fn = tool
        name = fn.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RecordError(f"{where}.name", "missing_field", "a tool schema needs a function 'name'")
        names.add(name)
        out.append({"type": "function", "function": fn})
    return out, names


def tool_call(call: Any, where: str, declared: Optional[set[str]]) -> dict:
    """One call in the canonical form; `arguments` decoded to an object (OpenAI writes them as JSON text)."""
    if not isinstance(call, dict):
        raise RecordError(where, "wrong_type", f"a tool call must be an object, got {type(call).__name__}")
    fn = call.get("function", call)  # OpenAI nests {type, function: {name, arguments}}; LLaMA-Factory does not
    if call.get("type", "function") != "function" or not isinstance(fn, dict):
        raise RecordError(where, "wrong_type", "a tool call must be {'type': 'function', 'function': {...}}")
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RecordError(f"{where}.name", "missing_field", "a tool call needs a function 'name'")
    args = parse_json_text(fn.get("arguments", {}), f"{where}.arguments", "the call's arguments")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise RecordError(f"{where}.arguments", "wrong_type",
                          f"arguments must be a JSON object, got {type(args).__name__}")
    check_depth(args, f"{where}.arguments")
    check_chars(args)
    if declared is not None and name not in declared:
        raise RecordError(f"{where}.name", "unknown_tool",
                          f"calls '{name}', which is not among the record's tools ({', '.join(sorted(declared))})")
    out: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": json_text(args)}}
    if isinstance(call.get("id"), str):
        out["id"] = call["id"]
    return out


def _content(msg: dict, where: str, key: str, *, may_be_empty: bool) -> str:
    content = msg.get(key)
    if content is None:
        if may_be_empty:
            return ""
        raise RecordError(f"{where}.{key}", "missing_field", f"message has no '{key}'")
    if not isinstance(content, str):
        raise RecordError(f"{where}.{key}", "wrong_type", f"'{key}' must be a string, got {type(content).__name__}")
    if not may_be_empty and not content.strip():
        raise RecordError(f"{where}.{key}", "empty_field", "message content is empty")
    return content


def message(msg: Any, where: str, declared: Optional[set[str]], *, role_key: str = "role",
            content_key: str = "content", role_map: Optional[dict[str, str]] = None) -> dict:
    """One message in the canonical form (see the module docstring)."""
    if not isinstance(msg, dict):
        raise RecordError(where, "wrong_type", f"message must be an object, got {type(msg).__name__}")
    role = msg.get(role_key)
    if not isinstance(role, str):
        raise RecordError(f"{where}.{role_key}", "missing_field" if role is None else "wrong_type",
                          f"message has no '{role_key}' string")
    role = role_map.get(role.lower(), role) if role_map else role
    if role == "function":  # OpenAI's deprecated function-result role
        role = "tool"
    if role not in ROLES:
        raise RecordError(f"{where}.{role_key}", "unknown_role", f"unknown role {role!r}",
                          "use system, user, assistant or tool (sharegpt: human, gpt, function_call, observation)")
    out: dict[str, Any] = {"role": role}
    calls = msg.get("tool_calls")
    if msg.get("function_call") is not None and role == "assistant":  # deprecated single call
        calls = [msg["function_call"]] if calls is None else calls
    if calls is not None and role != "assistant":
        raise RecordError(f"{where}.tool_calls", "wrong_type", f"only assistant messages call tools, not {role}")
    if calls is not None:
        if not isinstance(calls, list) or not calls:
            raise RecordError(f"{where}.tool_calls", "wrong_type", "tool_calls must be a non-empty list")
        out["tool_calls"] = [tool_call(c, f"{where}.tool_calls[{i}]", declared) for i, c in enumerate(calls)]
    out["content"] = _content(msg, where, content_key, may_be_empty=role == "tool" or calls is not None)
    for key in ("name", "tool_call_id"):
        value = msg.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise RecordError(f"{where}.{key}", "wrong_type", f"'{key}' must be a string")
            out[key] = value
    weight = msg.get("weight")
    if msg.get("training") is not None:  # Axolotl: training false = not trained on
        if not isinstance(msg["training"], bool):
            raise RecordError(f"{where}.training", "wrong_type", "'training' must be true or false")
        weight = int(msg["training"]) if weight is None else weight
    if weight is not None:
        if role != "assistant" or weight not in (0, 1) or isinstance(weight, float) and weight % 1:
            raise RecordError(f"{where}.weight", "wrong_type", "weight is 0 or 1, on assistant messages only")
        if not weight:
            out["weight"] = 0
    return out


def messages(value: Any, field: str, declared: Optional[set[str]] = None, **kw: Any) -> list[dict]:
    """A non-empty list of canonical messages."""
    if value is None:
        raise RecordError(field, "missing_field", f"'{field}' is missing")
    if not isinstance(value, list):
        raise RecordError(field, "wrong_type", f"'{field}' must be a list of messages, got {type(value).__name__}")
    if not value:
        raise RecordError(field, "empty_field", f"'{field}' has no messages")
    return [message(m, f"{field}[{i}]", declared, **kw) for i, m in enumerate(value)]


def _state(msg: dict) -> str:
    return "call" if msg["role"] == "assistant" and msg.get("tool_calls") else msg["role"]


def check_turn_order(msgs: list[dict], field: str, *, last: Optional[Iterable[str] | str] = "assistant",
                     first: str = "user") -> None:
    """[system], then turns starting with `first` in the order the module docstring gives; the last turn's
    role must be one of `last` when given."""
    start = 1 if msgs and msgs[0]["role"] == "system" else 0
    expected: tuple[str, ...] = (first,)
    for i, msg in enumerate(msgs[start:], start):
        if msg["role"] not in expected:
            raise RecordError(f"{field}[{i}].role", "turn_order",
                              f"turn {i} is '{msg['role']}', expected '{' or '.join(expected)}'")
        expected = NEXT[_state(msg)]
    if start == len(msgs):
        raise RecordError(field, "turn_order", "only a system message, no conversation")
    allowed = (last,) if isinstance(last, str) else tuple(last or ())
    if allowed and msgs[-1]["role"] not in allowed:
        raise RecordError(f"{field}[{len(msgs) - 1}].role", "turn_order",
                          f"the last turn must be '{' or '.join(allowed)}'")


def json_text(value: Any) -> str:
    """JSON text that keeps the value's key order (see the module docstring)."""
    return json.dumps(value, ensure_ascii=False)


def with_tools(record: dict, tools: Optional[list[dict]]) -> dict:
    """The record with its tool schemas as JSON text (only when there are some)."""
    if tools:
        check_chars({"tools": tools})
        record["tools"] = json_text(tools)
    return record


def has_tool_content(record: dict) -> bool:
    """Whether a canonical record uses tools, tool calls, tool results or per-message weights."""
    if record.get("tools"):
        return True
    for key in ("messages", "prompt", "completion", "chosen", "rejected"):
        value = record.get(key)
        if isinstance(value, list) and any(m.get("role") == "tool" or "tool_calls" in m or "weight" in m
                                           for m in value if isinstance(m, dict)):
            return True
    return False


def prompt_turns(value: Any, field: str, declared: Optional[set[str]] = None, **kw: Any) -> list[dict]:
    """A conversational prompt: it ends where the model answers (after a user turn or a tool result)."""
    msgs = messages(value, field, declared, **kw)
    check_turn_order(msgs, field, last=("user", "tool"))
    return msgs


def answer_turns(value: Any, field: str, declared: Optional[set[str]] = None, **kw: Any) -> list[dict]:
    """A conversational completion: assistant turns (with any tool calls and results between them)."""
    msgs = messages(value, field, declared, **kw)
    check_turn_order(msgs, field, first="assistant", last="assistant")
    return msgs


def judged_answer(msgs: list[dict], field: str) -> tuple[list[dict], list[dict]]:
    """(prompt, completion) of a conversation whose last turn is the judged answer (KTO)."""
    check_turn_order(msgs, field)
    if len(msgs) < 2:
        raise RecordError(field, "turn_order", "needs a prompt before the judged answer")
    check_turn_order(msgs[:-1], field, last=("user", "tool"))
    return msgs[:-1], msgs[-1:]
