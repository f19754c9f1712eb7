"""Plain text (language modeling / pre-training): TRL's `text`, LLaMA-Factory's pre-training data, Axolotl's
`completion` and pre-training types. Sources: https://huggingface.co/docs/trl/dataset_formats#language-modeling,
https://github.com/hiyouga/LLaMA-Factory/blob/main/data/README.md (Pre-training Dataset)."""

from __future__ import annotations

from .base import SourceFormat, register, text


def convert(obj: dict, prompt_only: bool = False) -> dict:
    return {"text": text(obj, "text")}


register(SourceFormat(
    name="text", canonical="text", convert=convert, required=("text",),
    columns={"text": "text (trained on in full)"},
    origin="TRL language modeling; LLaMA-Factory and Axolotl pre-training",
    reference="https://huggingface.co/docs/trl/dataset_formats#language-modeling",
    example={"text": "The sky is blue."},
))
