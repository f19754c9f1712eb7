"""Which server can serve what a run wrote, as data: rules per serving engine, each citing the engine's own source,
checked at plan time (the plan's `serving` section, for every provider) and again by `deploy` before anything is
created.

Engines: "vllm" (SageMaker's Hugging Face vLLM image; the local server when vLLM and a GPU are here) loads LoRA
adapters only, under the rules below; "transformers" (the local CPU server, Azure's score.py) loads any PEFT adapter
with PEFT. A rule about the adapter's form (DoRA, modules_to_save, rank, targets) is removed by merging the adapter
into the base weights (train_entry's merge), so the target serves merged weights instead. Light module: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Optional

from ..errors import CloudftError
from ..preflight import Finding

if TYPE_CHECKING:
    from train_entry.config import PeftConfig

    from ..handles import RunHandle
    from ..spec import JobSpec, ServeConfig
    from ..stages import Artifact

Engine = Literal["vllm", "transformers"]
#: adapter: the base plus the run's adapter; merged: the adapter merged into the base weights; weights: the full
#: weights a run without PEFT wrote; refused: this target cannot serve the run
Mode = Literal["adapter", "merged", "weights", "refused"]

#: vLLM's --max-lora-rank takes one of these (vllm/config/lora.py: MaxLoRARanks)
MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

VLLM_PEFT = "vLLM vllm/lora/peft_helper.py (PEFTHelper)"
VLLM_LOADER = "vLLM vllm/lora/lora_model.py (LoRAModel.from_local_checkpoint)"
VLLM_RANKS = "vLLM vllm/config/lora.py (LoRAConfig.max_lora_rank: MaxLoRARanks)"
VLLM_TARGETS = "vLLM vllm/lora/utils.py (get_supported_lora_modules: linear layers + the model's embedding_modules)"
VLLM_QLORA = ("vLLM examples/offline_inference/lora_with_quantization_inference.py (QLoRA adapter on a "
              "quantization='bitsandbytes' base); docs.vllm.ai features/quantization/bnb (in-flight: 4-bit only)")
VLLM_LORA_DOCS = "docs.vllm.ai features/lora (LoRA adapters on models implementing SupportsLoRA)"

#: layer names that are not linear projections: vLLM refuses LoRA weights on them ("expected target modules in ...")
#: except embed_tokens/lm_head on models that declare them, a path vLLM is phasing out (lora_extra_vocab_size)
NOT_LINEAR = ("embed", "lm_head", "wte", "wpe", "norm", "ln_")


@dataclass(frozen=True)
class Served:
    """What a deploy of a run would serve: its last stage's artifact, its PEFT settings, whether it wrote merged
    full weights beside the adapter (export.merge)."""

    artifact: "Artifact"
    peft: Optional["PeftConfig"] = None
    merged: bool = False

    @property
    def peft_type(self) -> str:
        return str(self.peft.type) if self.peft is not None else "lora"

    @property
    def lora_family(self) -> bool:
        return self.artifact == "adapter" and self.peft_type in ("lora", "qlora", "dora")

    @property
    def quant_bits(self) -> Optional[int]:
        q = self.peft.quantization if self.peft is not None and self.peft_type == "qlora" else None
        return q.bits if q is not None else None


@dataclass(frozen=True)
class ServeRule:
    """One documented limit of a serving engine: `problem` says what breaks it (None when the run is fine);
    `merge_fixes` tells whether serving merged weights instead removes the problem."""

    id: str
    engines: tuple[Engine, ...]
    source: str
    problem: Callable[[Served], Optional[str]]
    fix: str
    merge_fixes: bool = False


def _reward_model(s: Served) -> Optional[str]:
    if s.artifact == "reward_model":
        return "the run's last stage wrote a reward model (a sequence classifier): it scores text, it does not generate"
    return None


def _prompt_learning(s: Served) -> Optional[str]:
    if s.artifact == "adapter" and s.peft is not None and s.peft.is_prompt_learning:
        return (f"a {s.peft_type} adapter holds learned virtual tokens, not LoRA weights; vLLM loads LoRA adapters "
                "only (its PEFTHelper requires r, lora_alpha and target_modules)")
    return None


def _dora(s: Served) -> Optional[str]:
    if s.lora_family and s.peft_type == "dora":
        return "vLLM does not load DoRA adapters (\"vLLM does not yet support DoRA\")"
    return None


def _modules_to_save(s: Served) -> Optional[str]:
    if s.lora_family and s.peft is not None and s.peft.modules_to_save:
        return (f"vLLM loads adapters only with modules_to_save unset; this one saves "
                f"{', '.join(s.peft.modules_to_save)} in full")
    return None


def _rank(s: Served) -> Optional[str]:
    if s.lora_family and s.peft is not None and s.peft.r > MAX_LORA_RANKS[-1]:
        return f"LoRA rank {s.peft.r} is above vLLM's largest --max-lora-rank ({MAX_LORA_RANKS[-1]})"
    return None


def _targets(s: Served) -> Optional[str]:
    if not s.lora_family or s.peft is None or s.peft.target_modules == "all-linear":
        return None
    odd = [m for m in s.peft.target_modules if any(k in m.lower() for k in NOT_LINEAR)]
    if odd:
        return (f"vLLM applies LoRA to linear layers; target_modules {', '.join(odd)} "
                f"{'is' if len(odd) == 1 else 'are'} not one, so loading fails (\"expected target modules in ...\")")
    return None


TO_TRANSFORMERS = ("serve it with transformers + PEFT: `cloudft deploy RUN --provider local` (or on azure, for runs "
                   "trained there)")

#: every rule, in the order they are reported
RULES: tuple[ServeRule, ...] = (
    ServeRule("serve-reward-model", ("vllm", "transformers"),
              "cloudft/stages.py stage_artifact; train_entry/methods/reward.py (AutoModelForSequenceClassification)",
              _reward_model, "deploy a run whose last stage trains the policy (sft, dpo, orpo, kto or rl)"),
    ServeRule("vllm-prompt-learning", ("vllm",), f"{VLLM_PEFT}; {VLLM_LORA_DOCS}", _prompt_learning,
              TO_TRANSFORMERS + "; prompt-learning adapters cannot be merged into the weights"),
    ServeRule("vllm-dora", ("vllm",), f"{VLLM_PEFT}._validate_features; {VLLM_LOADER}", _dora,
              "serve merged weights", merge_fixes=True),
    ServeRule("vllm-modules-to-save", ("vllm",), f"{VLLM_PEFT}._validate_features", _modules_to_save,
              "serve merged weights, or train without peft.modules_to_save", merge_fixes=True),
    ServeRule("vllm-max-lora-rank", ("vllm",), f"{VLLM_RANKS}; {VLLM_PEFT}.validate_legal", _rank,
              f"serve merged weights, or train with peft.r <= {MAX_LORA_RANKS[-1]}", merge_fixes=True),
    ServeRule("vllm-target-modules", ("vllm",), f"{VLLM_TARGETS}; {VLLM_LOADER} check_unexpected_modules", _targets,
              "serve merged weights, or target linear layers only (e.g. all-linear)", merge_fixes=True),
)


@dataclass(frozen=True)
class ServeTarget:
    """Where a provider serves: its engine, in words, and whether deploy can merge an adapter itself (it needs the
    base weights and the adapter on the machine that runs deploy)."""

    provider: str
    engine: Engine
    label: str
    merges_at_deploy: bool


def local_engine() -> Engine:
    """vLLM when it is installed and this machine has an NVIDIA GPU (checked without importing torch), else the
    transformers server."""
    import importlib.util

    from ..machine import this_machine

    if importlib.util.find_spec("vllm") is None:
        return "transformers"
    return "vllm" if this_machine().has_cuda else "transformers"


def serve_target(provider: str) -> ServeTarget:
    """The serving target of `provider` (for local: what this machine has)."""
    if provider == "aws":
        return ServeTarget("aws", "vllm", "SageMaker endpoint, Hugging Face vLLM image", merges_at_deploy=False)
    if provider == "azure":
        return ServeTarget("azure", "transformers", "Azure ML online endpoint, score.py (transformers + PEFT)",
                           merges_at_deploy=False)
    if provider == "local":
        engine = local_engine()
        label = "this machine, vLLM (GPU)" if engine == "vllm" else "this machine, transformers + PEFT server"
        return ServeTarget("local", engine, label, merges_at_deploy=True)
    raise CloudftError(f"unknown provider '{provider}'", hint="use one of local, aws, azure")


def lora_rank_cap(rank: int) -> int:
    """The --max-lora-rank for an adapter of `rank`: the smallest value vLLM accepts that holds it."""
    return next((r for r in MAX_LORA_RANKS if r >= rank), MAX_LORA_RANKS[-1])


@dataclass(frozen=True)
class ServeDecision:
    """How one target serves one run: the mode, and the findings behind it (errors when refused, warnings when it
    works around a rule, infos for settings), each with its rule and source."""

    target: ServeTarget
    mode: Mode
    findings: tuple[Finding, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return self.mode == "refused"

    def summary(self) -> str:
        """One line: what the target serves."""
        engine = "vLLM" if self.target.engine == "vllm" else "transformers"
        if self.mode == "adapter":
            how = "as a vLLM LoRA module" if self.target.engine == "vllm" else "with PEFT"
            extra = "".join(f", {k} {v}" for k, v in self.settings.items())
            return f"the adapter on the base model, {how}{extra}"
        if self.mode == "merged":
            return f"merged weights (adapter merged into the base) with {engine}"
        if self.mode == "weights":
            return f"the run's full weights with {engine}"
        return "nothing: deploy refuses (reasons below)"

    def to_dict(self) -> dict:
        return {"provider": self.target.provider, "engine": self.target.engine, "target": self.target.label,
                "mode": self.mode, "serves": self.summary(), "settings": dict(self.settings),
                "findings": [f.to_dict() for f in self.findings]}

    def raise_if_refused(self, run_id: str) -> None:
        """A CloudftError naming every reason and fix, before deploy creates anything."""
        if not self.refused:
            return
        errors = [f for f in self.findings if f.severity == "error"]
        lines = "\n  ".join(f"{f.message}\n    rule {f.rule} ({f.source})" for f in errors)
        fixes = "; or ".join(dict.fromkeys(f.fix for f in errors if f.fix)).replace("deploy RUN", f"deploy {run_id}")
        raise CloudftError(f"{self.target.label} cannot serve run {run_id}; nothing was created:\n  {lines}",
                           hint=fixes or None)


def decide(target: ServeTarget, served: Served) -> ServeDecision:
    """Apply the target engine's rules to what the run wrote."""
    hits = [(r, msg) for r in RULES if target.engine in r.engines and (msg := r.problem(served))]
    notes = _notes(target, served)
    if not hits and served.merged and served.lora_family:
        found = Finding("serve-merged", "info", "the run writes merged weights (export.merge): they are served "
                        "instead of base + adapter (no adapter overhead per token)",
                        source="train_entry/export.py merge_adapter")
        return ServeDecision(target, "merged", (found, *_quant_merge_note(served)))
    if not hits:
        mode: Mode = "weights" if served.artifact == "full_weights" else "adapter"
        settings = _settings(target, served) if mode == "adapter" else {}
        return ServeDecision(target, mode, tuple(notes), settings)
    if all(r.merge_fixes for r, _ in hits) and served.lora_family:
        if served.merged or target.merges_at_deploy:
            where = "the merged weights the run wrote (export.merge)" if served.merged else \
                "merged weights (deploy merges the adapter into the base here, with train_entry's merge)"
            found = [Finding(r.id, "warning", f"{msg}: serves {where} instead", source=r.source) for r, msg in hits]
            return ServeDecision(target, "merged", tuple(found + _quant_merge_note(served)))
        fix = ("set `export: {merge: true}` in the spec so the training job also writes merged weights (a run "
               f"trained without it must be trained again); or {TO_TRANSFORMERS}")
        found = [Finding(r.id, "error", msg, fix=fix, field="export.merge", source=r.source) for r, msg in hits]
        return ServeDecision(target, "refused", tuple(found))
    found = [Finding(r.id, "error", msg, fix=r.fix, source=r.source) for r, msg in hits]
    return ServeDecision(target, "refused", tuple(found))


def _settings(target: ServeTarget, served: Served) -> dict[str, str]:
    """Engine settings the adapter needs (vLLM: its LoRA rank cap, and the QLoRA base quantization)."""
    if target.engine != "vllm" or not served.lora_family or served.peft is None:
        return {}
    out = {"max_lora_rank": str(lora_rank_cap(served.peft.r))}
    if served.quant_bits == 4:
        out["quantization"] = "bitsandbytes"
    return out


def _notes(target: ServeTarget, served: Served) -> list[Finding]:
    """What the user should know about a target that serves the run (base quantization of QLoRA adapters)."""
    bits = served.quant_bits
    if bits is None or served.artifact != "adapter":
        return []
    if target.engine == "vllm" and bits == 4:
        return [Finding("vllm-qlora-base", "info", "QLoRA adapter: vLLM quantizes the base to 4-bit with "
                        "bitsandbytes, as in training", source=VLLM_QLORA)]
    if target.engine == "vllm":
        return [Finding("vllm-qlora-base", "warning", "QLoRA adapter trained on an 8-bit base: vLLM quantizes in "
                        "flight to 4-bit only, so it serves the adapter on the 16-bit base (answers can differ "
                        "slightly from training-time evaluation)", source=VLLM_QLORA)]
    return [Finding("transformers-qlora-base", "info", f"QLoRA adapter trained on a {bits}-bit base: this server "
                    "loads the base unquantized (answers can differ slightly from training-time evaluation)",
                    source="templates/azure/score.py, cloudft/serving/textgen.py")]


def _quant_merge_note(served: Served) -> list[Finding]:
    if served.quant_bits is None:
        return []
    return [Finding("merge-qlora-base", "info", "merging a QLoRA adapter uses the unquantized base weights, not the "
                    f"{served.quant_bits}-bit ones it was trained on", source="train_entry/export.py merge_adapter")]


def served_by_spec(spec: "JobSpec", produces: "Artifact") -> Served:
    """What deploying a run of `spec` whose last stage writes `produces` would serve."""
    return Served(artifact=produces, peft=spec.peft, merged=bool(spec.export.merge))


def check_run(provider: str, handle: "RunHandle", run_id: str) -> tuple[ServeDecision, Served]:
    """How `provider` serves the run behind `handle`; raises (before deploy creates anything) when it cannot."""
    served = Served(artifact=handle.artifact or "adapter", peft=handle.peft, merged=handle.merged)
    decision = decide(serve_target(provider), served)
    decision.raise_if_refused(run_id)
    return decision, served


def plan_serving(spec: "JobSpec", produces: "Artifact") -> tuple[ServeDecision, ...]:
    """The plan's serving section: how each provider would serve a run of `spec`."""
    served = served_by_spec(spec, produces)
    return tuple(decide(serve_target(p), served) for p in ("local", "aws", "azure"))


# -- vLLM settings shared by the SageMaker container and a local vLLM server -----------------------------------

def vllm_flags(decision: ServeDecision, served: Served, limits: "ServeConfig", *, model: str, name: str,
               adapter: Optional[str] = None, base_name: Optional[str] = None) -> dict[str, str]:
    """vLLM server flags (without dashes) that serve `decision`: `model` is the base model (adapter mode) or the
    weights folder; the adapter is the LoRA module `name`, merged/full weights are served as `name`."""
    flags: dict[str, str] = {"model": model}
    if decision.mode == "adapter":
        if base_name:
            flags["served-model-name"] = base_name
        flags.update({"enable-lora": "true", "lora-modules": f"{name}={adapter}",
                      "max-lora-rank": decision.settings.get("max_lora_rank", "16"), "max-loras": "1"})
        if "quantization" in decision.settings:
            flags["quantization"] = decision.settings["quantization"]
    else:
        flags["served-model-name"] = name
    if limits.max_prompt_tokens:  # vLLM refuses prompt + max_tokens above max_model_len
        flags["max-model-len"] = str(limits.max_prompt_tokens + limits.max_new_tokens)
    return flags


def sagemaker_env(flags: dict[str, str]) -> dict[str, str]:
    """The flags as the SageMaker vLLM container reads them: SM_VLLM_<FLAG> (dashes become underscores)."""
    return {f"SM_VLLM_{k.upper().replace('-', '_')}": v for k, v in flags.items()}


def vllm_command(flags: dict[str, str], host: str, port: int) -> list[str]:
    """`python -m vllm.entrypoints.openai.api_server` with the flags ("true" is a bare switch)."""
    import sys

    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", host, "--port", str(port)]
    for key, value in flags.items():
        argv += [f"--{key}"] if value == "true" else [f"--{key}", value]
    return argv
