"""The run-config schema: the one file every provider writes and train_entry reads.

This module is light on purpose (pydantic only, no torch): `cloudft` imports these models to build
its job spec, so a field keeps the same name from the YAML spec to the run config.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt,
                      StringConstraints, field_validator, model_validator)

RUN_CONFIG_SCHEMA_VERSION = 1
#: Largest integer any field takes (a signed 64-bit value): what torch, numpy and JSON readers can all hold.
MAX_INT = 2**63 - 1
#: Step counts (max_steps, save_steps, ...): transformers keeps them in int32 tensors in places.
MAX_STEPS = 2**31 - 1


def _kinds(annotation: Any) -> set:
    """The scalar kinds a field accepts: {bool}, {int, float}, {str}, ... (containers and models → {object})."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _kinds(args[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_kinds(a) for a in args))
    if origin is Literal:
        return {type(a) for a in args}
    if annotation is type(None):
        return {type(None)}
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {str}
    if annotation in (bool, int, float, str):
        return {annotation}
    return {object}


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def plain_value(value: Any, annotation: Any) -> Any:
    """Refuse what pydantic's lax mode would quietly convert: true/false for a number, 1/"yes" for a boolean,
    quoted text for a number, integers beyond 64 bits and NUL characters (they break paths and job names)."""
    kinds = _kinds(annotation) - {type(None)}
    numeric = bool(kinds & {int, float})
    if isinstance(value, bool):
        if bool not in kinds and numeric:
            raise ValueError(f"{str(value).lower()} is a boolean; this field needs a number")
    elif kinds == {bool} and value is not None:
        raise ValueError(f"{value!r} is not a boolean; write true or false")
    elif isinstance(value, int) and abs(value) > MAX_INT:
        raise ValueError(f"a {len(str(abs(value)))}-digit integer is out of range (at most {MAX_INT:,} in size)")
    elif isinstance(value, str) and numeric and str not in kinds:
        hint = " (remove the quotes: quoted, it is text)" if _is_number_text(value) else ""
        wanted = "an integer (a whole number)" if float not in kinds else "a number"
        raise ValueError(f"this field needs {wanted}, got the text {value!r}{hint}")
    if _has_nul(value):
        raise ValueError("the text contains a NUL character (\\0)")
    return value


def _is_number_text(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


#: Longest name, id or path a field takes, and longest part of a path between slashes (NAME_MAX on Linux, macOS
#: and Windows: 255): a longer one fails every file system call with "File name too long".
MAX_TEXT, MAX_PATH_PART = 1024, 255


def _text(value: str) -> str:
    """A name, id or path: not blank, no surrounding spaces, no control characters, not too long for a path."""
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > MAX_TEXT:
        raise ValueError(f"is {len(value):,} characters long; at most {MAX_TEXT:,}")
    if any(len(part.encode()) > MAX_PATH_PART for part in re.split(r"[/\\]", value)):
        raise ValueError(f"has a part between slashes longer than {MAX_PATH_PART} bytes (too long for a file name)")
    if re.match(r"~[^/\\]", value):  # pathlib raises RuntimeError where there is no such user
        raise ValueError(f"{value!r}: '~name' means another user's home, which differs from machine to machine; "
                         "write the full path (or ~/ for your own home)")
    if value != value.strip():
        raise ValueError(f"{value!r} has spaces at the start or end")
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError(f"{value!r} contains a control character (tab, newline, ...)")
    return value


def _prose(value: str) -> str:
    """Free text (a prompt): anything but blank."""
    if not value.strip():
        raise ValueError("must not be empty")
    return value


#: An environment variable name as a secret's name or an `env:` reference (POSIX: letters, digits, underscore).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: A name, id or path (base_model, data files, directories, module names).
Text = Annotated[str, StringConstraints(min_length=1), AfterValidator(_text)]
#: Free text that must say something (prompts).
Prose = Annotated[str, StringConstraints(min_length=1), AfterValidator(_prose)]


class StrictModel(BaseModel):
    """Base for every spec/run-config section: unknown keys are errors, floats are finite, booleans and numbers
    are kept apart (`plain_value`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=True, validate_default=True,
                              allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain(cls, value: Any, info: Any) -> Any:
        field = cls.model_fields.get(info.field_name)
        return plain_value(value, field.annotation) if field is not None else value


class Method(str, Enum):
    """Training methods train_entry knows."""

    sft = "sft"
    dpo = "dpo"
    orpo = "orpo"
    kto = "kto"
    reward = "reward"
    rl = "rl"


PREFERENCE_METHODS = {"dpo", "orpo"}


class PeftType(str, Enum):
    none = "none"
    lora = "lora"
    qlora = "qlora"
    dora = "dora"
    prefix = "prefix"
    prompt = "prompt"
    p_tuning = "p_tuning"


class QuantizationConfig(StrictModel):
    """bitsandbytes settings used by `peft.type: qlora`."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"


class PeftConfig(StrictModel):
    """Parameter-efficient fine-tuning settings. `type: none` is full fine-tuning."""

    type: PeftType = PeftType.lora
    # LoRA family (lora, qlora, dora)
    r: int = Field(16, ge=1, le=4096, description="LoRA rank.")
    alpha: int = Field(32, ge=1, le=65536, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: Union[Annotated[list[Text], Field(min_length=1)], Literal["all-linear"]] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear'."
    )
    modules_to_save: Optional[list[Text]] = None
    quantization: Optional[QuantizationConfig] = Field(
        None, description="bitsandbytes quantization; defaults to NF4 + double quant for qlora."
    )
    # Prompt-learning family (prefix, prompt, p_tuning)
    num_virtual_tokens: int = Field(20, ge=1, le=2048)
    prompt_tuning_init_text: Optional[Prose] = Field(
        None, description="prompt tuning: initialise the virtual tokens from this text."
    )
    encoder_hidden_size: int = Field(128, ge=1, le=65536, description="p_tuning prompt-encoder width.")
    encoder_reparameterization_type: Literal["MLP", "LSTM"] = "MLP"
    prefix_projection: bool = Field(False, description="prefix tuning: reparameterise through an MLP.")

    @model_validator(mode="after")
    def _qlora_defaults(self) -> "PeftConfig":
        if self.type == PeftType.qlora.value and self.quantization is None:
            object.__setattr__(self, "quantization", QuantizationConfig())
        return self

    @property
    def is_prompt_learning(self) -> bool:
        return self.type in ("prefix", "prompt", "p_tuning")


class DataFormat(str, Enum):
    """Source formats `cloudft data` reads (cloudft/data/formats: one module per format family, docs/data.md).

    train_entry itself reads the canonical ones (prompt_completion, messages, text, preference, kto)."""

    auto = "auto"
    prompt_completion = "prompt_completion"
    messages = "messages"
    text = "text"
    preference = "preference"
    kto = "kto"
    alpaca = "alpaca"
    alpaca_conversational = "alpaca_conversational"
    alpaca_preference = "alpaca_preference"
    alpaca_kto = "alpaca_kto"
    sharegpt = "sharegpt"
    sharegpt_preference = "sharegpt_preference"
    sharegpt_kto = "sharegpt_kto"
    messages_kto = "messages_kto"
    messages_preference = "messages_preference"
    openai_preference = "openai_preference"
    hh_rlhf = "hh_rlhf"
    axolotl_input_output = "axolotl_input_output"
    axolotl_chatml_intel = "axolotl_chatml_intel"
    axolotl_chatml_icr = "axolotl_chatml_icr"
    axolotl_chatml_argilla = "axolotl_chatml_argilla"
    axolotl_oasst = "axolotl_oasst"
    axolotl_gpteacher = "axolotl_gpteacher"
    azureml_text_generation = "azureml_text_generation"
    sagemaker_instruction = "sagemaker_instruction"


def is_remote(location: str) -> bool:
    """A cloud location a provider reads as it is: a URI (s3://, azureml://, https://, ...) or an Azure ML data asset
    (azureml:NAME:VERSION). Anything else is a local path, validated and versioned by cloudft."""
    return "://" in location or location.startswith("azureml:")


class DataConfig(StrictModel):
    """Where the data is and what shape it has."""

    train: Text = Field(..., description="Training data: a local path or an s3:// / azureml:// URI.")
    validation: Optional[Text] = Field(None, description="Held-out data (same shape as train).")
    format: DataFormat = Field(DataFormat.auto, description="Record shape; 'auto' detects it.")
    columns: Optional[dict[Text, Union[StrictBool, StrictInt, StrictFloat, Prose]]] = Field(
        None, description="Map a format's names to your columns, e.g. {prompt: question, chosen: response_j}; "
                          "a template joins columns, {prompt: \"{instruction}\\n\\n{input}\"}; pairwise: "
                          "{response_a: a, response_b: b, label: winner, label_a: 1, label_b: 2}.",
    )
    ignore_columns: list[Text] = Field(
        default_factory=list, description="Columns left out on purpose (not reported as unused, never refused)."
    )
    validation_split: float = Field(
        0.0, ge=0.0, lt=0.5, description="Hold out this fraction of train when no validation file is given."
    )
    # datasketch's MinHashLSH(num_perm=64) refuses thresholds above 0.961 ("number of bands are too small");
    # below 0.5 records that share half their shingles are not near-duplicates but different records.
    near_dup_threshold: Optional[float] = Field(
        None, ge=0.5, le=1.0,
        description="Drop near-duplicates above this MinHash Jaccard similarity, 0.5 to 1.0 (e.g. 0.9).",
    )
    pii_check: bool = Field(False, description="Warn about e-mails, phone numbers and cloud keys in the data.")

    @field_validator("columns")
    @classmethod
    def _column_values(cls, v: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
        for key, value in (v or {}).items():
            if key not in ("label_a", "label_b") and not isinstance(value, str):
                raise ValueError(f"{key}: give a column name (or a template) as text; only label_a and label_b "
                                 "take numbers or true/false")
        return v

    @model_validator(mode="after")
    def _splits_in_one_place(self) -> "DataConfig":
        if self.validation and is_remote(self.train) and not is_remote(self.validation):
            raise ValueError("data.validation is a local file while data.train is in the cloud: cloudft validates "
                             "and versions local files only together with their training split; upload the "
                             "validation file next to the training data (or give both as local files)")
        return self


class Precision(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class TrainingConfig(StrictModel):
    """Optimisation settings (mapped onto transformers/TRL TrainingArguments)."""

    epochs: float = Field(1.0, gt=0, le=10_000, description="Passes over the data (ignored when max_steps > 0).")
    max_steps: int = Field(-1, ge=-1, le=MAX_STEPS, description="Stop after this many optimizer steps; -1 uses epochs.")
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    lr_scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
    ] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, le=10)
    per_device_batch_size: int = Field(4, ge=1, le=65536)
    gradient_accumulation_steps: int = Field(1, ge=1, le=65536)
    max_length: int = Field(1024, ge=8, le=2**24, description="Tokens per sample (prompt + completion).")
    packing: bool = Field(True, description="SFT: pack samples into rows with per-sample attention boundaries.")
    gradient_checkpointing: bool = False
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2", "varlen_sdpa"] = Field(
        "auto", description="Attention kernel. auto: FlashAttention 2 when installed on a GPU, else varlen_sdpa "
                            "(per-sample SDPA over packed rows).")
    precision: Precision = Precision.auto
    optimizer: Literal["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd"] = "adamw_torch"
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Random seed (numpy takes 0..2^32-1).")
    logging_steps: int = Field(1, ge=1, le=MAX_STEPS)
    save_steps: int = Field(0, ge=0, le=MAX_STEPS,
                            description="Checkpoint every N steps (0: derived from the run length).")
    save_minutes: float = Field(0.0, ge=0, le=28 * 24 * 60, description="Also checkpoint every M minutes (0: off).")
    save_total_limit: int = Field(2, ge=1, le=10_000)
    eval_steps: int = Field(0, ge=0, le=MAX_STEPS, description="Evaluate every N steps (0: at the end only).")
    # Preference methods
    beta: float = Field(0.1, gt=0, le=100, description="DPO/ORPO/KTO beta; rl: KL coefficient.")
    max_prompt_length: Optional[int] = Field(None, ge=1, le=2**24)
    # Online RL
    num_generations: int = Field(4, ge=2, le=1024, description="rl: completions sampled per prompt.")
    max_new_tokens: int = Field(64, ge=1, le=2**20, description="rl/eval: tokens generated per completion.")

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, v: int) -> int:
        if v == 0:
            raise ValueError("max_steps must be -1 (use epochs) or a positive number of steps")
        return v

    @model_validator(mode="after")
    def _prompt_fits(self) -> "TrainingConfig":
        if self.max_prompt_length is not None and self.max_prompt_length >= self.max_length:
            raise ValueError(f"max_prompt_length ({self.max_prompt_length}) must be below max_length "
                             f"({self.max_length}): max_length bounds prompt + completion")
        return self


class TrackingConfig(StrictModel):
    tensorboard: bool = True
    mlflow: bool = False
    mlflow_tracking_uri: Optional[Text] = Field(None, description="Defaults to $MLFLOW_TRACKING_URI.")
    experiment: Optional[Text] = None


class EvalConfig(StrictModel):
    """What train_entry measures after training."""

    enabled: bool = True
    prompts: list[Prose] = Field(default_factory=list, description="Fixed prompts for side-by-side generations.")
    max_samples: int = Field(64, ge=1, le=10_000_000, description="Validation records used for loss and text metrics.")
    max_new_tokens: int = Field(32, ge=1, le=2**20)


class ExportConfig(StrictModel):
    """Artifacts written after training."""

    merge: bool = Field(False, description="Also write merged full weights (LoRA family).")
    quantize: Optional[Literal["8bit", "nf4"]] = Field(None, description="Also write a quantized merged copy.")


class DistributionSettings(StrictModel):
    """How the processes of a run share the work: the spec's `distributed:` section. The run config's
    `distributed` section has the same fields (the strategy resolved by the planner) plus the world layout."""

    strategy: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="auto: the planner's choice (data parallel when the model fits one GPU, else FSDP); "
                            "ddp: every GPU holds the whole model; fsdp: parameters, gradients and optimizer state "
                            "sharded over the GPUs (PyTorch FSDP2 through accelerate).")
    sharding: Literal["full_shard", "hybrid_shard"] = Field(
        "full_shard", description="fsdp: full_shard shards over every GPU of the run; hybrid_shard shards within "
                                  "each node and replicates across nodes (less traffic between nodes, more memory "
                                  "per GPU).")
    cpu_offload: bool = Field(
        False, description="fsdp: keep the sharded parameters, gradients and optimizer state in CPU memory (the "
                           "optimizer steps on the CPU): fits larger models, runs much slower.")
    checkpoints: Literal["sharded", "full"] = Field(
        "sharded", description="fsdp: 'sharded' (every rank writes its own shard with torch.distributed.checkpoint; "
                               "fast, no rank holds the whole state) or 'full' (gathered on rank 0 into one file). "
                               "Final weights are always gathered on rank 0 and saved as a from_pretrained folder.")


#: Every field of `distributed:` but `strategy`: settings only a sharded (FSDP) run uses.
FSDP_ONLY_FIELDS = tuple(name for name in DistributionSettings.model_fields if name != "strategy")


class DistributedConfig(DistributionSettings):
    """The run config's `distributed` section: the spec's settings, the strategy the plan chose (cloudft's
    `plan.estimate.instance.strategy`), and the world layout. train_entry reads RANK/WORLD_SIZE from the launcher.

    `auto` in a hand-written run config means: no sharding (data parallel with several processes)."""

    strategy: Literal["auto", "single", "ddp", "fsdp"] = Field(
        "auto", description="single | ddp | fsdp as planned (plan.estimate.instance.strategy); auto: data parallel.")
    nnodes: int = Field(1, ge=1, le=1024)
    nproc_per_node: int = Field(1, ge=1, le=64)
    launcher: Literal["none", "torchrun", "platform"] = Field(
        "none", description="'platform' means the provider starts the processes (Azure ML, SageMaker drivers)."
    )

    @property
    def sharded(self) -> bool:
        """The run shards the model (FSDP): the one place this rule lives."""
        return self.strategy == "fsdp"


class PlannedResources(StrictModel):
    """What cloudft's planner expected of this run (`plan.estimate`), written by cloudft for train_entry's messages:
    an out-of-memory failure compares what happened with it. Not a setting: nothing in training reads it."""

    # no upper bound: the planner's figure for an absurd (yet valid) spec is absurd too, and still worth showing
    peak_memory_gb: Optional[float] = Field(
        None, ge=0, description="Estimated peak memory per device (GiB) of the most demanding stage.")
    device_memory_gb: Optional[float] = Field(
        None, ge=0, description="Memory of one accelerator on the chosen instance (GiB), when known.")
    instance: Optional[Text] = Field(None, max_length=100, description="The chosen instance type, or 'this machine'.")


class OutputsConfig(StrictModel):
    """Directories train_entry writes to. Empty means: resolve from the container layout."""

    output_dir: Optional[Text] = None
    checkpoint_dir: Optional[Text] = None
    data_dir: Optional[Text] = Field(None, description="Base for relative data paths.")
    init_adapter: Optional[Text] = Field(None, description="Start from this adapter (previous stage).")
    init_model: Optional[Text] = Field(
        None, description="Full weights of an earlier stage (full fine-tuning): loaded instead of base_model, for "
                          "the policy and for the reference model of DPO/KTO/ORPO.")


class RunConfig(StrictModel):
    """Everything one train_entry invocation needs. Written as JSON by every provider."""

    schema_version: int = Field(RUN_CONFIG_SCHEMA_VERSION, ge=1, le=RUN_CONFIG_SCHEMA_VERSION)
    name: str
    run_id: str = ""
    stage: int = Field(0, ge=0, description="Index of this stage in a multi-stage run.")
    stage_count: int = Field(1, ge=1, le=64)
    base_model: Text
    method: Method = Method.sft
    peft: PeftConfig = Field(default_factory=PeftConfig)
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    planned: PlannedResources = Field(default_factory=PlannedResources)
    reward_model: Optional[Text] = Field(None, description="rl: path of the reward model (previous stage).")
    dataset_versions: dict[str, str] = Field(default_factory=dict)
    env_secrets: list[str] = Field(
        default_factory=list, description="Names of env vars resolved at run time (values never stored)."
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v or len(v) > 63:
            raise ValueError("name must be 1-63 characters")
        return _text(v)

    @field_validator("env_secrets")
    @classmethod
    def _env_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name (A-Z, 0-9, _)")
        return v

    @model_validator(mode="after")
    def _stage_in_range(self) -> "RunConfig":
        if self.stage >= self.stage_count:
            raise ValueError(f"stage {self.stage} is past the last stage ({self.stage_count} stages, from 0)")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def write(self, path: Union[str, Path]) -> Path:
        """Write atomically (temp file then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: Union[str, Path]) -> "RunConfig":
        return cls.model_validate(json.loads(Path(path).read_text()))


def dump_schema() -> dict[str, Any]:
    return RunConfig.model_json_schema()
