"""What a stage wrote in its output dir, recorded in metrics.json and the report so nothing calls full
weights an adapter, and the next stage knows how to start from it:

- `adapter`: a PEFT adapter (adapter_config.json) for the stage's starting weights; the next stage continues
  it (`outputs.init_adapter`);
- `full_weights`: a full model (full fine-tuning); the next stage loads it instead of base_model
  (`outputs.init_model`);
- `reward_model`: a sequence-classification scorer (adapter on the base model, or full weights); an `rl`
  stage scores with it (`reward_model`).
"""

from __future__ import annotations

import json
from typing import Any

ADAPTER, FULL_WEIGHTS, REWARD_MODEL = "adapter", "full_weights", "reward_model"


def describe_output(ctx) -> dict[str, Any]:
    """{"artifact", "peft", "artifact_dir", ...} for the stage in `ctx` (after its final save)."""
    out = ctx.layout.output_dir
    adapter_cfg = out / "adapter_config.json"
    info: dict[str, Any] = {"peft": ctx.cfg.peft.type, "artifact_dir": str(out)}
    if adapter_cfg.is_file():
        try:
            info["adapter_type"] = json.loads(adapter_cfg.read_text()).get("peft_type")
        except (OSError, json.JSONDecodeError):
            pass
    if ctx.cfg.method == "reward":
        info["artifact"] = REWARD_MODEL
        info["reward_weights"] = ADAPTER if adapter_cfg.is_file() else FULL_WEIGHTS
    else:
        info["artifact"] = ADAPTER if adapter_cfg.is_file() else FULL_WEIGHTS
    if ctx.layout.init_model is not None:
        info["init_model"] = str(ctx.layout.init_model)
    if ctx.layout.init_adapter is not None:
        info["init_adapter"] = str(ctx.layout.init_adapter)
    return info


def label(info: dict[str, Any]) -> str:
    """A short human description, e.g. "lora adapter", "full weights", "reward model (adapter)"."""
    kind = info.get("artifact")
    if kind == ADAPTER:
        return f"{info.get('peft') or info.get('adapter_type') or ''} adapter".strip()
    if kind == REWARD_MODEL:
        return f"reward model ({'adapter' if info.get('reward_weights') == ADAPTER else 'full weights'})"
    return "full weights"
