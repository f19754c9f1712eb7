"""Azure ML online-endpoint scoring script for cloudft runs: base model + LoRA-family adapter (PEFT).

Why base + adapter (not merged): the registered model is the run's adapter output folder as is (megabytes,
no extra export step); the base is pulled once per instance at start-up (Hugging Face id from the adapter's
config or CLOUDFT_BASE_MODEL). If the folder also holds merged weights (`export.merge: true` writes
`merged/`), those are served directly instead.

Request:  {"prompt": "...", "max_new_tokens": 128}   Response: {"generated_text": "..."}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

model = None
tokenizer = None


def _find(root: Path, marker: str) -> Path | None:
    hits = sorted(root.rglob(marker), key=lambda p: len(p.parts))
    return hits[0].parent if hits else None


def init() -> None:
    """Load once per worker: secrets from Key Vault (HF_TOKEN for gated bases), then base + adapter."""
    global model, tokenizer
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.environ.get("CLOUDFT_SECRETS"):
        from cloudft_keyvault import load_secrets

        load_secrets(os.environ)
    root = Path(os.environ.get("AZUREML_MODEL_DIR", "."))
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    merged = next((p.parent for p in root.rglob("config.json") if p.parent.name == "merged"), None)
    if merged is not None:
        tokenizer = AutoTokenizer.from_pretrained(merged)
        model = AutoModelForCausalLM.from_pretrained(merged, torch_dtype=dtype).to(device).eval()
        return
    from peft import PeftModel

    adapter = _find(root, "adapter_config.json")
    base = os.environ.get("CLOUDFT_BASE_MODEL") or json.loads((adapter / "adapter_config.json").read_text())[
        "base_model_name_or_path"]
    tok_dir = adapter if (adapter / "tokenizer_config.json").exists() else base
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    base_model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=dtype)
    model = PeftModel.from_pretrained(base_model, adapter).to(device).eval()


def run(raw_data: str) -> str:
    """One request → generated text (the prompt's continuation only)."""
    import torch

    body = json.loads(raw_data)
    prompt = body.get("prompt") or (body.get("input_data") or {}).get("prompt", "")
    max_new = int(body.get("max_new_tokens", 128))
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    text = tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return json.dumps({"generated_text": text})
