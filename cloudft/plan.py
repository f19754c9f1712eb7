"""The plan: a spec resolved into what will run, independent of the provider's API.

spec → Plan, a typed value built once by `build_plan` from pure steps: resolved data per stage
(cloudft.data.resolve), what each stage hands to the next (cloudft.stages), the provider's locations, one run config
per stage, and the planner's Estimate (memory, the one InstanceChoice every provider reads, cost). Nothing mutates a
Plan afterwards, and no module that plan.py imports imports it back.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from train_entry.config import DataConfig, DistributedConfig, PlannedResources, RunConfig

from .capabilities import capabilities_of
from .data.resolve import ResolvedData
from .planner.result import Estimate
from .serving.compat import ServeDecision, plan_serving
from .spec import JobSpec, StageSpec
from .stages import Artifact, StageContext, StageLinks, StageLocations, stage_artifact

if TYPE_CHECKING:
    from .machine import Machine

#: locate(spec, run_id, context) → where the provider puts the stage
Locate = Callable[[JobSpec, str, StageContext], StageLocations]


@dataclass(frozen=True)
class StagePlan:
    """One train_entry invocation: its run config, where it reads and writes, and what it hands on."""

    index: int
    method: str
    run_config: RunConfig
    locations: StageLocations
    links: StageLinks
    work_key: str
    produces: Artifact

    @property
    def name(self) -> str:
        return f"{self.index}-{self.method}"

    def to_dict(self) -> dict[str, Any]:
        links = {k: v for k, v in vars(self.links).items() if v is not None}
        return {
            "index": self.index,
            "method": self.method,
            "produces": self.produces,
            "starts_from": links,
            "work_key": self.work_key,
            "locations": self.locations.to_dict(),
            "run_config": self.run_config.model_dump(mode="json"),
        }


@dataclass(frozen=True)
class Plan:
    """What `cloudft submit` will do. Built once by `build_plan`; providers only read it."""

    spec: JobSpec
    provider: str
    run_id: str
    stages: tuple[StagePlan, ...]
    data: tuple[ResolvedData, ...]  # per stage, same order as `stages`
    estimate: Estimate
    warnings: tuple[str, ...]
    rerun: bool = False
    serving: tuple[ServeDecision, ...] = ()  # how each provider would serve the run (cloudft.serving.compat)

    @property
    def multi_stage(self) -> bool:
        return len(self.stages) > 1

    @property
    def key(self) -> str:
        """Id of the whole plan's work (every stage's work key), 16 hex digits: same spec + data → same key."""
        return hashlib.sha256(json.dumps([s.work_key for s in self.stages]).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.spec.name,
            "provider": self.provider,
            "run_id": self.run_id,
            "spec": str(self.spec.source_path) if self.spec.source_path else None,
            "base_model": self.spec.base_model,
            "methods": [s.method for s in self.stages],
            "data": {f"stage{i}": d.to_dict() for i, d in enumerate(self.data)},
            "compute": self.spec.compute.model_dump(mode="json"),
            "budget": self.spec.budget.model_dump(mode="json"),
            "stages": [s.to_dict() for s in self.stages],
            "warnings": list(self.warnings),
            "serving": {d.target.provider: d.to_dict() for d in self.serving},
        }
        out.update(self.estimate.to_dict())
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


def stage_work_key(spec: JobSpec, index: int, versions: dict[str, str], fresh: Optional[str] = None) -> str:
    """Stable id of one stage's training (spec content, stage index, dataset versions), 12 hex digits.

    Every provider keys checkpoint locations (and AWS its job names) on it, so submitting the same spec and data
    again (after a stop, a spot interruption or a crash) resumes from the newest valid checkpoint. `fresh` (the
    run id, with `submit --rerun`) makes a new key, so a rerun starts afresh on every provider alike."""
    body = json.dumps([spec_digest(spec), index, versions or {}] + ([fresh] if fresh else []), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def stage_links(spec: JobSpec, index: int) -> StageLinks:
    """What stage `index` starts from: the latest earlier policy stage's output (an adapter, or full weights when
    training without PEFT), and for rl the latest reward stage. A reward stage starts from the base model."""
    methods = [str(s.method) for s in spec.stage_list()]
    here = methods[index]
    earlier = range(index)
    policy = [i for i in earlier if methods[i] != "reward"]
    init_from = policy[-1] if policy and here != "reward" else None
    rewards = [i for i in earlier if methods[i] == "reward"]
    reward_from = rewards[-1] if here == "rl" and rewards else None
    kind = stage_artifact(methods[init_from], str(spec.peft.type)) if init_from is not None else None
    return StageLinks(init_from=init_from, init_kind=kind, reward_from=reward_from)


def resolve_base_model(spec: JobSpec) -> str:
    """A hub id stays as it is; a local directory (relative to the spec file) becomes absolute."""
    value = spec.base_model
    p = Path(value).expanduser()
    local = p if p.is_absolute() else spec.base_dir / p
    if value.startswith((".", "/", "~")) or local.is_dir():
        return str(local.resolve())
    return value


def _stage_data_config(spec: JobSpec, stage: StageSpec, rdata: ResolvedData, loc: StageLocations) -> DataConfig:
    """The run config's data section: the provider's view of the canonical files, in TRL's column names."""
    data = stage.data or spec.data
    update: dict[str, Any] = {k: getattr(loc, k) for k in ("train", "validation") if getattr(loc, k)}
    if rdata.format and rdata.format != str(data.format):
        update["format"] = rdata.format
    if rdata.local or "format" in update:
        update["columns"] = None  # the canonical file already uses TRL's column names
    return DataConfig.model_validate(data.model_copy(update=update).model_dump())


def _distributed(spec: JobSpec, provider: str, estimate: Estimate) -> DistributedConfig:
    """The world layout of the chosen instance, launched the way the provider launches processes, with the
    strategy the planner chose (`estimate.instance.strategy`) and the spec's `distributed:` settings."""
    choice = estimate.instance
    launcher = capabilities_of(provider).launcher
    if launcher != "platform" and not choice.distributed:
        launcher = "none"  # one process: nothing to launch (a platform launcher starts even one itself)
    settings = spec.distributed.model_dump(exclude={"strategy"})
    return DistributedConfig(**settings, strategy=choice.strategy, nnodes=choice.count,
                             nproc_per_node=max(choice.gpus, 1), launcher=launcher)


def _planned(estimate: Estimate) -> PlannedResources:
    """The planner's expectation, as the run config carries it (train_entry's out-of-memory message)."""
    choice = estimate.instance
    return PlannedResources(peak_memory_gb=estimate.memory.peak_gb_per_device if estimate.memory else None,
                            device_memory_gb=choice.gpu_memory_gb, instance=choice.type or "this machine")


def build_plan(spec: JobSpec, provider: str, run_id: Optional[str] = None, locate: Optional[Locate] = None,
               rerun: bool = False, machine: "Optional[Machine]" = None) -> Plan:
    """Resolve `spec` into a Plan for `provider`.

    Data is resolved first (validated, canonical, versioned), then each stage's links and work key; `locate` (the
    provider's) places the stage; the run configs are written; the planner estimates memory, instance and cost
    from them (local: on `machine`, default this one); the run configs get the chosen world layout. `rerun` gives
    every stage a fresh work key.
    """
    from .data.check import data_warnings
    from .data.resolve import resolve_stage_data
    from .planner import estimate_plan

    run_id = run_id or new_run_id(spec)
    specs = spec.stage_list()
    names = tuple(f"{i}-{s.method}" for i, s in enumerate(specs))
    base_model = resolve_base_model(spec)
    data = tuple(resolve_stage_data(spec, i, s.data or spec.data) for i, s in enumerate(specs))
    drafts: list[tuple[StageLocations, StageLinks, str, RunConfig]] = []
    for i, stage in enumerate(specs):
        links = stage_links(spec, i)
        work_key = stage_work_key(spec, i, data[i].versions, fresh=run_id if rerun else None)
        ctx = StageContext(index=i, method=str(stage.method), data=data[i], work_key=work_key, links=links,
                           names=names)
        loc = locate(spec, run_id, ctx) if locate else StageLocations()
        rc = RunConfig(
            name=spec.name, run_id=run_id, stage=i, stage_count=len(specs), base_model=base_model,
            method=stage.method, peft=spec.peft, data=_stage_data_config(spec, stage, data[i], loc),
            training=spec.stage_training(i), tracking=spec.tracking, eval=spec.eval, export=spec.export,
            outputs=loc.outputs(), reward_model=loc.reward_model, dataset_versions=dict(data[i].versions),
            env_secrets=sorted(spec.secrets),
        )
        drafts.append((loc, links, work_key, rc))
    estimate = estimate_plan(spec, provider, [d[3] for d in drafts], data, machine=machine)
    update = {"distributed": _distributed(spec, provider, estimate), "planned": _planned(estimate)}
    stages = tuple(
        StagePlan(index=i, method=str(specs[i].method), run_config=rc.model_copy(update=update),
                  locations=loc, links=links, work_key=key, produces=stage_artifact(str(specs[i].method),
                                                                                     str(spec.peft.type)))
        for i, (loc, links, key, rc) in enumerate(drafts))
    warnings: list[str] = []
    for w in data_warnings(data) + list(estimate.warnings):
        if w not in warnings:
            warnings.append(w)
    return Plan(spec=spec, provider=provider, run_id=run_id, stages=stages, data=data, estimate=estimate,
                warnings=tuple(warnings), rerun=rerun, serving=plan_serving(spec, stages[-1].produces))


def check_before_submit(plan: Plan, force: bool = False) -> list[str]:
    """Every pre-submit check, before anything is started: the data (errors refused unless `force`, which trains on
    the clean records) and the budget guard (over budget, or a budget without an estimate, refused unless `force`).
    Returns what a forced submit leaves out or skips, for the user to see."""
    from .data.check import check_data
    from .planner import check_budget

    return check_data(plan.data, force=force) + check_budget(plan.spec, plan.provider, plan.estimate, force=force)
