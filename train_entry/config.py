"""The run-config schema: the one file every provider writes and train_entry reads.

This module is light on purpose (pydantic only, no torch): `cloudft` imports these models to build
its job spec, so a field keeps the same name from the YAML spec to the run config.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RUN_CONFIG_SCHEMA_VERSION = 1


class StrictModel(BaseModel):
    """Base for every spec/run-config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=True, validate_default=True)


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
    alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: Union[list[str], Literal["all-linear"]] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear'."
    )
    modules_to_save: Optional[list[str]] = None
    quantization: Optional[QuantizationConfig] = Field(
        None, description="bitsandbytes quantization; defaults to NF4 + double quant for qlora."
    )
    # Prompt-learning family (prefix, prompt, p_tuning)
    num_virtual_tokens: int = Field(20, ge=1, le=2048)
    prompt_tuning_init_text: Optional[str] = Field(
        None, description="prompt tuning: initialise the virtual tokens from this text."
    )
    encoder_hidden_size: int = Field(128, ge=1, description="p_tuning prompt-encoder width.")
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
    auto = "auto"
    prompt_completion = "prompt_completion"
    alpaca = "alpaca"
    messages = "messages"
    sharegpt = "sharegpt"
    text = "text"
    preference = "preference"
    hh_rlhf = "hh_rlhf"
    kto = "kto"


class DataConfig(StrictModel):
    """Where the data is and what shape it has."""

    train: str = Field(..., description="Training data: a local path or an s3:// / azureml:// URI.")
    validation: Optional[str] = Field(None, description="Held-out data (same shape as train).")
    format: DataFormat = Field(DataFormat.auto, description="Record shape; 'auto' detects it.")
    columns: Optional[dict[str, str]] = Field(
        None, description="Map canonical names to your columns, e.g. {prompt: question, chosen: response_j}."
    )
    validation_split: float = Field(
        0.0, ge=0.0, lt=0.5, description="Hold out this fraction of train when no validation file is given."
    )
    near_dup_threshold: Optional[float] = Field(
        None, gt=0, le=1, description="Drop near-duplicates above this MinHash Jaccard similarity (e.g. 0.9)."
    )
    pii_check: bool = Field(False, description="Warn about e-mails, phone numbers and cloud keys in the data.")


class Precision(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class TrainingConfig(StrictModel):
    """Optimisation settings (mapped onto transformers/TRL TrainingArguments)."""

    epochs: float = Field(1.0, gt=0, description="Passes over the data (ignored when max_steps > 0).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps; -1 uses epochs.")
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    lr_scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
    ] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    per_device_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=8, description="Tokens per sample (prompt + completion).")
    packing: bool = Field(True, description="SFT: pack samples into rows with per-sample attention boundaries.")
    gradient_checkpointing: bool = False
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2", "varlen_sdpa"] = Field(
        "auto", description="Attention kernel. auto: FlashAttention 2 when installed on a GPU, else varlen_sdpa "
                            "(per-sample SDPA over packed rows).")
    precision: Precision = Precision.auto
    optimizer: Literal["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd"] = "adamw_torch"
    seed: int = 42
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(0, ge=0, description="Checkpoint every N steps (0: derived from the run length).")
    save_minutes: float = Field(0.0, ge=0, description="Also checkpoint every M minutes (0: off).")
    save_total_limit: int = Field(2, ge=1)
    eval_steps: int = Field(0, ge=0, description="Evaluate every N steps (0: at the end only).")
    # Preference methods
    beta: float = Field(0.1, gt=0, description="DPO/ORPO/KTO beta; rl: KL coefficient.")
    max_prompt_length: Optional[int] = Field(None, ge=1)
    # Online RL
    num_generations: int = Field(4, ge=2, description="rl: completions sampled per prompt.")
    max_new_tokens: int = Field(64, ge=1, description="rl/eval: tokens generated per completion.")

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> "TrainingConfig":
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be -1 (use epochs) or a positive number of steps")
        return self


class TrackingConfig(StrictModel):
    tensorboard: bool = True
    mlflow: bool = False
    mlflow_tracking_uri: Optional[str] = Field(None, description="Defaults to $MLFLOW_TRACKING_URI.")
    experiment: Optional[str] = None


class EvalConfig(StrictModel):
    """What train_entry measures after training."""

    enabled: bool = True
    prompts: list[str] = Field(default_factory=list, description="Fixed prompts for side-by-side generations.")
    max_samples: int = Field(64, ge=1, description="Validation records used for loss and text metrics.")
    max_new_tokens: int = Field(32, ge=1)


class ExportConfig(StrictModel):
    """Artifacts written after training."""

    merge: bool = Field(False, description="Also write merged full weights (LoRA family).")
    quantize: Optional[Literal["8bit", "nf4"]] = Field(None, description="Also write a quantized merged copy.")


class DistributedConfig(StrictModel):
    """World layout. Providers fill it; train_entry reads RANK/WORLD_SIZE from the launcher."""

    nnodes: int = Field(1, ge=1)
    nproc_per_node: int = Field(1, ge=1)
    launcher: Literal["none", "torchrun", "platform"] = Field(
        "none", description="'platform' means the provider starts the processes (Azure ML, SageMaker drivers)."
    )


class OutputsConfig(StrictModel):
    """Directories train_entry writes to. Empty means: resolve from the container layout."""

    output_dir: Optional[str] = None
    checkpoint_dir: Optional[str] = None
    data_dir: Optional[str] = Field(None, description="Base for relative data paths.")
    init_adapter: Optional[str] = Field(None, description="Start from this adapter (previous stage).")
    init_model: Optional[str] = Field(
        None, description="Full weights of an earlier stage (full fine-tuning): loaded instead of base_model, for "
                          "the policy and for the reference model of DPO/KTO/ORPO.")


class RunConfig(StrictModel):
    """Everything one train_entry invocation needs. Written as JSON by every provider."""

    schema_version: int = RUN_CONFIG_SCHEMA_VERSION
    name: str
    run_id: str = ""
    stage: int = Field(0, ge=0, description="Index of this stage in a multi-stage run.")
    stage_count: int = Field(1, ge=1)
    base_model: str
    method: Method = Method.sft
    peft: PeftConfig = Field(default_factory=PeftConfig)
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    reward_model: Optional[str] = Field(None, description="rl: path of the reward model (previous stage).")
    dataset_versions: dict[str, str] = Field(default_factory=dict)
    env_secrets: list[str] = Field(
        default_factory=list, description="Names of env vars resolved at run time (values never stored)."
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v or len(v) > 63:
            raise ValueError("name must be 1-63 characters")
        return v

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
