"""Peak GPU memory per device for one training configuration (analytic, no torch).

peak = weights + trainable params + gradients + optimizer states + activations + logits/CE + reference model
       + framework overhead (CUDA context, allocator slack)

The formulas and their sources are in docs/planner.md and shared/reference/training_performance.md §3.
All results are GiB (2^30 bytes), written `_gb` like the published tables they are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from .arch import Arch

GIB = float(1 << 30)

# Framework overhead: CUDA context + cuBLAS workspace + allocator fragmentation (reference §3.1: ~0.5-1.5 GB
# plus 5-10%). Constants fitted on two points only (Qwen-7B LoRA at 256 and 8192 tokens), see docs/planner.md.
OVERHEAD_FIXED_GB = 1.15
OVERHEAD_FRACTION = 0.114
NF4_BYTES = 4.127 / 8  # NF4 with double quantization, incl. absmax constants (reference §3.1)
INT8_BYTES = 1.02  # LLM.int8 weights + row scales
CE_CHUNK_TOKENS = 256  # TRL chunked_nll / Liger fused CE work in chunks

LORA_FAMILY = ("lora", "qlora", "dora")
PROMPT_FAMILY = ("prefix", "prompt", "p_tuning")
# Sequences the policy runs per example: chosen + rejected for pairwise methods.
SEQUENCES_PER_EXAMPLE = {"sft": 1, "dpo": 2, "orpo": 2, "kto": 2, "reward": 2, "rl": 1}
REFERENCE_METHODS = ("dpo", "kto", "rl")


@dataclass
class Setup:
    """What is trained and how: everything the memory estimate depends on besides the architecture."""

    method: str = "sft"
    peft: str = "lora"  # none | lora | qlora | dora | prefix | prompt | p_tuning
    r: int = 16
    target_modules: Union[str, list[str]] = "all-linear"
    modules_to_save: list[str] = field(default_factory=list)
    quant_bits: Optional[int] = None  # 4 (NF4/GPTQ) or 8; None: 16-bit weights
    dtype_bytes: int = 2  # bf16/fp16 = 2, fp32 = 4
    optimizer: str = "adamw_torch"
    seq_len: int = 1024
    micro_batch: int = 1
    gradient_checkpointing: bool = False
    loss: str = "hf"  # hf (full logits in memory) | chunked (TRL chunked_nll) | fused (Liger)
    attention: str = "flash"  # flash / sdpa (no S^2 term) | eager
    lora_dropout: float = 0.0
    adapter_bytes: int = 4  # PEFT keeps adapters in fp32 (autocast_adapter_dtype=True)
    num_virtual_tokens: int = 20
    shard_devices: int = 1  # >1: FSDP shards weights, grads and optimizer states over this many GPUs
    cpu_offload: bool = False  # FSDP: sharded weights, grads and optimizer states live in CPU memory

    @property
    def tokens(self) -> int:
        """Tokens held in one micro-batch (both sequences for pairwise methods)."""
        return self.micro_batch * self.seq_len * SEQUENCES_PER_EXAMPLE.get(self.method, 1)


def _adapted(arch: Arch, setup: Setup) -> list[tuple[int, int]]:
    """(in, out) of every adapted linear in one layer."""
    mods = arch.linears()
    if setup.target_modules == "all-linear":
        return [m for group in mods.values() for m in group]
    wanted = set(setup.target_modules)
    return [m for name, group in mods.items() if name in wanted for m in group]


def trainable_params(arch: Arch, setup: Setup) -> int:
    """Parameters that get gradients and optimizer states."""
    if setup.peft == "none":
        return arch.params
    extra = 0
    for name in setup.modules_to_save:
        if name in ("embed_tokens", "lm_head", "wte", "embed_out"):
            extra += arch.vocab * arch.hidden
    if setup.peft in PROMPT_FAMILY:
        per = arch.layers * 2 * arch.kv_dim if setup.peft == "prefix" else arch.hidden
        return setup.num_virtual_tokens * per + extra
    adapted = _adapted(arch, setup)
    lora = sum(setup.r * (i + o) for i, o in adapted)
    if setup.peft == "dora":
        lora += sum(o for _, o in adapted)
    return arch.layers * lora + extra


def _optimizer_bytes(setup: Setup, param_bytes: float) -> float:
    """Optimizer state bytes per trainable parameter kept in `param_bytes`."""
    opt = setup.optimizer
    if opt == "sgd":
        return 0.0
    if "8bit" in opt:
        return 2.0
    # torch AdamW keeps m and v in the parameter's dtype: fp32 adapters → 8 B; bf16 full fine-tuning → 4 B.
    return 2.0 * param_bytes


def _activation_bytes_per_token_layer(arch: Arch, setup: Setup) -> float:
    """Saved activations of one decoder layer per token (Korthikanti et al. adapted to SwiGLU + GQA, bf16)."""
    h, kv = arch.hidden, arch.kv_dim
    inter = arch.intermediate * (arch.experts_per_token or 1)
    per = 16 * h + 4 * kv + 8 * inter
    if setup.attention == "eager":
        per += 5 * arch.heads * setup.seq_len  # attention scores + softmax + dropout mask
    if setup.peft in LORA_FAMILY and setup.lora_dropout > 0:
        per += 2 * sum(i for i, _ in _adapted(arch, setup))  # dropped copy of each adapted module's input
    if setup.peft == "dora":
        per *= 1.10  # PEFT MetaMathQA: DoRA +10% memory vs LoRA
    return per * setup.dtype_bytes / 2


def estimate_memory(arch: Arch, setup: Setup) -> dict[str, float]:
    """Peak memory per device, by component (GiB), plus the parameter counts it rests on."""
    full = setup.peft == "none"
    shard = max(setup.shard_devices, 1)
    dt = setup.dtype_bytes
    # weights
    if setup.quant_bits == 4:
        linear_bytes = NF4_BYTES
    elif setup.quant_bits == 8:
        linear_bytes = INT8_BYTES
    else:
        linear_bytes = dt
    weights = arch.linear_params * linear_bytes + (arch.embed_params + arch.other_params) * dt
    # trainable state
    n_train = trainable_params(arch, setup)
    sharded = shard > 1
    # Full fine-tuning: the weights are the trainable parameters. Unsharded, train_entry trains them in the loaded
    # 16-bit dtype; under FSDP2, accelerate keeps fp32 master copies of trainable parameters when training in
    # bf16/fp16 (accelerate.utils.fsdp_utils.fsdp2_prepare_model: "Upcast to fp32 master weights") and gathers them
    # in the compute dtype (MixedPrecisionPolicy.param_dtype).
    param_bytes = (4 if sharded and dt < 4 else dt) if full else setup.adapter_bytes
    if full:
        train_w = n_train * param_bytes if sharded else 0.0  # unsharded: counted in `weights`
        grads = n_train * param_bytes
    else:
        train_w = n_train * setup.adapter_bytes
        grads = n_train * setup.adapter_bytes
    optim = n_train * _optimizer_bytes(setup, param_bytes)
    # activations
    t = setup.tokens
    per_layer = _activation_bytes_per_token_layer(arch, setup)
    if setup.gradient_checkpointing:
        acts = t * (arch.layers * 2 * arch.hidden * dt / 2 + per_layer)
    else:
        acts = t * arch.layers * per_layer
    # logits and cross-entropy
    if setup.method == "reward":
        logits = 0.0
    elif setup.loss in ("chunked", "fused"):
        logits = min(t, CE_CHUNK_TOKENS) * 10 * arch.vocab
    else:
        logits = t * 10 * arch.vocab
    # a separate reference model only for full fine-tuning (PEFT disables the adapter instead)
    reference = weights if (full and setup.method in REFERENCE_METHODS) else 0.0
    offloaded = 0.0
    loaded = weights  # what each process holds of the model when it is loaded, before FSDP shards it
    if sharded:
        # FSDP2 as train_entry sets it up (train_entry/sharding.py): each decoder layer is one unit, so two layers
        # are unsharded at a time (the one computing and the one prefetched); the output head's unit is kept
        # gathered from the end of the forward to the start of the backward; full fine-tuning also holds one
        # layer's unsharded gradients before the reduce-scatter.
        layer = arch.linear_params / arch.layers
        gathered = 2 * layer * linear_bytes + arch.vocab * arch.hidden * dt
        sharded_weights = 0.0 if full else weights / shard
        train_w, grads, optim, reference = train_w / shard, grads / shard, optim / shard, reference / shard
        if setup.cpu_offload:
            # CPUOffloadPolicy: the shards (parameters, gradients, optimizer states) live in host memory and the
            # optimizer steps there; the GPU holds what is gathered for compute.
            offloaded = sharded_weights + train_w + grads + optim + reference
            sharded_weights = train_w = grads = optim = reference = 0.0
        if full:
            grads += layer * dt
        weights = sharded_weights + gathered
    parts = {
        "weights_gb": weights,
        "trainable_params_gb": train_w,
        "gradients_gb": grads,
        "optimizer_gb": optim,
        "activations_gb": acts,
        "logits_gb": logits,
        "reference_model_gb": reference,
    }
    subtotal = sum(parts.values())
    parts["overhead_gb"] = OVERHEAD_FIXED_GB * GIB + OVERHEAD_FRACTION * subtotal
    out = {k: round(v / GIB, 3) for k, v in parts.items()}
    peak = sum(parts.values())
    if sharded and setup.quant_bits:
        # transformers' bitsandbytes loader quantizes onto the process's GPU (quantizer_bnb_4bit.update_device_map,
        # train_entry.modeling device_map): every GPU holds the whole quantized model before FSDP shards it
        load = loaded + OVERHEAD_FIXED_GB * GIB + OVERHEAD_FRACTION * loaded
        out["load_peak_gb"] = round(load / GIB, 3)
        peak = max(peak, load)
    out = {"peak_gb_per_device": round(peak / GIB, 2), **out}
    out["params_b"] = round(arch.params / 1e9, 3)
    out["trainable_params_m"] = round(n_train / 1e6, 2)
    out["tokens_per_micro_batch"] = t
    if sharded:
        # host memory of each process: the whole 16-bit model, loaded on the CPU by every rank before FSDP moves
        # its shard to the GPU (quantized models load onto the GPU), or the offloaded shards, whichever is larger
        out["host_gb_per_process"] = round(max(0.0 if setup.quant_bits else loaded, offloaded) / GIB, 3)
    if setup.cpu_offload and sharded:
        out["cpu_offload_gb"] = round(offloaded / GIB, 3)
    return out


def estimate_serving_memory(arch: Arch, *, tokens: int, dtype_bytes: int = 2, adapter_params: int = 0) -> dict:
    """Peak memory of serving one request on one GPU (GiB): 16-bit base weights, the adapter (fp32, as PEFT loads
    it), the KV cache and prefill activations for `tokens`, and the same framework overhead as training.

    What templates/azure/score.py does: the whole model on one device, one request at a time."""
    weights = arch.params * dtype_bytes
    adapter = adapter_params * 4
    kv_cache = 2 * arch.layers * arch.kv_dim * tokens * dtype_bytes
    prefill = tokens * (4 * arch.hidden + 2 * arch.intermediate) * dtype_bytes + arch.vocab * 4
    subtotal = weights + adapter + kv_cache + prefill
    overhead = OVERHEAD_FIXED_GB * GIB + OVERHEAD_FRACTION * subtotal
    parts = {"weights_gb": weights, "adapter_gb": adapter, "kv_cache_gb": kv_cache, "activations_gb": prefill,
             "overhead_gb": overhead}
    return {"peak_gb": round(sum(parts.values()) / GIB, 2), **{k: round(v / GIB, 6) for k, v in parts.items()},
            "params_b": round(arch.params / 1e9, 3), "tokens": tokens}
