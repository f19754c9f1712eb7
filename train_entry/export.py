"""The export step (after training, before evaluation, whether or not evaluation runs): merged full weights
of an adapter (`export.merge`) and a bitsandbytes 8-bit / NF4 copy (`export.quantize`), for causal LMs and
for reward models (sequence classification) alike. Also `python -m train_entry merge`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

from .events import log
from .progress import MERGE, QUANTIZE, Phase


class NotMergeable(ValueError):
    """The folder holds no adapter that can be merged into the weights."""


def weights_size(path: Path) -> int:
    """Bytes of the weight files in a model folder (safetensors / bin shards, not tokenizer or logs)."""
    return sum(p.stat().st_size for p in Path(path).iterdir()
               if p.is_file() and p.name.endswith((".safetensors", ".bin")) and "adapter" not in p.name)


def merge_adapter(adapter: Path, out: Path, base: Optional[str] = None) -> Path:
    """Load base + adapter, merge the LoRA weights into the base, save model + tokenizer to `out`.

    A reward-model adapter (task SEQ_CLS) merges into a sequence-classification model."""
    cfg_path = adapter / "adapter_config.json"
    if not cfg_path.is_file():
        raise NotMergeable(f"{adapter} holds no adapter_config.json; pass the adapter folder of a run")
    acfg = json.loads(cfg_path.read_text())
    if acfg.get("peft_type") not in ("LORA",):
        raise NotMergeable(f"a {acfg.get('peft_type')} adapter cannot be merged into the weights; "
                           "only LoRA/QLoRA/DoRA adapters can (serve it with the adapter instead)")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from .modeling import from_pretrained, load_tokenizer

    base = base or acfg["base_model_name_or_path"]
    tok = load_tokenizer(str(adapter) if (adapter / "tokenizer_config.json").is_file() else base)
    if acfg.get("task_type") == "SEQ_CLS":
        model = from_pretrained(AutoModelForSequenceClassification, base, "base model", num_labels=1)
        model.config.pad_token_id = tok.pad_token_id
    else:
        model = from_pretrained(AutoModelForCausalLM, base, "base model")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _mib(path: Path) -> float:
    return weights_size(path) / 2**20


def run_exports(ctx) -> tuple[dict[str, Any], list[str]]:
    """Write what `export` asks for into the output dir; returns (numbers for metrics.json, notes).

    An adapter that cannot be merged (prompt learning) is a note; any other failure fails the stage (the
    trained weights and the final checkpoint are saved, so a resubmit reuses them and retries the export)."""
    from .modeling import is_adapter_dir

    exp, out = ctx.cfg.export, ctx.layout.output_dir
    if not exp.merge and not exp.quantize:
        return {}, []
    res: dict[str, Any] = {}
    notes: list[str] = []
    weights = out  # full weights to quantize from
    merged = out / "merged"
    if is_adapter_dir(out):
        try:
            with Phase(MERGE, unit="MiB", label="merge the adapter into the weights") as phase:
                merge_adapter(out, merged, base=ctx.model_source)
                phase.advance(round(_mib(merged)))
        except NotMergeable as exc:
            log(f"warning: export skipped: {exc}")
            notes.append(f"export skipped: {exc}")
            return res, notes
        weights = merged
        if exp.merge:
            res["merged_dir"] = str(merged)
            res["merged_size_mb"] = _mib(merged)
    elif exp.merge:
        notes.append("merge: the stage saved full weights already (no adapter to merge)")
    if exp.quantize:
        from .quantize import quantize_model

        with Phase(QUANTIZE, unit="MiB", label=f"quantize to {exp.quantize}") as phase:
            qdir = quantize_model(weights, out / f"quantized-{exp.quantize}", exp.quantize)
            phase.advance(round(_mib(weights)))
        res["quantized_dir"] = str(qdir)
        res["quantized_size_mb"] = _mib(qdir)
        res["full_size_mb"] = _mib(weights)
    if not exp.merge and weights is merged:
        shutil.rmtree(merged, ignore_errors=True)  # only needed as the quantization source
    return res, notes
