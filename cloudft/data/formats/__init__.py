"""Source formats: detect a file's format and convert each record to cloudft's canonical form (TRL's columns).

The registry (`REGISTRY`, one small module per source format family) holds every format the ecosystem writes
that cloudft reads: TRL's types, OpenAI chat with tools and OpenAI preference, LLaMA-Factory's alpaca and
sharegpt (SFT, ranking, KTO, tool calling), Axolotl's own types, Anthropic HH-RLHF, and the Azure ML and SageMaker
fine-tuning samples. Each format says which keys it reads and what each becomes; docs/data.md has the table.

Canonical formats (what train_entry reads): prompt_completion, messages, text, preference, kto.

`data.columns` maps your columns to a format's names, with templates (`{prompt: "{instruction}\\n\\n{input}"}`)
and pairwise labels (`{response_a, response_b, label, label_a, label_b}`); see `mapping.py`.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Optional

from ..problems import RecordError
from . import (alpaca, axolotl, cloud_samples, hh_rlhf, kto, messages, openai_preference,  # noqa: F401 (register)
               preference, prompt_completion, sharegpt, text)
from .base import CANONICAL, REGISTRY, SourceFormat, check_chars, looks_like_target
from .chat import check_turn_order, has_tool_content
from .detect import Detection, rank, render_mapping, shape_error, suggest_mapping, unused_report
from .hh_rlhf import split_hh_dialog
from .mapping import check_columns, make_mapper, source_field

__all__ = ["CANONICAL", "REGISTRY", "SourceFormat", "RecordError", "Detection", "METHOD_KINDS",
           "SOURCE_TO_CANONICAL", "check_chars", "check_columns", "check_turn_order",
           "has_tool_content", "looks_like_target", "make_mapper", "normalise", "prompt_key", "rank",
           "record_parts", "record_text", "render_mapping", "shape_error", "source_field", "split_hh_dialog",
           "suggest_mapping", "unused_report", "all_keys", "check_form", "form_of", "note_unused"]

SOURCE_TO_CANONICAL = {name: fmt.canonical for name, fmt in REGISTRY.items()}
METHOD_KINDS: dict[str, tuple[str, ...]] = {
    "sft": ("prompt_completion", "messages", "text"),
    "dpo": ("preference",), "orpo": ("preference",), "reward": ("preference",),
    "kto": ("kto",),
    "rl": ("prompt_completion", "preference"),
}


def all_keys() -> set[str]:
    """Every key some format reads (the names data.columns may map to)."""
    return {k for fmt in REGISTRY.values() for k in fmt.keys}


def normalise(obj: Any, fmt: str, *, prompt_only: bool = False, chars: bool = True) -> dict:
    """The canonical record for `obj` in source format `fmt`; raises RecordError naming the field and reason.

    `chars=False` skips the control-character scan (the reader knows the raw line cannot hold one).
    """
    if not isinstance(obj, dict):
        raise RecordError("", "not_an_object", f"record is a {type(obj).__name__}, not an object")
    rec = REGISTRY[fmt].convert(obj, prompt_only=prompt_only)
    if chars:
        check_chars(rec)
    return rec


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    parts = []
    for m in value or []:
        parts.append(m.get("content", ""))
        for call in m.get("tool_calls", ()):
            fn = call["function"]
            args = fn["arguments"]
            parts.append(f"{fn['name']} {args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)}")
    return "\n".join(p for p in parts if p)


def prompt_key(record: dict) -> Optional[str]:
    """The record's prompt as text (for prompt-level split and leakage checks), None without a prompt."""
    prompt = record.get("prompt")
    if prompt is None:
        msgs = record.get("messages")
        if not msgs:
            return None
        prompt = [m for m in msgs if m["role"] != "assistant"][:2]
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True)


def record_text(record: dict) -> str:
    """All the text of a canonical record, tool calls included (near-duplicate and PII checks)."""
    parts = [_text_of(record[k]) for k in ("prompt", "completion", "chosen", "rejected", "text", "messages")
             if record.get(k) is not None]
    return "\n".join(p for p in parts if p)


def record_parts(record: dict) -> list[str]:
    """The parts of a record that must all be alike for two records to be near-duplicates: a preference pair is
    compared part by part (prompt, chosen, rejected), so pairs that share a long prompt stay distinct; a KTO
    record's label is a part too; any other record is one part."""
    if "chosen" in record:
        return [_text_of(record.get("prompt")), _text_of(record["chosen"]), _text_of(record["rejected"])]
    if "label" in record:
        return [_text_of(record.get("prompt")), _text_of(record.get("completion")), f"label {record['label']}"]
    return [record_text(record)]


def form_of(record: dict) -> Optional[str]:
    """'conversational' or 'standard' for records with a prompt; None for messages and text records."""
    if "prompt" not in record:
        return None
    return "conversational" if isinstance(record["prompt"], list) else "standard"


def check_form(record: dict, expected: Optional[str]) -> Optional[str]:
    """The record's form; RecordError when the dataset's form is `expected` and this one differs (TRL reads
    one form per dataset: text fields, or message lists)."""
    form = form_of(record)
    if form is not None and expected is not None and form != expected:
        raise RecordError("prompt", "mixed_forms", f"a {form} record in a dataset of {expected} records")
    return form


def note_unused(fmt: SourceFormat, mapped: Any, counts: Counter) -> None:
    """Count the columns a record has that the format does not read; RecordError for one that looks like a label
    or a target (dropping it would change what is trained on)."""
    if not isinstance(mapped, dict):
        return
    extra = fmt.unused(mapped)
    for col in extra:
        if looks_like_target(col.split(".")[-1]):
            raise RecordError(col, "unused_target", f"column '{col}' looks like a label or a target, but the "
                              f"{fmt.name} format does not read it")
    counts.update(extra)
