"""Model architecture for the planner: read from a local config.json, the bundled table, or the hub (no weights).

Only the numbers that set memory and FLOPs are kept (`Arch`). Nothing here imports torch or transformers.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Optional

HUB_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Arch:
    """Shape of a decoder-only transformer, as far as memory and FLOPs are concerned."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool = False
    head_dim: Optional[int] = None
    experts: int = 0  # 0: dense MLP
    experts_per_token: int = 0
    layout: str = "llama"  # llama | qwen1 | phi3: which linear-module names exist
    extra_params: int = 0  # e.g. a vision tower that is loaded but not adapted
    source: str = ""

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hd

    def linears(self) -> dict[str, list[tuple[int, int]]]:
        """Linear modules of one decoder layer by name → list of (in_features, out_features) (experts included)."""
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        n_mlp = max(self.experts, 1)
        if self.layout == "qwen1":
            return {"c_attn": [(h, q + 2 * kv)], "c_proj": [(q, h), (i, h)], "w1": [(h, i)], "w2": [(h, i)]}
        if self.layout == "phi3":
            return {"qkv_proj": [(h, q + 2 * kv)], "o_proj": [(q, h)],
                    "gate_up_proj": [(h, 2 * i)] * n_mlp, "down_proj": [(i, h)] * n_mlp}
        return {"q_proj": [(h, q)], "k_proj": [(h, kv)], "v_proj": [(h, kv)], "o_proj": [(q, h)],
                "gate_proj": [(h, i)] * n_mlp, "up_proj": [(h, i)] * n_mlp, "down_proj": [(i, h)] * n_mlp}

    @property
    def linear_params(self) -> int:
        """Parameters in the decoder layers' linear modules (what bitsandbytes quantizes)."""
        per_layer = sum(a * b for mods in self.linears().values() for a, b in mods)
        router = self.hidden * self.experts if self.experts else 0
        return self.layers * (per_layer + router)

    @property
    def embed_params(self) -> int:
        """Input embedding plus output head (one matrix when tied). Kept in 16-bit by bitsandbytes."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def other_params(self) -> int:
        return self.layers * 2 * self.hidden + self.hidden + self.extra_params

    @property
    def params(self) -> int:
        return self.linear_params + self.embed_params + self.other_params

    @property
    def active_params(self) -> int:
        """Parameters that touch each token (MoE: only the routed experts). Sets FLOPs per token."""
        if not self.experts:
            return self.params
        mlp = 3 * self.hidden * self.intermediate * self.layers
        return self.params - mlp * (self.experts - self.experts_per_token)


def normalise_name(model_id: str) -> str:
    """'meta-llama/Meta-Llama-3-8B-Instruct' → 'meta-llama-3-8b' (the bundled table's keys)."""
    name = model_id.strip().rstrip("/").split("/")[-1].lower()
    name = re.sub(r"-(bnb-4bit|unsloth|gptq|awq|int4|int8|fp8)\b", "", name)
    previous = None
    while previous != name:
        previous = name
        name = re.sub(r"-(instruct|chat|hf|it|pt|base|\d+k|\d{4})(?=-v\d|$)", "", name)
        name = re.sub(r"-(instruct|chat|hf|it|pt|base)$", "", name)
    return name


@lru_cache(maxsize=None)
def bundled_table() -> dict[str, dict[str, Any]]:
    """The bundled model table (models.json), keyed by normalised name."""
    return json.loads(files("cloudft.planner").joinpath("models.json").read_text())["models"]


def from_config(cfg: dict[str, Any], name: str, source: str) -> Arch:
    """Build an Arch from config.json values (multimodal configs: the `text_config` part)."""
    if "text_config" in cfg and "hidden_size" not in cfg:
        cfg = {**cfg["text_config"], "tie_word_embeddings": cfg.get("tie_word_embeddings",
                                                                    cfg["text_config"].get("tie_word_embeddings"))}
    try:
        hidden = int(cfg.get("hidden_size") or cfg["n_embd"])
        layers = int(cfg.get("num_hidden_layers") or cfg["n_layer"])
        heads = int(cfg.get("num_attention_heads") or cfg["n_head"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"config.json lacks {exc} (hidden_size / num_hidden_layers / num_attention_heads)") from None
    model_type = str(cfg.get("model_type", ""))
    layout = cfg.get("layout") or ("qwen1" if model_type == "qwen" else "phi3" if model_type.startswith("phi3") else "llama")
    inter = int(cfg.get("moe_intermediate_size") or cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * hidden)
    if model_type == "qwen" and "layout" not in cfg:
        inter //= 2  # Qwen v1 lists the fused w1+w2 width
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts") or 0)
    return Arch(
        name=name,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=int(cfg.get("num_key_value_heads") or heads),
        intermediate=inter,
        vocab=int(cfg.get("vocab_size") or 32000),
        tied=bool(cfg.get("tie_word_embeddings", False)),
        head_dim=int(cfg["head_dim"]) if cfg.get("head_dim") else None,
        experts=experts,
        experts_per_token=int(cfg.get("num_experts_per_tok") or (2 if experts else 0)),
        layout=layout,
        extra_params=int(cfg.get("extra_params", 0)),
        source=source,
    )


def from_table(model_id: str) -> Optional[Arch]:
    """The bundled entry for a well-known model id, or None."""
    key = normalise_name(model_id)
    entry = bundled_table().get(key)
    return from_config(entry, key, f"bundled table (models.json: {key})") if entry else None


def _hub_cache(model_id: str) -> Path:
    from ..paths import home

    return home() / "planner" / "configs" / (model_id.replace("/", "--") + ".json")


def from_hub(model_id: str, timeout: float = HUB_TIMEOUT_S) -> Optional[Arch]:
    """Fetch only config.json from the Hugging Face hub (cached). None when offline or not found."""
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true") or os.environ.get("CLOUDFT_OFFLINE") in ("1", "true"):
        return None
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", model_id):
        return None
    cache = _hub_cache(model_id)
    if cache.is_file():
        return from_config(json.loads(cache.read_text()), model_id, f"hub config.json (cached {cache})")
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    req = urllib.request.Request(f"{endpoint}/{model_id}/resolve/main/config.json")
    token = os.environ.get("HF_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - fixed https endpoint
            cfg = json.loads(resp.read(1 << 20))
    except Exception:  # offline, 401/404, bad JSON: the caller warns
        return None
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(cfg))
    return from_config(cfg, model_id, f"hub config.json ({endpoint}/{model_id})")


@dataclass
class ArchResult:
    arch: Optional[Arch]
    warnings: list[str] = field(default_factory=list)


def resolve_arch(base_model: str, base_dir: Optional[Path] = None) -> ArchResult:
    """Local directory's config.json → bundled table → hub config.json → a warning (and no Arch)."""
    candidates = [Path(base_model).expanduser()]
    if base_dir is not None and not candidates[0].is_absolute():
        candidates.insert(0, base_dir / base_model)
    for path in candidates:
        if path.is_dir():
            cfg_file = path / "config.json"
            if not cfg_file.is_file():
                return ArchResult(None, [f"{path} has no config.json: cannot estimate memory or cost"])
            try:
                return ArchResult(from_config(json.loads(cfg_file.read_text()), path.name, f"local {cfg_file}"))
            except (ValueError, json.JSONDecodeError) as exc:
                return ArchResult(None, [f"{cfg_file}: {exc}; no memory or cost estimate"])
    arch = from_table(base_model) or from_hub(base_model)
    if arch is None:
        return ArchResult(None, [
            f"architecture of '{base_model}' is unknown offline (not in the bundled table, hub not reachable): "
            "no memory/instance/cost estimate; point base_model at a directory with its config.json"])
    return ArchResult(arch)
