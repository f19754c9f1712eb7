"""Quantized copies of a trained model (or reward model) for inference: bitsandbytes 8-bit (LLM.int8) or 4-bit NF4.

The copy is saved with its `quantization_config` in config.json, so `AutoModelForCausalLM.from_pretrained(dir)`
loads it quantized again (bitsandbytes must be installed where it is loaded). bitsandbytes >= 0.45 runs both
on the CPU as well as on CUDA GPUs.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("8bit", "nf4")


def bnb_config(kind: str):
    """The transformers BitsAndBytesConfig for `kind` ("8bit" or "nf4")."""
    import torch
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if kind == "nf4":
        compute = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute)
    raise ValueError(f"unknown quantization {kind!r}; use one of {', '.join(KINDS)}")


def quantize_model(src: Path, out: Path, kind: str) -> Path:
    """Load the full weights in `src` (a causal LM, or a reward model: sequence classification) quantized to
    `kind`, save them (+ tokenizer) to `out`."""
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    src, out = Path(src), Path(out)
    kwargs = {"quantization_config": bnb_config(kind)}
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": 0}
    architectures = json.loads((src / "config.json").read_text()).get("architectures") or []
    scorer = any(a.endswith("ForSequenceClassification") for a in architectures)
    auto = AutoModelForSequenceClassification if scorer else AutoModelForCausalLM
    model = auto.from_pretrained(str(src), **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    return out
