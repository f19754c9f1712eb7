"""What the planner answers, as typed values: memory, the one instance choice every provider reads, cost.

`Estimate` is built once (cloudft.planner.estimate_plan) and stored on the Plan; providers read
`plan.estimate.instance` instead of deriving an instance, a count or a GPU count of their own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Optional

#: How the processes of a run share the work. "single": one process; "ddp": data parallel (every device holds
#: the whole model); "fsdp": parameters, gradients and optimizer state sharded over the devices.
Strategy = Literal["single", "ddp", "fsdp"]


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory per device of the most demanding stage, by component (GiB)."""

    peak_gb_per_device: float
    weights_gb: float
    trainable_params_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    logits_gb: float
    reference_model_gb: float
    overhead_gb: float
    model: str
    architecture_from: str
    params_b: float
    trainable_params_m: float
    tokens_per_micro_batch: int
    distribution: str
    device: str
    units: str = "GiB; estimate, validated to ~7.5% mean error on published tables (docs/planner.md)"
    peak_stage: Optional[int] = None
    per_stage_peak_gb: Optional[tuple[float, ...]] = None
    cpu_offload_gb: Optional[float] = None  # FSDP with CPU offload: host memory per process for the shards
    load_peak_gb: Optional[float] = None  # FSDP + QLoRA: the whole quantized model on each GPU before sharding
    host_gb_per_process: Optional[float] = None  # FSDP: host memory each process needs (loading, offload)

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


@dataclass(frozen=True)
class InstanceChoice:
    """Where the plan runs: instance type, how many, GPUs per instance (from the catalog) and the strategy, with
    the reason for it (`strategy_reason`). The strategy is what the stages' run configs run
    (`run_config.distributed.strategy`, cloudft.plan).

    For the local provider `type` is None ("this machine") and `gpus` is compute.gpus_per_node (default 1)."""

    type: Optional[str]
    count: int
    gpus: int
    strategy: Strategy
    distribution: str
    chosen: str
    gpu: Optional[str] = None
    gpu_memory_gb: Optional[float] = None
    price_per_hour: Optional[float] = None
    spot_price_per_hour: Optional[float] = None
    prices_as_of: Optional[str] = None
    alternatives: tuple[dict[str, Any], ...] = ()
    strategy_reason: str = ""

    @property
    def world_size(self) -> int:
        """Training processes in total (one per GPU, at least one per instance)."""
        return self.count * max(self.gpus, 1)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def to_dict(self) -> dict[str, Any]:
        out = _clean(asdict(self))
        if not self.alternatives:
            out.pop("alternatives")
        return out


@dataclass(frozen=True)
class CostEstimate:
    """Time and money of the whole plan on the chosen instance."""

    hours: Optional[float]
    on_demand_usd: Optional[float]
    spot_usd: Optional[float]
    billing: str
    estimated_usd: Optional[float]
    step_seconds: Optional[float] = None
    tokens_per_s: Optional[float] = None
    tokens_per_s_per_gpu: Optional[float] = None
    steps: Optional[int] = None
    train_tokens: Any = None
    tokens_from: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()
    stages: Optional[tuple[dict[str, Any], ...]] = None
    batching: Optional[str] = None
    flops_per_token: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


@dataclass(frozen=True)
class Estimate:
    """The planner's whole answer for a plan. Sections it could not compute are None, with a warning saying why."""

    instance: InstanceChoice
    memory: Optional[MemoryEstimate] = None
    cost: Optional[CostEstimate] = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instance": self.instance.to_dict()}
        if self.memory is not None:
            out["memory"] = self.memory.to_dict()
        if self.cost is not None:
            out["cost"] = self.cost.to_dict()
        return out
