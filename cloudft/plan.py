"""The plan: a spec resolved into what will run, independent of the provider's API.

spec → Plan (run configs for train_entry, data locations, output/checkpoint locations, and the
planner's `memory` / `instance` / `cost` estimates) → provider backend.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from train_entry.config import DataConfig, DistributedConfig, OutputsConfig, RunConfig, TrainingConfig

from .spec import JobSpec, StageSpec


@dataclass
class StagePlan:
    """One train_entry invocation."""

    index: int
    method: str
    run_config: RunConfig
    locations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "method": self.method,
            "locations": self.locations,
            "run_config": self.run_config.model_dump(mode="json"),
        }


@dataclass
class Plan:
    """What `cloudft submit` will do. `extras` holds planner sections (memory, instance, cost)."""

    spec: JobSpec
    provider: str
    run_id: str
    stages: list[StagePlan]
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def multi_stage(self) -> bool:
        return len(self.stages) > 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.spec.name,
            "provider": self.provider,
            "run_id": self.run_id,
            "spec": str(self.spec.source_path) if self.spec.source_path else None,
            "base_model": self.spec.base_model,
            "methods": [s.method for s in self.stages],
            "data": self.data,
            "compute": self.spec.compute.model_dump(mode="json"),
            "budget": self.spec.budget.model_dump(mode="json"),
            "stages": [s.to_dict() for s in self.stages],
            "warnings": self.warnings,
        }
        out.update(self.extras)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


def new_run_id(spec: JobSpec) -> str:
    """A readable, unique id: NAME-YYYYmmdd-HHMMSS-xxxx."""
    return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def spec_digest(spec: JobSpec) -> str:
    """Stable hash of the spec's content (not its file path)."""
    body = spec.model_dump(mode="json")
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def stage_work_key(spec: JobSpec, index: int, versions: dict[str, str]) -> str:
    """Stable id of one stage's training (spec content, stage index, dataset versions), 12 hex digits.

    Providers key checkpoint locations on it, so submitting the same spec and data again (after a stop,
    a spot interruption or a crash) resumes from the newest valid checkpoint instead of starting over."""
    body = json.dumps([spec_digest(spec), index, versions or {}], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def _stage_training(spec: JobSpec, stage: StageSpec) -> TrainingConfig:
    if not stage.training:
        return spec.training
    merged = spec.training.model_dump()
    merged.update(stage.training)
    return TrainingConfig.model_validate(merged)


def _stage_data(spec: JobSpec, stage: StageSpec) -> DataConfig:
    return stage.data or spec.data


def check_before_submit(plan: "Plan", force: bool = False) -> None:
    """Every pre-submit check, before anything is started: the data (errors refused unless `force`, which
    trains on the clean records) and the budget guard (over-budget refused unless `force`)."""
    from .data.check import check_plan
    from .planner import check_budget

    check_plan(plan, force=force)
    check_budget(plan, force=force)


def _distributed(spec: JobSpec) -> DistributedConfig:
    """World layout from `compute` (cloud providers refine it for the instance they launch)."""
    nproc = spec.compute.gpus_per_node or 1
    nnodes = spec.compute.instance_count
    return DistributedConfig(nnodes=nnodes, nproc_per_node=nproc,
                             launcher="torchrun" if nproc * nnodes > 1 else "none")


def resolve_base_model(spec: JobSpec) -> str:
    """A hub id stays as it is; a local directory (relative to the spec file) becomes absolute."""
    from pathlib import Path

    value = spec.base_model
    p = Path(value).expanduser()
    local = p if p.is_absolute() else spec.base_dir / p
    if value.startswith((".", "/", "~")) or local.is_dir():
        return str(local.resolve())
    return value


def build_plan(spec: JobSpec, provider: str, run_id: Optional[str] = None,
               locate: Optional[Callable[..., dict[str, str]]] = None) -> Plan:
    """Resolve `spec` into a Plan for `provider`.

    Data is resolved first (validated, canonical, versioned: `cloudft.data.resolve.resolve_stage_data`), then
    `locate(spec, run_id, index, stage, data)` — the provider's — returns the stage's locations
    (`output_dir`, `checkpoint_dir`, `data_dir`, `init_adapter`, `reward_model`, and `train` /
    `validation` as the container will see them). Keys named like run-config fields go into it.
    """
    from .data.resolve import resolve_stage_data
    from .planner import annotate_plan

    run_id = run_id or new_run_id(spec)
    stages = spec.stage_list()
    plans: list[StagePlan] = []
    resolved: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    base_model = resolve_base_model(spec)
    for i, stage in enumerate(stages):
        data = _stage_data(spec, stage)
        rdata = resolve_stage_data(spec, i, data)
        resolved[f"stage{i}"] = rdata
        warnings.extend(w for w in rdata.get("warnings", []) if w not in warnings)
        locations = locate(spec, run_id, i, stage, rdata) if locate else {}
        outputs = OutputsConfig(**{k: locations[k] for k in OutputsConfig.model_fields if k in locations})
        update = {k: locations[k] for k in ("train", "validation") if k in locations}
        if rdata.get("format") and rdata["format"] != str(data.format):
            update["format"] = rdata["format"]
        if rdata.get("dataset_dir") or "format" in update:
            update["columns"] = None  # the canonical file already uses TRL's column names
        data = data.model_copy(update=update)
        rc = RunConfig(
            name=spec.name,
            run_id=run_id,
            stage=i,
            stage_count=len(stages),
            base_model=base_model,
            method=stage.method,
            peft=spec.peft,
            data=DataConfig.model_validate(data.model_dump()),
            training=_stage_training(spec, stage),
            tracking=spec.tracking,
            eval=spec.eval,
            export=spec.export,
            outputs=outputs,
            distributed=_distributed(spec),
            reward_model=locations.get("reward_model"),
            dataset_versions=dict(rdata.get("versions") or {}),
            env_secrets=sorted(spec.secrets),
        )
        plans.append(StagePlan(index=i, method=str(stage.method), run_config=rc, locations=locations))
    plan = Plan(spec=spec, provider=provider, run_id=run_id, stages=plans, data=resolved, warnings=warnings)
    annotate_plan(plan)  # memory, instance, cost
    return plan
