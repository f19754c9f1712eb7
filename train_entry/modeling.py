"""Load the tokenizer and model for a run, with quantization (QLoRA) and the PEFT method from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .config import PeftConfig, RunConfig
from .events import log
from .failures import ModelLoadError
from .progress import LOAD, Phase
from .runtime import torch_dtype


def attention_implementation(choice: str) -> str:
    """The transformers attention name for `training.attention` (see train_entry/attention.py)."""
    if choice == "auto":
        import importlib.util

        import torch

        if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
        choice = "varlen_sdpa"
    if choice == "varlen_sdpa":
        from .attention import register

        return register()
    return choice


def from_pretrained(auto_class, source: str, what: str, **kwargs: Any):
    """`auto_class.from_pretrained(source)`; a missing, unreachable or gated model raises ModelLoadError
    naming `what` was loaded (train_entry/failures.py turns it into one message with the fix)."""
    try:
        return auto_class.from_pretrained(str(source), **kwargs)
    except OSError as exc:  # transformers reports missing/unreachable/gated models as OSError
        raise ModelLoadError(what, str(source)) from exc


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    tok = from_pretrained(AutoTokenizer, source, "tokenizer")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def compute_dtype(peft: PeftConfig, precision: str):
    """The dtype 4-bit weights are dequantized to (quantization.compute_dtype, auto: the run's precision)."""
    q = peft.quantization
    if q is None or q.compute_dtype == "auto":
        return torch_dtype(precision)
    return getattr(__import__("torch"), q.compute_dtype)


def quantization_config(peft: PeftConfig, precision: str, sharded: bool = False):
    """bitsandbytes config for `qlora` (NF4 + double quant by default), None otherwise. Sharded (FSDP), the
    4-bit weights are stored in the compute dtype (bnb_4bit_quant_storage): FSDP shards float tensors only, and
    only tensors of one dtype per unit (bitsandbytes docs, "FSDP-QLoRA")."""
    if peft.type != "qlora" or peft.quantization is None:
        return None
    from transformers import BitsAndBytesConfig

    q = peft.quantization
    compute = compute_dtype(peft, precision)
    if q.bits == 8:
        if sharded:
            from .sharding import ShardingError

            raise ShardingError("8-bit QLoRA weights cannot be sharded by FSDP (bitsandbytes stores them as int8; "
                                "only 4-bit weights take a float storage dtype)",
                                "set peft.quantization.bits: 4, or distributed.strategy: ddp")
        return BitsAndBytesConfig(load_in_8bit=True)
    extra = {"bnb_4bit_quant_storage": compute} if sharded else {}
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                              bnb_4bit_use_double_quant=q.double_quant, bnb_4bit_compute_dtype=compute, **extra)


def load_model(cfg: RunConfig, precision: str, source: str, *, task: str = "causal_lm", num_labels: int = 1,
               what: str = "base model"):
    """The model in `source` (the base model, or an earlier stage's full weights) in the run's precision
    (quantized for qlora)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    sharded = cfg.distributed.sharded
    kwargs: dict[str, Any] = {"dtype": torch_dtype(precision),
                              "attn_implementation": attention_implementation(cfg.training.attention)}
    quant = quantization_config(cfg.peft, precision, sharded)
    if quant is not None:
        kwargs["quantization_config"] = quant
        if sharded:
            kwargs["dtype"] = compute_dtype(cfg.peft, precision)  # one float dtype in every FSDP unit
        if torch.cuda.is_available():
            from .runtime import world

            kwargs["device_map"] = {"": world().local_rank}
    with Phase(LOAD, unit="MiB", label=f"load the {what}") as phase:  # minutes for a large model
        if task == "sequence_classification":
            model = from_pretrained(AutoModelForSequenceClassification, source, what, num_labels=num_labels,
                                    **kwargs)
        else:
            model = from_pretrained(AutoModelForCausalLM, source, what, **kwargs)
        phase.advance(round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20))
    if quant is not None and not sharded:
        # (sharded: FSDP's mixed precision computes in the compute dtype and FSDP checkpoints activations itself,
        # so the fp32 copies of norms and embeddings this makes would only add memory; PEFT freezes the base)
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.training.gradient_checkpointing)
    return model


def peft_config(peft: PeftConfig, task_type: str = "CAUSAL_LM", tokenizer_source: Optional[str] = None):
    """The peft library's config for `peft.type` (None for full fine-tuning)."""
    import peft as p

    kind = peft.type
    if kind == "none":
        return None
    if kind in ("lora", "qlora", "dora"):
        return p.LoraConfig(r=peft.r, lora_alpha=peft.alpha, lora_dropout=peft.dropout,
                            target_modules=peft.target_modules, modules_to_save=peft.modules_to_save,
                            use_dora=kind == "dora", task_type=task_type)
    if kind == "prefix":
        return p.PrefixTuningConfig(num_virtual_tokens=peft.num_virtual_tokens, task_type=task_type,
                                    prefix_projection=peft.prefix_projection,
                                    encoder_hidden_size=peft.encoder_hidden_size)
    if kind == "prompt":
        if peft.prompt_tuning_init_text:
            return p.PromptTuningConfig(num_virtual_tokens=peft.num_virtual_tokens, task_type=task_type,
                                        prompt_tuning_init=p.PromptTuningInit.TEXT,
                                        prompt_tuning_init_text=peft.prompt_tuning_init_text,
                                        tokenizer_name_or_path=tokenizer_source)
        return p.PromptTuningConfig(num_virtual_tokens=peft.num_virtual_tokens, task_type=task_type)
    if kind == "p_tuning":
        return p.PromptEncoderConfig(num_virtual_tokens=peft.num_virtual_tokens, task_type=task_type,
                                     encoder_hidden_size=peft.encoder_hidden_size,
                                     encoder_reparameterization_type=peft.encoder_reparameterization_type)
    raise ValueError(f"unknown peft type {kind}")


def attach_adapter(model, init_adapter: Optional[Path]):
    """Continue training the previous stage's adapter (multi-stage runs)."""
    if init_adapter is None:
        return model
    from peft import PeftModel

    log(f"starting from the adapter in {init_adapter}")
    return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)


def is_adapter_dir(path: Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()
