"""Tokens per second per GPU from FLOPs per token and a stated hardware-FLOPs utilisation (reference §2).

tok/s per GPU = HFU · peak_bf16_flops / flops_per_token,
flops_per_token = k · N_active + k/6 · 6 · L · S · q_dim (attention),
k = 4 (LoRA family), 6 (LoRA + gradient checkpointing, or full), 8 (full + gradient checkpointing).
"""

from __future__ import annotations

from typing import Any

from .arch import Arch
from .catalog import gpu_specs
from .memory import LORA_FAMILY, PROMPT_FAMILY, Setup

# Hardware-FLOPs utilisation assumed for train_entry (packing, FlashAttention/SDPA, no compile):
# between the reference's "naive" 0.25-0.35 and "tuned" 0.45-0.55.
HFU = 0.40
HFU_NO_FLASH = 0.25  # pre-Ampere (T4): SDPA math kernels, fp16
QLORA_SPEED = 0.85  # NF4 dequantisation overhead (LLaMA-Factory: ~equal; short sequences: slower)
DORA_SPEED = 1 / 1.26  # PEFT MetaMathQA: DoRA +26% time vs LoRA
DP_EFFICIENCY = {1: 1.0, 2: 0.95, 4: 0.92, 8: 0.90}  # data-parallel scaling inside one node
# FSDP on top of data parallel: per-layer all-gathers and reduce-scatters, mostly hidden behind compute by
# prefetching (assumption); CPU offload moves every layer over PCIe and steps the optimizer on the CPU (assumption,
# unmeasured: expect a large slowdown, order of 2x).
FSDP_SPEED = 0.9
OFFLOAD_SPEED = 0.5
MULTI_NODE_EFFICIENCY = 0.85
# CPU training (the local provider without a GPU), fp32: GEMMs reach tens of GFLOP/s per core with AVX2/AVX-512,
# but small matrices, the optimizer step and Python overhead keep training near a tenth of that (assumption;
# docs/planner.md). An order-of-magnitude figure: it decides "minutes" from "days", not a schedule.
CPU_FLOPS_PER_CORE = 1.0e10
# Compute per policy token relative to SFT: reference pass (DPO/KTO: one extra forward = +2N per token).
REFERENCE_FORWARD_FLOPS = 2


def flops_multiplier(setup: Setup) -> int:
    """k in k·N FLOPs per token (forward + backward, plus recompute under gradient checkpointing)."""
    parameter_efficient = setup.peft in LORA_FAMILY or setup.peft in PROMPT_FAMILY
    k = 4 if parameter_efficient else 6
    return k + (2 if setup.gradient_checkpointing else 0)


def flops_per_token(arch: Arch, setup: Setup) -> float:
    """Training FLOPs per processed token, including the DPO/KTO reference forward."""
    k = flops_multiplier(setup)
    attention = k * arch.layers * setup.seq_len * arch.q_dim  # 6·L·S·h for full FT, causal not halved
    ref = REFERENCE_FORWARD_FLOPS * arch.active_params if setup.method in ("dpo", "kto", "rl") else 0
    return k * arch.active_params + attention + ref


def cpu_tokens_per_second(arch: Arch, setup: Setup, cores: int) -> dict[str, Any]:
    """Throughput of training on `cores` CPU cores (the local provider on a machine without a GPU)."""
    flops = flops_per_token(arch, setup)
    total = CPU_FLOPS_PER_CORE * max(cores, 1) / flops
    return {"tokens_per_s_per_gpu": round(total, 3), "tokens_per_s": round(total, 3), "hfu_assumed": None,
            "flops_per_token": f"{flops:.3g}", "k": flops_multiplier(setup),
            "device": f"{cores} CPU cores at ~{CPU_FLOPS_PER_CORE / 1e9:g} GFLOP/s each (assumption)"}


def tokens_per_second(arch: Arch, setup: Setup, gpu: str, gpus: int = 1, nodes: int = 1) -> dict[str, Any]:
    """Throughput of the whole job (all GPUs) and the assumptions behind it."""
    spec = gpu_specs()[gpu]
    hfu = HFU if spec["flash_attention"] else HFU_NO_FLASH
    speed = hfu
    if setup.quant_bits:
        speed *= QLORA_SPEED
    if setup.peft == "dora":
        speed *= DORA_SPEED
    if setup.shard_devices > 1:
        speed *= FSDP_SPEED * (OFFLOAD_SPEED if setup.cpu_offload else 1.0)
    per_gpu = speed * spec["bf16_tflops"] * 1e12 / flops_per_token(arch, setup)
    scale = DP_EFFICIENCY.get(gpus, 0.9) * (MULTI_NODE_EFFICIENCY if nodes > 1 else 1.0)
    total = per_gpu * gpus * nodes * scale
    return {
        "tokens_per_s_per_gpu": round(per_gpu, 1),
        "tokens_per_s": round(total, 1),
        "hfu_assumed": hfu,
        "flops_per_token": f"{flops_per_token(arch, setup):.3g}",
        "k": flops_multiplier(setup),
        "mfu_equivalent": round(per_gpu * (4 if setup.peft != "none" else 6) * arch.active_params
                                / (spec["bf16_tflops"] * 1e12), 3),
    }
