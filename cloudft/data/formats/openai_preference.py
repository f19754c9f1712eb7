"""OpenAI's preference fine-tuning (DPO) format: `input` {messages, tools, parallel_tool_calls},
`preferred_output` and `non_preferred_output` (assistant messages).

Source: https://platform.openai.com/docs/guides/direct-preference-optimization (Data format), also
https://learn.microsoft.com/azure/ai-foundry/openai/how-to/fine-tuning-direct-preference-optimization.
"""

from __future__ import annotations

from ..problems import RecordError
from .base import SourceFormat, register
from .preference import conversational


def convert(obj: dict, prompt_only: bool = False) -> dict:
    inp = obj.get("input")
    if not isinstance(inp, dict):
        raise RecordError("input", "missing_field" if inp is None else "wrong_type",
                          "'input' must be an object with 'messages'")
    extra = sorted(set(inp) - {"messages", "tools", "parallel_tool_calls"})
    if extra:
        raise RecordError(f"input.{extra[0]}", "unused_column",
                          f"'input' has keys no format reads: {', '.join(extra)}")
    return conversational(inp.get("messages"), obj.get("preferred_output"), obj.get("non_preferred_output"),
                          inp.get("tools"))


register(SourceFormat(
    name="openai_preference", canonical="preference", convert=convert,
    required=("input", "preferred_output", "non_preferred_output"),
    columns={"input": "prompt (input.messages) + tools (input.tools)", "preferred_output": "chosen",
             "non_preferred_output": "rejected"},
    origin="OpenAI / Azure OpenAI preference (DPO) fine-tuning",
    reference="https://platform.openai.com/docs/guides/direct-preference-optimization",
    example={"input": {"messages": [{"role": "user", "content": "How cold is San Francisco today?"}],
                       "tools": [], "parallel_tool_calls": True},
             "preferred_output": [{"role": "assistant", "content": "About 14 C: bring a jacket."}],
             "non_preferred_output": [{"role": "assistant", "content": "It is cold."}]},
    nested=("preferred_output", "non_preferred_output"),
))
