"""Exports after training: merged full weights (LoRA family)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def merge_adapter(adapter: Path, out: Path, base: Optional[str] = None) -> Path:
    """Load base + adapter, merge the LoRA weights into the base, save model + tokenizer to `out`."""
    cfg_path = adapter / "adapter_config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{adapter} holds no adapter_config.json; pass the adapter folder of a run")
    acfg = json.loads(cfg_path.read_text())
    if acfg.get("peft_type") not in ("LORA",):
        raise ValueError(f"a {acfg.get('peft_type')} adapter cannot be merged into the weights; "
                         "only LoRA/QLoRA/DoRA adapters can (serve it with the adapter instead)")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = base or acfg["base_model_name_or_path"]
    model = AutoModelForCausalLM.from_pretrained(base)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tok_src = adapter if (adapter / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(tok_src).save_pretrained(out)
    return out
