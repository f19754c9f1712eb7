"""The provider-neutral job spec (YAML → pydantic).

The training sections (`peft`, `data`, `training`, `tracking`, `eval`, `export`) are the run-config models
from `train_entry.config`, so a field has one name and one definition from the YAML to the container.
Provider sections (`aws:`, `azure:`) stay raw here and are validated by the provider that is used,
with the same file:line:col errors (`JobSpec.provider_section`).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Optional, Type, TypeVar, Union

from pydantic import (AfterValidator, BaseModel, Field, PlainSerializer, ValidationError, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from train_entry.config import (
    ENV_NAME,
    FSDP_ONLY_FIELDS,
    DataConfig,
    DistributionSettings,
    EvalConfig,
    ExportConfig,
    Method,
    PeftConfig,
    StrictModel,
    Text,
    TrackingConfig,
    TrainingConfig,
)

from .capabilities import CAPABILITIES
from .errors import Problem, SpecError
from .yamlio import LocatedDoc, load_file, load_text

M = TypeVar("M", bound=BaseModel)


class ComputeConfig(StrictModel):
    """What to run on. Empty fields are filled by the planner."""

    instance_type: Optional[Text] = Field(None, description="Provider instance/VM size, e.g. ml.g5.2xlarge.")
    gpu: Optional[Text] = Field(None, description="GPU hint when no instance_type: T4, A10G, L4, L40S, A100, H100.")
    gpus_per_node: Optional[int] = Field(None, ge=1, le=64, description="GPUs (processes) per node.")
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

    dir: Text = Field("runs", description="Local directory for local runs (relative to the spec file).")


def _set_fields(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(exclude_unset=True)


#: A stage's `training:` overrides: validated as a TrainingConfig (types, ranges, located errors), kept as the
#: dict of the keys the stage sets, so unset keys inherit the top level (`JobSpec.stage_training`).
TrainingOverrides = Annotated[TrainingConfig, AfterValidator(_set_fields), PlainSerializer(dict)]


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
    """One stage of a multi-stage spec. Unset sections inherit the top level.

    `training` is None or a dict of the training keys this stage sets (values validated and converted by
    TrainingConfig's rules); `JobSpec.stage_training(i)` gives the merged TrainingConfig."""

    method: Method
    data: Optional[DataConfig] = None
    training: Optional[TrainingOverrides] = Field(
        None, description="Overrides of the top-level training section (keys left out inherit it).")

    def training_overrides(self) -> dict[str, Any]:
        """The training fields this stage sets (on top of the top-level `training:` section)."""
        return dict(self.training or {})


class JobSpec(StrictModel):
    """A fine-tuning job: what model, which method, what data, how to train, where to run."""

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9-]{0,47}$",
                      description="Lowercase letters, digits and dashes (used in cloud job names).")
    base_model: Text = Field(..., description="Hugging Face hub id or a local directory.")
    method: Method = Field(Method.sft, description="Training method for single-stage specs.")
    stages: Optional[list[Union[Method, StageSpec]]] = Field(
        None, description="Multi-stage: e.g. [sft, dpo]; each stage starts from the previous stage's output (its "
                          "adapter, or its full weights with peft.type: none)."
    )
    peft: PeftConfig = Field(default_factory=PeftConfig)
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    distributed: DistributionSettings = Field(
        default_factory=DistributionSettings,
        description="How several GPUs share the work: strategy auto | ddp | fsdp, and FSDP's sharding scope, CPU "
                    "offload and checkpoint format (the run config's `distributed` section).")
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
            for i in range(len(self.stages)):
                try:  # the merge must hold too (rules that span several fields)
                    self._merged_training(i)
                except ValidationError as exc:
                    err = exc.errors()[0]
                    at = ("stages", i, "training") + tuple(_clean_loc(tuple(err["loc"])))
                    raise PydanticCustomError("stage_training", "{message}",
                                              {"message": _message(err), "at": at}) from None
        return self

    @model_validator(mode="after")
    def _prompt_learning_is_not_sharded(self) -> "JobSpec":
        if self.distributed.strategy == "fsdp" and self.peft.is_prompt_learning:
            raise PydanticCustomError(
                "unshardable", "{message}",
                {"message": f"peft.type {self.peft.type} with distributed.strategy fsdp: prompt-learning methods "
                            "cannot be sharded (their virtual-token encoder sits outside the decoder layers FSDP "
                            "wraps); they train few parameters: use strategy ddp or auto",
                 "at": ("distributed", "strategy")})
        return self

    @field_validator("distributed")
    @classmethod
    def _fsdp_settings_need_fsdp(cls, v: DistributionSettings) -> DistributionSettings:
        if v.strategy == "ddp":
            for name in FSDP_ONLY_FIELDS:
                if name in v.model_fields_set:
                    raise PydanticCustomError(
                        "fsdp_only", "{message}",
                        {"message": f"distributed.{name} applies to strategy fsdp only; with ddp every GPU holds "
                                    "the whole model (remove it, or set strategy: fsdp or auto)",
                         "at": ("distributed", name)})
        return v

    @field_validator("secrets")
    @classmethod
    def _secret_refs(cls, v: dict[str, str]) -> dict[str, str]:
        for name, ref in v.items():
            try:
                _check_secret(name, ref)
            except ValueError as exc:  # located at the secret's own line
                raise PydanticCustomError("secret", "{message}", {"message": str(exc), "at": ("secrets", name)})
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

    def stage_training(self, index: int) -> TrainingConfig:
        """Stage `index`'s training settings: the top-level section with the stage's overrides on top."""
        try:
            return self._merged_training(index)
        except ValidationError as exc:
            raise SpecError(_problems(exc, self._source, prefix=("stages", index, "training"),
                                      model=TrainingConfig)) from None

    def _merged_training(self, index: int) -> TrainingConfig:
        overrides = self.stage_list()[index].training_overrides()
        if not overrides:
            return self.training
        return TrainingConfig.model_validate({**self.training.model_dump(), **overrides})

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


# -- secrets ---------------------------------------------------------------------------------------

#: Names a secret may not take: the child process would lose its PATH, its Python or its distributed setup.
RESERVED_ENV = {"PATH", "HOME", "USER", "SHELL", "PWD", "LANG", "TMPDIR", "PYTHONPATH", "PYTHONHOME",
                "PYTHONUNBUFFERED", "LD_PRELOAD", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "RANK", "LOCAL_RANK",
                "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"}
RESERVED_ENV_PREFIXES = ("CLOUDFT_", "SM_", "AZUREML_", "TORCHELASTIC_", "NCCL_")

#: Secrets Manager secret names: "ASCII letters, numbers, and /_+=.@-" (CreateSecret API reference).
_SM_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
#: Reference kinds: every prefix some provider resolves (capabilities.py), each with the one check of its form
#: (`_check_reference`, shared with the job's launcher where it has one).
SECRET_REFS = tuple(dict.fromkeys(ref for caps in CAPABILITIES.values() for ref in caps.secret_refs))


def _check_reference(kind: str, ref: str) -> None:
    """ValueError when `ref` is not a well-formed reference of `kind`."""
    body = ref[len(kind):]
    if kind == "env:":
        if not ENV_NAME.fullmatch(body):
            raise ValueError(f"'{ref}': write env:VAR, a variable of the environment that runs `cloudft submit`")
    elif kind == "keyvault:":  # the launcher's and the scoring script's own rule
        from .providers.azure.keyvault import secret_name

        secret_name(body)
    else:  # Secrets Manager: the launcher's parser (NAME or ARN, optionally :json_key), then the name's characters
        from .providers.aws.staging import launcher_module

        secret_id, _ = launcher_module().parse_ref(ref)
        parts = secret_id.split(":")
        if secret_id.startswith("arn:") and not re.fullmatch(r"\d{12}", parts[4]):
            raise ValueError(f"'{ref}': the account in a secret ARN is 12 digits")
        if not _SM_NAME.fullmatch(parts[-1]):
            raise ValueError(f"'{ref}': a Secrets Manager name takes letters, digits and /_+=.@- only")


def _check_secret(name: str, ref: str) -> None:
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
        raise ValueError(f"secret name '{name}' must be an UPPER_CASE environment variable name (A-Z, 0-9, _)")
    if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
        raise ValueError(f"secret name '{name}' would replace a variable the run itself needs; choose another name")
    kind = next((k for k in SECRET_REFS if ref.startswith(k)), None)
    if kind is None:
        raise ValueError(
            f"secret '{name}' must be a reference (arn:aws:secretsmanager:..., secretsmanager:NAME, "
            "keyvault:NAME or env:VAR), never the value itself"
        )
    try:
        _check_reference(kind, ref)
    except ValueError as exc:
        raise ValueError(f"secret '{name}': {exc}") from None


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
    return tuple(p for p in loc if not _is_tag(p))


def _message(err: dict) -> str:
    msg = err["msg"]
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg


def _choices(expected: str) -> list[str]:
    """The allowed values in pydantic's `expected` text: "'none', 'lora' or 'qlora'" or "4 or 8"."""
    quoted = re.findall(r"'((?:[^'\\]|\\.)*)'", expected)
    return quoted or [c.strip() for c in re.split(r",| or ", expected) if c.strip()]


def _choice_problem(err: dict) -> tuple[str, str]:
    """Message and fix for a value outside an enum/literal: echo it, suggest the closest allowed value."""
    expected = err.get("ctx", {}).get("expected", "")
    choices = _choices(expected)
    bad = err.get("input")
    shown = str(bad).lower() if isinstance(bad, bool) else repr(bad)  # YAML's true/false, not Python's
    guess = difflib.get_close_matches(str(bad).lower(), choices, n=1, cutoff=0.5) if isinstance(bad, (str, int)) \
        else []
    fix = f"did you mean '{guess[0]}'? (one of {expected})" if guess else f"use one of {expected}"
    return f"{shown} is not allowed here", fix


def _is_tag(part: Any) -> bool:
    # pydantic inserts union member names (e.g. 'StageSpec', 'function-after[...]') into locs.
    return isinstance(part, str) and (part[:1].isupper() or "[" in part)


_SHAPES = {"model_type": "a mapping", "dict_type": "a mapping", "list_type": "a list"}


def _union_errors(errors: list[dict]) -> list[dict]:
    """One message per value written, not one per union member it failed (`stages: [sftt]` fails both
    'a method name' and 'a stage mapping'). Errors inside a member's value win (the shape was right, the
    contents wrong); otherwise the member that names allowed values speaks, and the shapes also allowed are
    added to its fix (`or a mapping`)."""
    out: list[dict] = []
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        cut = next((i for i, p in enumerate(loc) if _is_tag(p)), None)
        if cut is None:
            out.append(err)
        else:
            groups.setdefault(loc[:cut], []).append((cut, err))
    for items in groups.values():
        if len(items) == 1:
            out.append(items[0][1])
            continue
        inner = [e for cut, e in items if len(e["loc"]) > cut + 1]
        if inner:
            out.extend(inner)
            continue
        shapes = sorted({_SHAPES[e["type"]] for _, e in items if e["type"] in _SHAPES})
        # a member that refuses the value for its shape (a mapping is not a method name) has nothing to say
        rest = [e for _, e in items if e["type"] not in _SHAPES
                and not (e["type"] in ("enum", "literal_error") and isinstance(e.get("input"), (dict, list)))]
        rest = rest or [items[0][1]]
        for err in rest:
            out.append(dict(err, also=shapes))
    return out


def _field_fix(model: Type[BaseModel], loc: tuple) -> Optional[str]:
    """What the field takes, from its definition: its range and default ("from 0 to 4294967295; default 42")."""
    names = [p for p in loc if isinstance(p, str)]
    owner = _model_at(model, tuple(loc[:-1])) if names and names[-1] == loc[-1] else None
    field = owner.model_fields.get(loc[-1]) if owner else None
    if field is None:
        return None
    low = high = None
    for m in field.metadata:
        for attr, side in (("ge", ">="), ("gt", ">")):
            if getattr(m, attr, None) is not None:
                low = f"{side} {getattr(m, attr)}"
        for attr, side in (("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                high = f"{side} {getattr(m, attr)}"
    if any(isinstance(a, type) and issubclass(a, BaseModel) for a in (field.annotation, *_flatten(field.annotation))):
        return None  # a section: the message says what to change in it
    parts = [f"allowed: {' and '.join(p for p in (low, high) if p)}"] if (low or high) else []
    if not field.is_required():
        default = field.get_default(call_default_factory=True)
        if default is None:
            parts.append("leave it out to have none")
        elif isinstance(default, (int, float, str)) and not isinstance(default, bool):
            parts.append(f"default {default!r}")
    return "; ".join(parts) or None


def _problems(exc: ValidationError, doc: Optional[LocatedDoc], prefix: tuple = (),
              model: Type[BaseModel] = None) -> list[Problem]:
    model = model or JobSpec
    problems: list[Problem] = []
    seen = set()
    for err in _union_errors(exc.errors()):
        loc = tuple(err.get("ctx", {}).get("at") or _clean_loc(tuple(err["loc"])))
        full = prefix + loc
        msg = _message(err)
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
            msg, fix = _choice_problem(err)
        elif kind == "finite_number":
            msg = "must be a finite number (.inf, .nan and values beyond 1.8e308 are refused)"
        elif kind == "string_too_short" and err.get("ctx", {}).get("min_length") == 1:
            msg = "must not be empty"
        if err.get("also"):
            fix = f"{fix or 'use an allowed value'}, or {' or '.join(err['also'])}"
        fix = fix or _field_fix(model, loc)
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
