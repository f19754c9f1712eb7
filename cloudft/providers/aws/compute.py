"""Instance choice for a training job: the spec, else the planner's pick, else a default (with a warning)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from ...plan import Plan
    from .section import AwsSection

DEFAULT_INSTANCE = "ml.g5.2xlarge"

#: GPUs per instance for common SageMaker training types (size → GPUs; sizes not listed have 1).
_MULTI_GPU = {
    "g4dn.12xlarge": 4, "g5.12xlarge": 4, "g5.24xlarge": 4, "g5.48xlarge": 8, "g6.12xlarge": 4,
    "g6.24xlarge": 4, "g6.48xlarge": 8, "g6e.12xlarge": 4, "g6e.24xlarge": 4, "g6e.48xlarge": 8,
    "p3.8xlarge": 4, "p3.16xlarge": 8, "p3dn.24xlarge": 8, "p4d.24xlarge": 8, "p4de.24xlarge": 8,
    "p5.48xlarge": 8, "p5e.48xlarge": 8, "p5en.48xlarge": 8,
}


def gpus_of(instance_type: str) -> int:
    """GPUs on a SageMaker instance type (0 for CPU families)."""
    kind = instance_type.removeprefix("ml.")
    family = kind.split(".")[0]
    if not family.startswith(("g", "p", "trn", "inf")):
        return 0
    return _MULTI_GPU.get(kind, 1)


@dataclass
class ComputeChoice:
    instance_type: str
    instance_count: int
    gpus_per_node: int
    warning: Optional[str] = None

    @property
    def distributed(self) -> bool:
        """torchrun is needed for more than one process in total."""
        return self.instance_count * max(self.gpus_per_node, 1) > 1


def choose(plan: "Plan", section: "AwsSection") -> ComputeChoice:
    compute = plan.spec.compute
    picked = plan.extras.get("instance") if isinstance(plan.extras.get("instance"), dict) else {}
    warning = None
    itype = compute.instance_type or picked.get("type")
    if not itype:
        itype = DEFAULT_INSTANCE
        warning = f"no instance type in the spec or the plan; using {DEFAULT_INSTANCE}"
    count = section.instance_count or (compute.instance_count if compute.instance_count != 1 else None) \
        or int(picked.get("count") or 1)
    gpus = compute.gpus_per_node or gpus_of(itype)
    return ComputeChoice(itype, int(count), int(gpus), warning)
