"""Memory, instance choice, time and cost for a whole plan (every stage), from its run configs and data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .arch import Arch
from .catalog import Instance, gpu_matches, load_catalog
from .memory import SEQUENCES_PER_EXAMPLE, Setup, estimate_memory
from .throughput import tokens_per_second
from .tokens import DataSize, data_size

if TYPE_CHECKING:
    from train_entry.config import RunConfig

    from ..spec import ComputeConfig

STARTUP_HOURS = 0.15  # per stage: provisioning, image pull, model download, final save (assumption)
PADDING_FACTOR = 1.25  # dynamic padding without packing processes ~25% pad tokens (assumption)
PAIRWISE_TOKEN_FACTOR = 4 / 3  # chosen+rejected each repeat the prompt (prompt ≈ 1/3 of a record's text)
RL_FACTOR = 3.0  # online RL: generation costs ~2x the training pass (rough)
DEFAULT_LOSS = {"sft": "chunked"}  # TRL SFTTrainer's default loss_type is chunked_nll; others hold full logits


def setup_for_stage(rc: "RunConfig", shard_devices: int = 1, cpu: bool = False) -> Setup:
    """The memory/throughput Setup of one stage, read from its run config (`cpu`: precision auto means fp32, as
    train_entry.runtime.resolve_precision does without CUDA)."""
    peft, t = rc.peft, rc.training
    quant = None
    if peft.type == "qlora":
        quant = peft.quantization.bits if peft.quantization else 4
    return Setup(
        method=str(rc.method),
        peft=str(peft.type),
        r=peft.r,
        target_modules=peft.target_modules,
        modules_to_save=list(peft.modules_to_save or []),
        quant_bits=quant,
        dtype_bytes=4 if t.precision == "fp32" or (cpu and t.precision == "auto") else 2,
        optimizer=t.optimizer,
        seq_len=t.max_length,
        micro_batch=t.per_device_batch_size,
        gradient_checkpointing=t.gradient_checkpointing,
        loss=DEFAULT_LOSS.get(str(rc.method), "hf"),
        lora_dropout=peft.dropout,
        num_virtual_tokens=peft.num_virtual_tokens,
        shard_devices=shard_devices,
    )


@dataclass
class Workload:
    """What one stage processes: optimizer steps and tokens per step across all devices."""

    steps: int
    tokens_per_step: float
    text_tokens: Optional[int]
    assumption: str


def workload(rc: "RunConfig", size: DataSize, world: int) -> Optional[Workload]:
    """Steps and processed tokens per step for `world` data-parallel processes; None when the size is unknown."""
    t = rc.training
    method = str(rc.method)
    seqs = SEQUENCES_PER_EXAMPLE.get(method, 1)
    examples_per_step = t.per_device_batch_size * t.gradient_accumulation_steps * world
    packed = method == "sft" and t.packing
    tokens = size.tokens
    if tokens is not None and method in ("dpo", "orpo", "reward"):
        tokens = int(tokens * PAIRWISE_TOKEN_FACTOR)
    if packed:
        per_step = examples_per_step * t.max_length
        if t.max_steps > 0:
            return Workload(t.max_steps, per_step, tokens, "packed rows of max_length; max_steps")
        if tokens is None:
            return None
        if size.records:
            tokens = min(tokens, size.records * t.max_length)
        steps = max(math.ceil(tokens * t.epochs / per_step), 1)
        return Workload(steps, per_step, tokens, "packed rows of max_length")
    if size.records and tokens is not None:
        mean_len = min(tokens / size.records / (seqs if seqs > 1 else 1), t.max_length)
    else:
        mean_len = t.max_length / 2
    per_step = examples_per_step * seqs * mean_len * PADDING_FACTOR
    if t.max_steps > 0:
        return Workload(t.max_steps, per_step, tokens, f"dynamic padding (x{PADDING_FACTOR:g}); max_steps")
    if not size.records:
        return None
    steps = max(math.ceil(size.records * t.epochs / examples_per_step), 1)
    return Workload(steps, per_step, tokens, f"dynamic padding (x{PADDING_FACTOR:g} pad tokens)")


@dataclass
class Candidate:
    """One instance evaluated for the whole plan."""

    instance: Instance
    count: int
    strategy: str  # "single" | "ddp" | "fsdp" (cloudft.planner.result.Strategy)
    distribution: str
    memory: list[dict[str, float]]
    stages: list[dict[str, Any]]
    hours: Optional[float]

    @property
    def on_demand_usd(self) -> Optional[float]:
        if self.hours is None or self.instance.on_demand_per_hour is None:
            return None
        return self.hours * self.instance.on_demand_per_hour * self.count

    @property
    def spot_usd(self) -> Optional[float]:
        if self.hours is None or self.instance.spot_per_hour is None:
            return None
        return self.hours * self.instance.spot_per_hour * self.count


def stage_memory(arch: Arch, stages: "list[RunConfig]", shard: int, cpu: bool = False) -> list[dict[str, float]]:
    """Memory estimate of each stage with weights sharded over `shard` devices (1: data parallel)."""
    return [estimate_memory(arch, setup_for_stage(rc, shard, cpu)) for rc in stages]


def describe_strategy(strategy: str, world: int) -> str:
    """The human words for a strategy over `world` processes."""
    return {"single": "single GPU", "ddp": "data parallel (DDP)"}.get(strategy, f"sharded (FSDP over {world} GPUs)")


def evaluate(arch: Arch, stages: "list[RunConfig]", inst: Instance, count: int, sizes: list[DataSize],
             require_fit: bool = True) -> Optional[Candidate]:
    """Fit, time and cost of the stages on `count` × `inst`; None when it does not fit even sharded
    (with `require_fit=False`: the sharded estimate anyway)."""
    world = inst.gpus * count
    strategy = "single" if world == 1 else "ddp"
    mem = stage_memory(arch, stages, 1)
    if max(m["peak_gb_per_device"] for m in mem) > inst.usable_gpu_memory_gb:
        if world == 1 and require_fit:
            return None
        if world > 1:
            mem = stage_memory(arch, stages, world)
            strategy = "fsdp"
        if max(m["peak_gb_per_device"] for m in mem) > inst.usable_gpu_memory_gb and require_fit:
            return None
    distribution = describe_strategy(strategy, world)
    out_stages, hours = [], 0.0
    for rc, size in zip(stages, sizes):
        setup = setup_for_stage(rc, world if strategy == "fsdp" else 1)
        speed = tokens_per_second(arch, setup, inst.gpu, inst.gpus, count)
        work = workload(rc, size, world)
        if work is None:
            return Candidate(inst, count, strategy, distribution, mem, out_stages, None)
        factor = RL_FACTOR if setup.method == "rl" else 1.0
        step_s = work.tokens_per_step * factor / speed["tokens_per_s"]
        stage_h = work.steps * step_s / 3600 + STARTUP_HOURS
        hours += stage_h
        out_stages.append({"stage": rc.stage, "method": setup.method, "steps": work.steps,
                       "step_seconds": round(step_s, 3), "hours": round(stage_h, 3),
                       "tokens_per_step": int(work.tokens_per_step), "train_tokens": work.text_tokens,
                       "tokens_per_s": speed["tokens_per_s"], "tokens_per_s_per_gpu": speed["tokens_per_s_per_gpu"],
                       "hfu_assumed": speed["hfu_assumed"], "flops_per_token": speed["flops_per_token"],
                       "batching": work.assumption})
    return Candidate(inst, count, strategy, distribution, mem, out_stages, hours)


def candidates(arch: Arch, provider: str, compute: "ComputeConfig", stages: "list[RunConfig]",
               sizes: list[DataSize]) -> list[Candidate]:
    """Every catalog instance that fits (narrowed by compute.gpu / gpus_per_node), cheapest first."""
    out = []
    for inst in load_catalog(provider):
        if compute.gpu and not gpu_matches(compute.gpu, inst.gpu):
            continue
        if compute.gpus_per_node and inst.gpus != compute.gpus_per_node:
            continue
        if inst.on_demand_per_hour is None:
            continue
        cand = evaluate(arch, stages, inst, compute.instance_count, sizes)
        if cand is not None:
            out.append(cand)

    def key(c: Candidate) -> tuple:
        price = c.spot_usd if compute.spot else c.on_demand_usd
        per_hour = c.instance.on_demand_per_hour * c.count
        return (price if price is not None else per_hour, per_hour)

    return sorted(out, key=key)
