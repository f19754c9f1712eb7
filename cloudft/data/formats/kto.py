"""TRL's unpaired preference type (KTO): prompt + completion + a desirable/undesirable label.

Source: https://huggingface.co/docs/trl/dataset_formats#unpaired-preference.
"""

from __future__ import annotations

from .base import SourceFormat, bool_label, is_bool_label, register
from .prompt_completion import convert as prompt_completion


def convert(obj: dict, prompt_only: bool = False) -> dict:
    out = prompt_completion({k: obj.get(k) for k in ("prompt", "completion", "tools") if k in obj})
    out["label"] = bool_label(obj.get("label"), "label")
    return out


register(SourceFormat(
    name="kto", canonical="kto", convert=convert, required=("prompt", "completion", "label"),
    columns={"prompt": "prompt", "completion": "completion",
             "label": "label (true: desirable; 1/0, yes/no, good/bad, thumbs_up/down read too)",
             "tools": "tools (conversational form)"},
    origin="TRL unpaired preference (KTO)",
    reference="https://huggingface.co/docs/trl/dataset_formats#unpaired-preference",
    example={"prompt": "The sky is", "completion": " blue.", "label": True},
    evidence=lambda obj: 0.0 if is_bool_label(obj.get("label")) else -1.0, nested=("prompt", "completion"),
))
