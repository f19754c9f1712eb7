"""Axolotl's dataset types that are not already LLaMA-Factory's or TRL's: template-free `input_output`
segments, the chatml DPO types (intel, icr, argilla) and the oasst and gpteacher instruction types.

Sources: https://docs.axolotl.ai/docs/dataset-formats/ (inst_tune, template_free) and
https://docs.axolotl.ai/docs/rlhf.html (DPO types). Axolotl renders the chatml DPO types as a chat (system,
user), so they become conversational preference pairs here.
"""

from __future__ import annotations

from typing import Any

from ..problems import RecordError
from .alpaca import instruction_format
from .base import SourceFormat, optional_text, register, text
from .preference import conversational

INST_TUNE = "https://docs.axolotl.ai/docs/dataset-formats/inst_tune.html"
RLHF = "https://docs.axolotl.ai/docs/rlhf.html"


def convert_segments(obj: dict, prompt_only: bool = False) -> dict:
    """Untrained (label false) segments first, then trained ones: prompt + completion, joined as they are."""
    segments = obj.get("segments")
    if not isinstance(segments, list) or not segments:
        raise RecordError("segments", "missing_field" if segments is None else "wrong_type",
                          "'segments' must be a non-empty list of {label, text}")
    prompt, completion = [], []
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict) or not isinstance(seg.get("text"), str) or not isinstance(seg.get("label"), bool):
            raise RecordError(f"segments[{i}]", "wrong_type", "a segment is {\"label\": true|false, \"text\": str}")
        if seg["label"]:
            completion.append(seg["text"])
        elif completion:
            raise RecordError(f"segments[{i}].label", "unsupported_mask",
                              "an untrained segment after a trained one: only a prompt prefix can be left "
                              "out of the loss in TRL's formats",
                              "put the untrained text first, or split the record")
        else:
            prompt.append(seg["text"])
    if not prompt:
        raise RecordError("segments[0].label", "unsupported_mask", "the first segment is trained, so there is no "
                          "prompt", "to train on all of it, write {\"text\": ...} records (format text)")
    out: dict[str, Any] = {"prompt": "".join(prompt), "completion": "".join(completion)}
    if not out["prompt"].strip():
        raise RecordError("segments", "empty_prompt", "the untrained segments are empty")
    if not out["completion"].strip():
        raise RecordError("segments", "empty_field", "no trained segment has text")
    return out


def chatml_pair(prompt_key: str, chosen_key: str = "chosen", rejected_key: str = "rejected"):
    """An Axolotl chatml DPO type: [system], user prompt, one assistant answer each."""

    def convert(obj: dict, prompt_only: bool = False) -> dict:
        system = optional_text(obj, "system")
        prompt = ([{"role": "system", "content": system}] if system.strip() else [])
        prompt.append({"role": "user", "content": text(obj, prompt_key, empty_reason="empty_prompt")})
        answers = [[{"role": "assistant", "content": text(obj, key)}] for key in (chosen_key, rejected_key)]
        return conversational(prompt, *answers)

    return convert


def convert_oasst(obj: dict, prompt_only: bool = False) -> dict:
    return {"prompt": text(obj, "INSTRUCTION", empty_reason="empty_prompt"), "completion": text(obj, "RESPONSE")}


def _strings(*keys: str):
    return lambda obj: 0.0 if all(isinstance(obj.get(k), str) for k in keys) else -1.0


def _pair(name: str, prompt_key: str, chosen_key: str = "chosen", rejected_key: str = "rejected") -> SourceFormat:
    example = {"system": "Answer briefly.", prompt_key: "Name a primary colour.", chosen_key: "Red.",
               rejected_key: "Green."}
    return SourceFormat(
        name=f"axolotl_{name.replace('.', '_')}", canonical="preference",
        convert=chatml_pair(prompt_key, chosen_key, rejected_key), required=(prompt_key, chosen_key, rejected_key),
        columns={"system": "prompt: the system message", prompt_key: "prompt: the user turn",
                 chosen_key: "chosen (an assistant message)", rejected_key: "rejected (an assistant message)"},
        origin=f"Axolotl DPO type {name}", reference=RLHF, example=example,
        evidence=_strings(prompt_key, chosen_key, rejected_key),
    )


register(
    SourceFormat(
        name="axolotl_input_output", canonical="prompt_completion", convert=convert_segments,
        required=("segments",),
        columns={"segments": "prompt (the leading label:false segments) + completion (the label:true ones)"},
        origin="Axolotl template-free input_output",
        reference="https://docs.axolotl.ai/docs/dataset-formats/template_free.html",
        example={"segments": [{"label": False, "text": "<s>Translate to French: cat\n"},
                              {"label": True, "text": "chat</s>"}]},
    ),
    _pair("chatml.intel", "question"),
    _pair("chatml.icr", "input"),
    _pair("chatml.argilla", "instruction", "chosen_response", "rejected_response"),
    SourceFormat(
        name="axolotl_oasst", canonical="prompt_completion", convert=convert_oasst,
        required=("INSTRUCTION", "RESPONSE"), columns={"INSTRUCTION": "prompt", "RESPONSE": "completion"},
        origin="Axolotl oasst", reference=INST_TUNE,
        example={"INSTRUCTION": "Name a primary colour.", "RESPONSE": "Red."},
    ),
    instruction_format(
        "axolotl_gpteacher", "input", "response", origin="Axolotl gpteacher", reference=INST_TUNE,
        example={"instruction": "Translate to French.", "input": "cat", "response": "chat"},
    ),
)
