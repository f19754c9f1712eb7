"""The provider-neutral job spec (YAML → pydantic).

The training sections (`peft`, `data`, `training`, `tracking`, `eval`, `export`) are the run-config models
from `train_entry.config`, so a field has one name and one definition from the YAML to the container.
Provider sections (`aws:`, `azure:`) stay raw here and are validated by the provider that is used,
with the same file:line:col errors (`JobSpec.provider_section`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Optional, Type, TypeVar, Union

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from train_entry.config import (
    DataConfig,
    EvalConfig,
    ExportConfig,
    Method,
    PeftConfig,
    StrictModel,
    TrackingConfig,
    TrainingConfig,
)

from .errors import Problem, SpecError
from .yamlio import LocatedDoc, load_file, load_text

M = TypeVar("M", bound=BaseModel)


class ComputeConfig(StrictModel):
    """What to run on. Empty fields are filled by the planner."""

    instance_type: Optional[str] = Field(None, description="Provider instance/VM size, e.g. ml.g5.2xlarge.")
    gpu: Optional[str] = Field(None, description="GPU hint when no instance_type: T4, A10G, L4, L40S, A100, H100.")
    gpus_per_node: Optional[int] = Field(None, ge=1, description="GPUs (processes) per node.")
    instance_count: int = Field(1, ge=1, le=64)
    spot: bool = Field(False, description="Use spot / low-priority capacity (train_entry resumes).")
    max_runtime_hours: float = Field(24.0, gt=0, le=28 * 24)
    volume_gb: int = Field(100, ge=1, le=16384)


class BudgetConfig(StrictModel):
    """Limits checked by `cloudft submit` before anything is started."""

    max_cost_usd: Optional[float] = Field(None, gt=0)
    max_hours: Optional[float] = Field(None, gt=0)


class OutputsSpec(StrictModel):
    """Where runs write. Local runs go under `dir`; cloud runs under the provider's bucket/datastore."""

    dir: str = Field("runs", description="Local directory for local runs (relative to the spec file).")


#: the prompt limit of the transformers servers when the spec sets none
DEFAULT_MAX_PROMPT_TOKENS = 4096


class ServeConfig(StrictModel):
    """Limits of what `cloudft deploy` serves: each request asking for more gets HTTP 400 with the reason.

    The local transformers server and the Azure scoring script enforce both (and the model's context); vLLM
    (SageMaker, local with a GPU) gets `max_model_len` = prompt + answer when max_prompt_tokens is set, else its
    own limit, the model's context (vLLM has no separate cap on the answer)."""

    max_new_tokens: int = Field(512, ge=1, le=32768, description="Most tokens one request may generate.")
    max_prompt_tokens: Optional[int] = Field(
        None, ge=1, le=1048576, description=f"Longest prompt, in tokens (unset: {DEFAULT_MAX_PROMPT_TOKENS} on "
                                            "transformers servers, the model's context on vLLM).")

    @property
    def prompt_cap(self) -> int:
        """The prompt limit a transformers server enforces."""
        return self.max_prompt_tokens or DEFAULT_MAX_PROMPT_TOKENS


class StageSpec(StrictModel):
    """One stage of a multi-stage spec. Unset sections inherit the top level."""

    method: Method
    data: Optional[DataConfig] = None
    training: Optional[dict[str, Any]] = Field(None, description="Overrides of the top-level training section.")

    def training_overrides(self) -> dict[str, Any]:
        """The training fields this stage sets (on top of the top-level `training:` section)."""
        return dict(self.training or {})

    @field_validator("training")
    @classmethod
    def _training_keys(cls, v: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
        if v is not None:
            unknown = set(v) - set(TrainingConfig.model_fields)
            if unknown:
                raise ValueError(f"unknown training field(s): {', '.join(sorted(unknown))}")
        return v


class JobSpec(StrictModel):
    """A fine-tuning job: what model, which method, what data, how to train, where to run."""

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9-]{0,47}$",
                      description="Lowercase letters, digits and dashes (used in cloud job names).")
    base_model: str = Field(..., description="Hugging Face hub id or a local directory.")
    method: Method = Field(Method.sft, description="Training method for single-stage specs.")
    stages: Optional[list[Union[Method, StageSpec]]] = Field(
        None, description="Multi-stage: e.g. [sft, dpo]; each stage starts from the previous stage's adapter."
    )
    peft: PeftConfig = Field(default_factory=PeftConfig)
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    outputs: OutputsSpec = Field(default_factory=OutputsSpec)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="ENV_NAME: reference (Secrets Manager ARN/name, Key Vault secret name, or env:VAR). Never a value.",
    )
    aws: Optional[dict[str, Any]] = Field(None, description="AWS settings; validated when --provider aws is used.")
    azure: Optional[dict[str, Any]] = Field(None, description="Azure settings; validated when --provider azure.")

    # Not part of the YAML: where the spec came from (for relative paths and error messages).
    _source: Optional[LocatedDoc] = None

    @model_validator(mode="after")
    def _stage_rules(self) -> "JobSpec":
        if self.stages:
            methods = [s if isinstance(s, str) else s.method for s in self.stages]
            if "rl" in methods and "reward" not in methods[: methods.index("rl")]:
                raise ValueError("an 'rl' stage needs a 'reward' stage before it (the reward model it trains against)")
        return self

    @field_validator("secrets")
    @classmethod
    def _secret_refs(cls, v: dict[str, str]) -> dict[str, str]:
        for name, ref in v.items():
            if not name.isidentifier() or not name.isupper():
                raise ValueError(f"secret name '{name}' must be an UPPER_CASE environment variable name")
            if not (ref.startswith(("arn:aws:secretsmanager:", "secretsmanager:", "keyvault:", "env:"))):
                raise ValueError(
                    f"secret '{name}' must be a reference (arn:aws:secretsmanager:..., secretsmanager:NAME, "
                    "keyvault:NAME or env:VAR), never the value itself"
                )
        return v

    # -- derived views -------------------------------------------------------------------------
    @property
    def source_path(self) -> Optional[Path]:
        return Path(self._source.path) if self._source else None

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the spec are relative to."""
        return self.source_path.parent.resolve() if self.source_path else Path.cwd()

    def stage_list(self) -> list[StageSpec]:
        """The stages to run, resolved: a single-stage spec is one stage of `method`."""
        if not self.stages:
            return [StageSpec(method=self.method)]
        return [StageSpec(method=s) if isinstance(s, str) else s for s in self.stages]

    def problem(self, loc: tuple, message: str, fix: Optional[str] = None) -> Problem:
        """A Problem located at `loc` in the spec file (for checks made after loading, e.g. by a provider)."""
        if self._source is not None:
            return self._source.problem(loc, message, fix)
        return Problem("<spec>", None, None, ".".join(str(p) for p in loc), message, fix)

    def provider_section(self, provider: str, model: Type[M]) -> M:
        """Validate the `aws:`/`azure:` section with the provider's model, errors located in the YAML."""
        raw = getattr(self, provider) or {}
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise SpecError(_problems(exc, self._source, prefix=(provider,), model=model)) from None


# -- loading ---------------------------------------------------------------------------------------

def _model_at(model: Type[BaseModel], loc: tuple) -> Optional[Type[BaseModel]]:
    """Walk `loc` through nested pydantic models to find the model that owns the last key."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        nxt = None
        for cand in _flatten(ann):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                nxt = cand
                break
        current = nxt
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _flatten(ann: Any) -> list:
    args = getattr(ann, "__args__", None)
    if not args:
        return [ann]
    out = []
    for a in args:
        out.extend(_flatten(a))
    return out


def _clean_loc(loc: tuple) -> tuple:
    # pydantic inserts union member names (e.g. 'StageSpec', 'function-after[...]') into locs.
    return tuple(p for p in loc if isinstance(p, int) or not (p[:1].isupper() or "[" in p))


def _problems(exc: ValidationError, doc: Optional[LocatedDoc], prefix: tuple = (),
              model: Type[BaseModel] = None) -> list[Problem]:
    model = model or JobSpec
    problems: list[Problem] = []
    seen = set()
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]))
        full = prefix + loc
        msg = err["msg"]
        fix = None
        kind = err["type"]
        if kind == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            known = list(owner.model_fields) if owner else []
            guess = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            msg = f"unknown key '{loc[-1]}'"
            fix = f"did you mean '{guess[0]}'?" if guess else (f"allowed keys: {', '.join(known)}" if known else None)
        elif kind == "missing":
            msg = "required field is missing"
            fix = f"add '{loc[-1]}:' here"
        elif kind in ("enum", "literal_error"):
            expected = err.get("ctx", {}).get("expected")
            fix = f"use one of {expected}" if expected else None
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        key = (full, msg)
        if key in seen:
            continue
        seen.add(key)
        if doc is not None:
            line, col = doc.where(full) if kind in ("extra_forbidden", "missing") else doc.value_where(full)
            path = doc.path
        else:
            line = col = None
            path = "<spec>"
        problems.append(Problem(path, line, col, ".".join(str(p) for p in full) or "(top level)", msg, fix))
    return problems


def _validate_doc(doc: LocatedDoc) -> JobSpec:
    try:
        spec = JobSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecError(_problems(exc, doc)) from None
    spec._source = doc
    return spec


def load_spec(path: Union[str, Path]) -> JobSpec:
    """Load and validate a job spec file. Raises SpecError (file:line:col for each problem)."""
    return _validate_doc(load_file(path))


def load_spec_text(text: str, path: str = "<string>") -> JobSpec:
    """Like load_spec, for YAML text (tests, stdin)."""
    return _validate_doc(load_text(text, path))


def json_schema() -> dict[str, Any]:
    """JSON Schema of the job spec, for editors (yaml-language-server) and docs."""
    schema = JobSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cloudft job spec"
    return schema
