"""Records in the formats the ecosystem writes, each written from that format's own published description
(cited above each block), with what cloudft should make of them. Used by test_data_sources.py and the docs test.

Sources read (2026-12):
- LLaMA-Factory data/README.md: https://github.com/hiyouga/LLaMA-Factory/blob/main/data/README.md (alpaca SFT with
  system/history, alpaca preference, KTO `kto_tag`, sharegpt SFT with function_call/observation and `tools`,
  sharegpt preference with chosen/rejected turn objects; its dataset_info.json maps kto_en_demo's `label` column to
  kto_tag and reads it with OpenAI role/content tags)
- OpenAI chat fine-tuning with tools, as Azure OpenAI documents it:
  https://learn.microsoft.com/azure/ai-services/openai/how-to/fine-tuning-functions (messages, tool_calls with
  JSON-text arguments, tool messages, tools); OpenAI's API schema FineTuneChatRequestInput (assistant `weight` 0/1,
  deprecated `functions`/`function_call`); DPO: https://platform.openai.com/docs/guides/direct-preference-optimization
  (input.messages/tools, preferred_output, non_preferred_output)
- TRL dataset formats: https://huggingface.co/docs/trl/dataset_formats (standard/conversational prompt-completion,
  preference with explicit and implicit prompt, unpaired preference, tool calling with a `tools` column)
- Axolotl: https://docs.axolotl.ai/docs/dataset-formats/inst_tune.html (oasst, gpteacher),
  https://docs.axolotl.ai/docs/dataset-formats/template_free.html (input_output segments),
  https://docs.axolotl.ai/docs/rlhf.html (chatml.intel, chatml.icr, chatml.argilla)
- Azure ML text-generation preprocessing (sample input {"text", "ground_truth"}):
  https://github.com/Azure/azureml-assets/blob/main/assets/training/finetune_acft_hf_nlp/components/preprocess/
  text_generation/README.md
- SageMaker JumpStart instruction tuning (Dolly instruction/context/response with template.json):
  https://docs.aws.amazon.com/sagemaker/latest/dg/jumpstart-foundation-models-fine-tuning-instruction-based.html
"""

from __future__ import annotations

import json
from typing import Any

U = "user"
A = "assistant"


def msg(role: str, content: str, **extra: Any) -> dict:
    return {"role": role, "content": content, **extra}


WEATHER_SCHEMA = {"name": "get_weather", "description": "Current weather in a city",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
WEATHER_TOOL = {"type": "function", "function": WEATHER_SCHEMA}

# -- LLaMA-Factory --------------------------------------------------------------------------------------------
LF_ALPACA = [
    {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
    {"instruction": "Name the capital of Italy.", "input": "", "output": "Rome."},
]
LF_ALPACA_HISTORY = [
    {"instruction": "And in German?", "input": "", "output": "Katze", "system": "You translate single words.",
     "history": [["cat in French?", "chat"]]},
    {"instruction": "Name the capital of Italy.", "input": "", "output": "Rome."},
]
LF_ALPACA_PREFERENCE = [
    {"instruction": "Name a primary colour.", "input": "", "chosen": "Red.", "rejected": "Green."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "chosen": "5", "rejected": "6"},
]
LF_ALPACA_KTO = [
    {"instruction": "Name a primary colour.", "input": "", "output": "Green.", "kto_tag": False},
    {"instruction": "Name a primary colour.", "input": "", "output": "Blue.", "kto_tag": "true"},
]
# dpo_en_demo.json shape: conversations + chosen/rejected single turns ("ranking": true)
LF_SHAREGPT_RANKING = [
    {"conversations": [{"from": "human", "value": "Name a primary colour."}],
     "chosen": {"from": "gpt", "value": "Red."}, "rejected": {"from": "gpt", "value": "Green."}},
    {"conversations": [{"from": "system", "value": "Answer briefly."}, {"from": "human", "value": "2+2?"},
                       {"from": "gpt", "value": "4"}, {"from": "human", "value": "And 3+3?"}],
     "chosen": {"from": "gpt", "value": "6"}, "rejected": {"from": "gpt", "value": "7"}},
]
# kto_en_demo.json shape: OpenAI role/content tags, the KTO tag in a `label` column
LF_KTO_MESSAGES = [
    {"messages": [msg(U, "Name a primary colour."), msg(A, "Green.")], "label": False},
    {"messages": [msg(U, "Name a primary colour."), msg(A, "Red.")], "label": True},
]
# ranking with OpenAI tags (formatting: sharegpt, tags role/content; chosen/rejected single messages)
LF_MESSAGES_RANKING = [
    {"messages": [msg(U, "Name a primary colour.")], "chosen": msg(A, "Red."), "rejected": msg(A, "Green.")},
]
LF_SHAREGPT_KTO = [
    {"conversations": [{"from": "human", "value": "Name a primary colour."}, {"from": "gpt", "value": "Green."}],
     "kto_tag": False},
]
# glaive_toolcall_en_demo.json shape: function_call / observation turns, `tools` as JSON text of bare schemas
LF_SHAREGPT_TOOLS = [
    {"conversations": [
        {"from": "human", "value": "What is the weather in Paris?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
        {"from": "observation", "value": json.dumps({"temp_c": 18, "sky": "cloudy"})},
        {"from": "gpt", "value": "It is 18 C and cloudy in Paris."}],
     "system": "You are a weather bot.", "tools": json.dumps([WEATHER_SCHEMA])},
    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello! Ask me about weather."}],
     "tools": json.dumps([WEATHER_SCHEMA])},
]

# -- OpenAI ---------------------------------------------------------------------------------------------------
OPENAI_TOOLS = [
    {"messages": [
        msg(U, "What is the weather in Paris?"),
        {"role": A, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        msg("tool", "{\"temp_c\": 18, \"sky\": \"cloudy\"}", tool_call_id="call_1"),
        msg(A, "It is 18 C and cloudy in Paris.")],
     "tools": [WEATHER_TOOL]},
    # the documented minimal example ends on the call itself: teaching the model to call
    {"messages": [msg(U, "Weather in Oslo?"),
                  {"role": A, "tool_calls": [{"id": "call_2", "type": "function", "function": {
                      "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]}],
     "tools": [WEATHER_TOOL], "parallel_tool_calls": False},
    # weight 0: an assistant turn shown as context, not trained on
    {"messages": [msg(U, "Hi"), msg(A, "Yo.", weight=0), msg(U, "Say hello properly."), msg(A, "Hello!", weight=1)]},
]
OPENAI_PREFERENCE = [
    {"input": {"messages": [msg(U, "How cold is San Francisco today?")], "tools": [], "parallel_tool_calls": True},
     "preferred_output": [msg(A, "About 14 C: bring a jacket.")],
     "non_preferred_output": [msg(A, "It is cold.")]},
]

# -- TRL ------------------------------------------------------------------------------------------------------
TRL_PREFERENCE_IMPLICIT = [{"chosen": "The sky is blue.", "rejected": "The sky is green."}]
TRL_KTO_CONVERSATIONAL = [
    {"prompt": [msg(U, "What color is the sky?")], "completion": [msg(A, "It is green.")], "label": False},
]

# -- Axolotl --------------------------------------------------------------------------------------------------
AX_INPUT_OUTPUT = [{"segments": [{"label": False, "text": "<s>Translate to French: cat\n"},
                                 {"label": True, "text": "chat</s>"}]}]
AX_INTEL = [{"system": "Answer briefly.", "question": "Name a primary colour.", "chosen": "Red.",
             "rejected": "Green."}]
AX_ICR = [{"system": "Answer briefly.", "input": "Name a primary colour.", "chosen": "Red.", "rejected": "Green."}]
AX_ARGILLA = [{"system": "", "instruction": "Name a primary colour.", "chosen_response": "Red.",
               "rejected_response": "Green."}]
AX_OASST = [{"INSTRUCTION": "Name a primary colour.", "RESPONSE": "Red."}]
AX_GPTEACHER = [{"instruction": "Translate to French.", "input": "cat", "response": "chat"}]

# -- cloud samples --------------------------------------------------------------------------------------------
AZUREML_TEXT_GENERATION = [
    {"text": "The meaning of life is", "ground_truth": " being content and living it to the fullest"},
    {"text": "Summarize this dialog:\nA: Lunch?\nB: Sure, at 12.\n---\nSummary:",
     "ground_truth": " A and B meet for lunch at 12."},
]
SAGEMAKER_DOLLY = [
    {"instruction": "Summarise the text.", "context": "Cats sleep for most of the day.",
     "response": "Cats sleep a lot.", "category": "summarization"},
    {"instruction": "Name a primary colour.", "context": "", "response": "Red.", "category": "open_qa"},
]

# format name -> (records, method, the canonical record expected for the first one; tool schemas and call
# arguments stay JSON text in the canonical file, in their own key order)
SOURCES: dict[str, tuple[list[dict], str, dict]] = {
    "alpaca": (LF_ALPACA, "sft", {"prompt": "Translate to French.\n\ncat", "completion": "chat"}),
    "alpaca_conversational": (LF_ALPACA_HISTORY, "sft", {
        "prompt": [msg("system", "You translate single words."), msg(U, "cat in French?"), msg(A, "chat"),
                   msg(U, "And in German?")],
        "completion": [msg(A, "Katze")]}),
    "alpaca_preference": (LF_ALPACA_PREFERENCE, "dpo", {"prompt": "Name a primary colour.", "chosen": "Red.",
                                                        "rejected": "Green."}),
    "alpaca_kto": (LF_ALPACA_KTO, "kto", {"prompt": "Name a primary colour.", "completion": "Green.",
                                          "label": False}),
    "sharegpt_preference": (LF_SHAREGPT_RANKING, "dpo", {"prompt": [msg(U, "Name a primary colour.")],
                                                          "chosen": [msg(A, "Red.")], "rejected": [msg(A, "Green.")]}),
    "messages_preference": (LF_MESSAGES_RANKING, "dpo", {"prompt": [msg(U, "Name a primary colour.")],
                                                          "chosen": [msg(A, "Red.")], "rejected": [msg(A, "Green.")]}),
    "messages_kto": (LF_KTO_MESSAGES, "kto", {"prompt": [msg(U, "Name a primary colour.")],
                                              "completion": [msg(A, "Green.")], "label": False}),
    "sharegpt_kto": (LF_SHAREGPT_KTO, "kto", {"prompt": [msg(U, "Name a primary colour.")],
                                              "completion": [msg(A, "Green.")], "label": False}),
    "sharegpt": (LF_SHAREGPT_TOOLS, "sft", {
        "messages": [msg("system", "You are a weather bot."), msg(U, "What is the weather in Paris?"),
                     {"role": A, "content": "", "tool_calls": [{"type": "function", "function": {
                         "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                     msg("tool", "{\"temp_c\": 18, \"sky\": \"cloudy\"}"),
                     msg(A, "It is 18 C and cloudy in Paris.")],
        "tools": json.dumps([WEATHER_TOOL])}),
    "messages": (OPENAI_TOOLS, "sft", {
        "messages": [msg(U, "What is the weather in Paris?"),
                     {"role": A, "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
                         "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                     msg("tool", "{\"temp_c\": 18, \"sky\": \"cloudy\"}", tool_call_id="call_1"),
                     msg(A, "It is 18 C and cloudy in Paris.")],
        "tools": json.dumps([WEATHER_TOOL])}),
    "openai_preference": (OPENAI_PREFERENCE, "dpo", {"prompt": [msg(U, "How cold is San Francisco today?")],
                                                     "chosen": [msg(A, "About 14 C: bring a jacket.")],
                                                     "rejected": [msg(A, "It is cold.")]}),
    "preference": (TRL_PREFERENCE_IMPLICIT, "dpo", {"prompt": "The sky is", "chosen": " blue.",
                                                    "rejected": " green."}),
    "kto": (TRL_KTO_CONVERSATIONAL, "kto", {"prompt": [msg(U, "What color is the sky?")],
                                            "completion": [msg(A, "It is green.")], "label": False}),
    "axolotl_input_output": (AX_INPUT_OUTPUT, "sft", {"prompt": "<s>Translate to French: cat\n",
                                                      "completion": "chat</s>"}),
    "axolotl_chatml_intel": (AX_INTEL, "dpo", {"prompt": [msg("system", "Answer briefly."),
                                                          msg(U, "Name a primary colour.")],
                                               "chosen": [msg(A, "Red.")], "rejected": [msg(A, "Green.")]}),
    "axolotl_chatml_icr": (AX_ICR, "dpo", {"prompt": [msg("system", "Answer briefly."),
                                                      msg(U, "Name a primary colour.")],
                                           "chosen": [msg(A, "Red.")], "rejected": [msg(A, "Green.")]}),
    "axolotl_chatml_argilla": (AX_ARGILLA, "dpo", {"prompt": [msg(U, "Name a primary colour.")],
                                                   "chosen": [msg(A, "Red.")], "rejected": [msg(A, "Green.")]}),
    "axolotl_oasst": (AX_OASST, "sft", {"prompt": "Name a primary colour.", "completion": "Red."}),
    "axolotl_gpteacher": (AX_GPTEACHER, "sft", {"prompt": "Translate to French.\n\ncat", "completion": "chat"}),
    "azureml_text_generation": (AZUREML_TEXT_GENERATION, "sft", {
        "prompt": "The meaning of life is", "completion": " being content and living it to the fullest"}),
    "sagemaker_instruction": (SAGEMAKER_DOLLY, "sft", {
        "prompt": "Summarise the text.\n\nCats sleep for most of the day.", "completion": "Cats sleep a lot."}),
}
