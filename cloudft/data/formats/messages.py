"""Chat conversations in OpenAI's `messages` form, with tool calling; and the two LLaMA-Factory variants that
put a label or a ranking beside the messages.

Sources:
- OpenAI chat fine-tuning with tools (`messages` with `tool_calls` and `tool` messages, `tools`; deprecated
  `functions` / `function_call`; `weight` 0 on an assistant message): https://platform.openai.com/docs/guides/
  fine-tuning (tool calling), https://learn.microsoft.com/azure/ai-services/openai/how-to/fine-tuning-functions
- TRL conversational language modeling and tool calling: https://huggingface.co/docs/trl/dataset_formats
- LLaMA-Factory KTO (`kto_en_demo.json`: messages + label, `"kto_tag": "label"`) and ranking in OpenAI tags
  (messages + chosen/rejected message objects): https://github.com/hiyouga/LLaMA-Factory/blob/main/data/README.md
"""

from __future__ import annotations

from ..problems import RecordError
from .base import SourceFormat, bool_label, is_bool_label, register
from .chat import check_turn_order, judged_answer, message, messages, prompt_turns, tools_list, with_tools
from .preference import conversational


def record_tools(obj: dict):
    """(tools, declared names) from `tools`, or OpenAI's deprecated `functions`."""
    if obj.get("tools") is None and obj.get("functions") is not None:
        return tools_list(obj["functions"], "functions")
    return tools_list(obj.get("tools"))


def convert(obj: dict, prompt_only: bool = False) -> dict:
    tools, declared = record_tools(obj)
    msgs = messages(obj.get("messages"), "messages", declared)
    check_turn_order(msgs, "messages")
    return with_tools({"messages": msgs}, tools)


def convert_kto(obj: dict, prompt_only: bool = False) -> dict:
    tools, declared = record_tools(obj)
    prompt, completion = judged_answer(messages(obj.get("messages"), "messages", declared), "messages")
    return with_tools({"prompt": prompt, "completion": completion, "label": bool_label(obj.get("label"), "label")},
                      tools)


def ranked(obj: dict, key: str, declared, **kw) -> list[dict]:
    """LLaMA-Factory ranking: chosen/rejected are one assistant message each."""
    value = obj.get(key)
    if value is None:
        raise RecordError(key, "missing_field", f"'{key}' is missing")
    msg = message(value, key, declared, **kw)
    if msg["role"] != "assistant":
        raise RecordError(key, "turn_order", f"'{key}' must be an assistant message, got '{msg['role']}'")
    return [msg]


def convert_preference(obj: dict, prompt_only: bool = False) -> dict:
    tools, declared = record_tools(obj)
    prompt = prompt_turns(obj.get("messages"), "messages", declared)
    return conversational(prompt, ranked(obj, "chosen", declared), ranked(obj, "rejected", declared), tools)


def _ranking(obj: dict) -> float:
    return 0.0 if isinstance(obj.get("chosen"), dict) and isinstance(obj.get("rejected"), dict) else -1.0


TOOL_COLUMNS = {"tools": "tools (tool schemas the conversation may call)",
                "functions": "tools (OpenAI's deprecated form)",
                "parallel_tool_calls": "read, not kept (a sampling option, no training meaning)"}

register(
    SourceFormat(
        name="messages", canonical="messages", convert=convert, required=("messages",),
        columns={"messages": "messages (system/user/assistant/tool; tool_calls; weight 0: not trained on)",
                 **TOOL_COLUMNS},
        origin="OpenAI chat fine-tuning (tools); TRL conversational; Axolotl chat_template; Azure ML chat",
        reference="https://huggingface.co/docs/trl/dataset_formats#tool-calling",
        example={"messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, cloudy"},
            {"role": "assistant", "content": "It is 18 C and cloudy in Paris."}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]},
        nested=("messages",),
    ),
    SourceFormat(
        name="messages_kto", canonical="kto", convert=convert_kto, required=("messages", "label"),
        columns={"messages": "prompt (all but the last message) + completion (the last, an assistant reply)",
                 "label": "label (true: desirable)", **TOOL_COLUMNS},
        origin="LLaMA-Factory KTO (kto_en_demo: sharegpt with OpenAI tags, kto_tag: label)",
        reference="https://github.com/hiyouga/LLaMA-Factory/blob/main/data/README.md#kto-dataset-1",
        example={"messages": [{"role": "user", "content": "Name a primary colour."},
                              {"role": "assistant", "content": "Green."}], "label": False},
        evidence=lambda obj: 0.0 if is_bool_label(obj.get("label")) else -1.0, nested=("messages",),
    ),
    SourceFormat(
        name="messages_preference", canonical="preference", convert=convert_preference,
        required=("messages", "chosen", "rejected"),
        columns={"messages": "prompt (ends with a user turn)", "chosen": "chosen (one assistant message)",
                 "rejected": "rejected (one assistant message)", **TOOL_COLUMNS},
        origin="LLaMA-Factory ranking (ranking: true) with OpenAI role/content tags",
        reference="https://github.com/hiyouga/LLaMA-Factory/blob/main/data/README.md#preference-dataset-1",
        example={"messages": [{"role": "user", "content": "Name a primary colour."}],
                 "chosen": {"role": "assistant", "content": "Red."},
                 "rejected": {"role": "assistant", "content": "Green."}},
        evidence=_ranking, nested=("messages", "chosen", "rejected"),
    ),
)
