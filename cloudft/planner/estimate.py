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
    from train_entry.config import DistributionSettings, RunConfig

    from ..spec import ComputeConfig

STARTUP_HOURS = 0.15  # per stage: provisioning, image pull, model download, final save (assumption)
PADDING_FACTOR = 1.25  # dynamic padding without packing processes ~25% pad tokens (assumption)
PAIRWISE_TOKEN_FACTOR = 4 / 3  # chosen+rejected each repeat the prompt (prompt ≈ 1/3 of a record's text)
RL_FACTOR = 3.0  # online RL: generation costs ~2x the training pass (rough)
DEFAULT_LOSS = {"sft": "chunked"}  # TRL SFTTrainer's default loss_type is chunked_nll; others hold full logits
#: Share of an instance's host memory a sharded run's processes may take for loading the model and for CPU-offloaded
#: shards (the rest: the OS, the Python processes, data loading, the rank-0 copy of the final weights). Assumption.
HOST_USABLE_FRACTION = 0.8


def setup_for_stage(rc: "RunConfig", shard_devices: int = 1, cpu: bool = False, cpu_offload: bool = False) -> Setup:
    """The memory/throughput Setup of one stage, read from its run config (`cpu`: precision auto means fp32, as
    train_entry.runtime.resolve_precision does without CUDA); `shard_devices` > 1: FSDP over that many devices
    (with `cpu_offload`: the shards in host memory)."""
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
        cpu_offload=cpu_offload and shard_devices > 1,
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
    why: str = ""  # why this strategy (shown by `cloudft plan`)

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


def stage_memory(arch: Arch, stages: "list[RunConfig]", shard: int, cpu: bool = False,
                 cpu_offload: bool = False) -> list[dict[str, float]]:
    """Memory estimate of each stage with weights sharded over `shard` devices (1: data parallel)."""
    return [estimate_memory(arch, setup_for_stage(rc, shard, cpu, cpu_offload)) for rc in stages]


def shard_size(dist: "Optional[DistributionSettings]", gpus: int, count: int) -> int:
    """How many devices FSDP shards over: every GPU of the run, or (hybrid_shard) the GPUs of one node."""
    hybrid = dist is not None and dist.sharding == "hybrid_shard"
    return gpus if hybrid else gpus * count


def describe_strategy(strategy: str, world: int, dist: "Optional[DistributionSettings]" = None,
                      gpus: Optional[int] = None) -> str:
    """The human words for a strategy over `world` processes (`gpus` per node)."""
    if strategy != "fsdp":
        return {"single": "single GPU", "ddp": "data parallel (DDP)"}.get(strategy, strategy)
    shard = shard_size(dist, gpus or world, world // (gpus or world))
    words = f"sharded (FSDP over {shard} GPUs"
    if shard < world:
        words += f", replicated over {world // shard} nodes"
    if dist is not None and dist.cpu_offload:
        words += ", CPU offload"
    return words + ")"


def _peak(mem: list[dict[str, float]]) -> float:
    return max(m["peak_gb_per_device"] for m in mem)


def host_gb_per_node(mem: list[dict[str, float]], gpus: int) -> float:
    """Host memory a sharded run needs on one node: every GPU's process (loading, offloaded shards)."""
    return max(m.get("host_gb_per_process", 0.0) for m in mem) * gpus


def fits(mem: list[dict[str, float]], inst: Instance) -> bool:
    """The stages fit one GPU of `inst`, and a sharded run's host side fits the instance's memory."""
    return (_peak(mem) <= inst.usable_gpu_memory_gb
            and host_gb_per_node(mem, inst.gpus) <= inst.memory_gb * HOST_USABLE_FRACTION)


def choose_strategy(arch: Arch, stages: "list[RunConfig]", inst: Instance, count: int,
                    dist: "Optional[DistributionSettings]") -> tuple[str, list[dict[str, float]], str]:
    """(strategy, per-stage memory, why) on `count` x `inst`: the spec's `distributed.strategy` when it names
    one, else data parallel when the model fits one GPU and FSDP when it does not (the strategy may not fit)."""
    world = inst.gpus * count
    want = dist.strategy if dist is not None else "auto"
    unsharded = "single" if world == 1 else "ddp"
    shard = shard_size(dist, inst.gpus, count)
    offload = dist is not None and dist.cpu_offload
    if want == "fsdp":
        return "fsdp", stage_memory(arch, stages, shard, cpu_offload=offload), "distributed.strategy: fsdp"
    mem = stage_memory(arch, stages, 1)
    if want == "ddp":
        return unsharded, mem, "distributed.strategy: ddp"
    if world == 1:
        return unsharded, mem, "one GPU"
    usable = f"{inst.usable_gpu_memory_gb:.1f} GB usable on one {inst.gpu}"
    if fits(mem, inst):
        return unsharded, mem, f"the whole model fits one GPU (peak {_peak(mem):.1f} GB <= {usable})"
    too_big = f"data parallel needs {_peak(mem):.1f} GB per GPU > {usable}"
    if any(rc.peft.is_prompt_learning for rc in stages):  # train_entry.sharding.PROMPT_LEARNING_UNSHARDED
        return unsharded, mem, too_big + ", and prompt-learning methods are not sharded"
    return "fsdp", stage_memory(arch, stages, shard, cpu_offload=offload), too_big


def evaluate(arch: Arch, stages: "list[RunConfig]", inst: Instance, count: int, sizes: list[DataSize],
             require_fit: bool = True, dist: "Optional[DistributionSettings]" = None) -> Optional[Candidate]:
    """Fit, time and cost of the stages on `count` × `inst` with the strategy `choose_strategy` picks; None when
    it does not fit (with `require_fit=False`: the estimate anyway), or when FSDP is asked of a single GPU."""
    world = inst.gpus * count
    if dist is not None and dist.strategy == "fsdp" and world == 1:
        return None
    strategy, mem, why = choose_strategy(arch, stages, inst, count, dist)
    if require_fit and not fits(mem, inst):
        return None
    distribution = describe_strategy(strategy, world, dist, inst.gpus)
    sharded = strategy == "fsdp"
    shard = shard_size(dist, inst.gpus, count) if sharded else 1
    out_stages, hours = [], 0.0
    for rc, size in zip(stages, sizes):
        setup = setup_for_stage(rc, shard, cpu_offload=sharded and dist is not None and dist.cpu_offload)
        speed = tokens_per_second(arch, setup, inst.gpu, inst.gpus, count)
        work = workload(rc, size, world)
        if work is None:
            return Candidate(inst, count, strategy, distribution, mem, out_stages, None, why)
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
    return Candidate(inst, count, strategy, distribution, mem, out_stages, hours, why)


def candidates(arch: Arch, provider: str, compute: "ComputeConfig", stages: "list[RunConfig]",
               sizes: list[DataSize], dist: "Optional[DistributionSettings]" = None) -> list[Candidate]:
    """Every catalog instance that fits (narrowed by compute.gpu / gpus_per_node), cheapest first."""
    out = []
    for inst in load_catalog(provider):
        if compute.gpu and not gpu_matches(compute.gpu, inst.gpu):
            continue
        if compute.gpus_per_node and inst.gpus != compute.gpus_per_node:
            continue
        if inst.on_demand_per_hour is None:
            continue
        cand = evaluate(arch, stages, inst, compute.instance_count, sizes, dist=dist)
        if cand is not None:
            out.append(cand)

    def key(c: Candidate) -> tuple:
        price = c.spot_usd if compute.spot else c.on_demand_usd
        per_hour = c.instance.on_demand_per_hour * c.count
        return (price if price is not None else per_hour, per_hour)

    return sorted(out, key=key)
