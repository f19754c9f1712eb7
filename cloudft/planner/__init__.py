"""Know before you spend: peak memory, instance choice, time and cost, and the budget guard.

`estimate_plan(spec, provider, stages, data)` is a pure function of the spec, the stages' run configs and their
resolved data: it returns an `Estimate` (cloudft.planner.result) that cloudft.plan.build_plan stores on the Plan.
`check_budget(...)` is a pre-submit check. Imports stay light (json + dataclasses): `cloudft plan` must not import
torch or a cloud SDK.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Optional, Sequence

from train_entry.config import FSDP_ONLY_FIELDS

from ..errors import CloudftError
from .result import CostEstimate, Estimate, InstanceChoice, MemoryEstimate

if TYPE_CHECKING:
    from train_entry.config import RunConfig

    from ..data.resolve import ResolvedData
    from ..machine import Machine
    from ..spec import JobSpec
    from .arch import Arch
    from .catalog import Instance
    from .estimate import Candidate

CLOUD_PROVIDERS = ("aws", "azure")
COMPONENTS = ("weights_gb", "trainable_params_gb", "gradients_gb", "optimizer_gb", "activations_gb", "logits_gb",
              "reference_model_gb", "overhead_gb")
#: The instance a provider uses when the planner cannot choose (unknown model architecture) and the spec names none.
DEFAULT_INSTANCE = {"aws": "ml.g5.2xlarge"}

__all__ = ["estimate_plan", "check_budget", "Estimate", "InstanceChoice"]


def _memory(arch: "Arch", mems: list[dict[str, float]], distribution: str, where: str) -> MemoryEstimate:
    worst = max(range(len(mems)), key=lambda i: mems[i]["peak_gb_per_device"])
    peak = mems[worst]

    def worst_of(key: str) -> Optional[float]:
        values = [m[key] for m in mems if key in m]
        return max(values) if values else None

    return MemoryEstimate(
        peak_gb_per_device=peak["peak_gb_per_device"], **{k: peak[k] for k in COMPONENTS},
        model=arch.name, architecture_from=arch.source, params_b=peak["params_b"],
        trainable_params_m=peak["trainable_params_m"], tokens_per_micro_batch=int(peak["tokens_per_micro_batch"]),
        distribution=distribution, device=where,
        peak_stage=worst if len(mems) > 1 else None,
        per_stage_peak_gb=tuple(m["peak_gb_per_device"] for m in mems) if len(mems) > 1 else None,
        cpu_offload_gb=worst_of("cpu_offload_gb"), load_peak_gb=worst_of("load_peak_gb"),
        host_gb_per_process=worst_of("host_gb_per_process"),
    )


def _choice(c: "Candidate", chosen_by: str, others: Sequence["Candidate"] = ()) -> InstanceChoice:
    inst = c.instance
    return InstanceChoice(
        type=inst.type, count=c.count, gpus=inst.gpus, strategy=c.strategy, distribution=c.distribution,
        chosen=chosen_by, strategy_reason=c.why, gpu=inst.gpu, gpu_memory_gb=inst.gpu_memory_gb,
        price_per_hour=inst.on_demand_per_hour,
        spot_price_per_hour=inst.spot_per_hour, prices_as_of=inst.price_date,
        alternatives=tuple({"type": o.instance.type, "gpu": o.instance.gpu, "gpus": o.instance.gpus,
                            "on_demand_usd": _usd(o.on_demand_usd), "spot_usd": _usd(o.spot_usd)} for o in others),
    )


def _unestimated_strategy(spec: "JobSpec", world: int, where: str) -> tuple[str, str]:
    """(strategy, why) without a memory estimate to choose by: the spec's FSDP, else data parallel."""
    require_shardable(spec, where, world)
    if world > 1 and spec.distributed.strategy == "fsdp":
        return "fsdp", "distributed.strategy: fsdp"
    why = "distributed.strategy: ddp" if spec.distributed.strategy == "ddp" else "no memory estimate to choose by"
    return ("ddp" if world > 1 else "single"), why


def _catalog_choice(spec: "JobSpec", inst: "Instance", count: int, chosen_by: str) -> InstanceChoice:
    """An instance the spec names, taken as it is (no estimate to choose a strategy by: the spec's, else DDP)."""
    from .estimate import describe_strategy

    strategy, why = _unestimated_strategy(spec, inst.gpus * count, f"{count} x {inst.type} ({inst.gpus} GPU)")
    return InstanceChoice(type=inst.type, count=count, gpus=inst.gpus, strategy=strategy,
                          distribution=describe_strategy(strategy, inst.gpus * count, spec.distributed, inst.gpus),
                          chosen=chosen_by, gpu=inst.gpu, gpu_memory_gb=inst.gpu_memory_gb,
                          price_per_hour=inst.on_demand_per_hour, spot_price_per_hour=inst.spot_per_hour,
                          prices_as_of=inst.price_date, strategy_reason=why)


def local_choice(spec: "JobSpec", strategy: Optional[str] = None, why: str = "") -> InstanceChoice:
    """This machine: compute.gpus_per_node processes (default 1), with `strategy` when the estimate chose one."""
    from .estimate import describe_strategy

    gpus = spec.compute.gpus_per_node or 1
    if strategy is None:
        strategy, why = _unestimated_strategy(spec, gpus, "this machine (compute.gpus_per_node)")
    return InstanceChoice(type=None, count=1, gpus=gpus, strategy=strategy,
                          distribution=describe_strategy(strategy, gpus, spec.distributed, gpus),
                          chosen="this machine", strategy_reason=why)


def require_shardable(spec: "JobSpec", where: str, world: int) -> None:
    """`distributed.strategy: fsdp` needs several processes to shard over."""
    if spec.distributed.strategy == "fsdp" and world < 2:
        raise CloudftError(f"distributed.strategy is fsdp, but {where} runs one process: there is nothing to "
                           "shard over",
                           hint="use several GPUs (compute.gpus_per_node, an instance with several GPUs, or "
                                "compute.instance_count), or set distributed.strategy: auto")


def _usd(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(v, 2)


def _cost(c: "Candidate", spot: bool, sizes: list) -> CostEstimate:
    from .estimate import STARTUP_HOURS

    first = c.stages[0] if c.stages else {}
    many = len(c.stages) > 1
    return CostEstimate(
        hours=None if c.hours is None else round(c.hours, 3),
        on_demand_usd=_usd(c.on_demand_usd),
        spot_usd=_usd(c.spot_usd),
        billing="spot" if spot else "on-demand",
        estimated_usd=_usd(c.spot_usd if spot else c.on_demand_usd),
        step_seconds=first.get("step_seconds"),
        tokens_per_s=first.get("tokens_per_s"),
        tokens_per_s_per_gpu=first.get("tokens_per_s_per_gpu"),
        steps=sum(s["steps"] for s in c.stages) if c.stages else None,
        train_tokens=sizes[0].tokens if len(sizes) == 1 else [s.tokens for s in sizes],
        tokens_from=tuple(sorted({s.source for s in sizes})),
        assumptions=(
            f"hardware-FLOPs utilisation {first.get('hfu_assumed', 0.4):g}; FLOPs/token = k*N (+ attention), "
            "k=4 LoRA, 6 full or LoRA+GC, 8 full+GC; DPO/KTO add a 2N reference forward",
            f"{STARTUP_HOURS:g} h per stage for provisioning, image pull, model download and saving",
            "spot price " + (c.instance.spot_source if c.instance.spot_per_hour is not None else "unknown"),
        ),
        stages=tuple(c.stages) if many else None,
        batching=None if many else first.get("batching"),
        flops_per_token=None if many else first.get("flops_per_token"),
    )


def estimate_plan(spec: "JobSpec", provider: str, stages: "Sequence[RunConfig]",
                  data: "Sequence[ResolvedData]", machine: "Optional[Machine]" = None) -> Estimate:
    """Memory (every provider), the instance choice, time and cost of `stages` on `provider` (for local: on
    `machine`, default this one); warnings say what is unknown."""
    from .arch import resolve_arch
    from .tokens import data_size

    found = resolve_arch(spec.base_model, spec.base_dir)
    warnings = list(found.warnings)
    arch = found.arch
    stages = list(stages)
    sizes = [data_size(d) for d in data]
    if provider not in CLOUD_PROVIDERS:
        from ..machine import this_machine

        if spec.compute.instance_type:
            warnings.append(f"compute.instance_type ({spec.compute.instance_type}) is not used by the {provider} "
                            "provider: it runs on this machine")
        est = _estimate_local(spec, provider, arch, stages, sizes, machine or this_machine(), warnings)
    else:
        est = _estimate_cloud(spec, provider, arch, stages, sizes, warnings)
    unused = _fsdp_settings_unused(spec, est.instance)
    return dataclasses.replace(est, warnings=est.warnings + unused) if unused else est


def _fsdp_settings_unused(spec: "JobSpec", choice: InstanceChoice) -> tuple[str, ...]:
    """A warning when the spec sets FSDP-only fields but the plan runs unsharded (never a silent drop)."""
    given = sorted(set(spec.distributed.model_fields_set) & set(FSDP_ONLY_FIELDS))
    if not given or choice.strategy == "fsdp":
        return ()
    reason = choice.strategy_reason or "the planner's choice"
    return (f"distributed.{', distributed.'.join(given)} apply to FSDP only, and this plan runs "
            f"{choice.distribution} ({reason}): they are not used; set distributed.strategy: fsdp to shard anyway",)


def _estimate_local(spec: "JobSpec", provider: str, arch: "Optional[Arch]", stages: "list[RunConfig]",
                    sizes: list, machine: "Machine", warnings: list[str]) -> Estimate:
    """This machine: memory per device (system RAM without a GPU, fp32) and the time from the throughput model.
    On several GPUs, `distributed.strategy: auto` shards when one GPU cannot hold the run."""
    from .estimate import STARTUP_HOURS, setup_for_stage, stage_memory, workload
    from .throughput import cpu_tokens_per_second, tokens_per_second

    choice = local_choice(spec)
    if arch is None:
        return Estimate(choice, None, None, tuple(warnings))
    cpu = not machine.has_cuda
    device = (f"this machine ({provider} provider): system RAM (no CUDA GPU, fp32)" if cpu
              else f"this machine ({provider} provider): one {machine.gpus[0].name}")
    offload = spec.distributed.cpu_offload
    mems = stage_memory(arch, stages, 1, cpu=cpu) if choice.strategy != "fsdp" else \
        stage_memory(arch, stages, choice.gpus, cpu=cpu, cpu_offload=offload)
    if choice.strategy != "fsdp" and spec.distributed.strategy == "auto" and choice.gpus > 1 and not cpu:
        usable = machine.gpus[0].memory_gb * 0.92
        peak = max(m["peak_gb_per_device"] for m in mems)
        if peak > usable:
            mems = stage_memory(arch, stages, choice.gpus, cpu=cpu, cpu_offload=offload)
            choice = local_choice(spec, "fsdp", f"data parallel needs {peak:.1f} GB per GPU > {usable:.1f} GB "
                                                f"usable on one {machine.gpus[0].name}")
    memory = _memory(arch, mems, choice.distribution, device)
    shard = choice.gpus if choice.strategy == "fsdp" else 1
    gpu = None if cpu else machine.gpus[0].catalog
    hours, per_stage = 0.0, []
    for rc, size in zip(stages, sizes):
        setup = setup_for_stage(rc, shard, cpu, offload)
        work = workload(rc, size, choice.world_size)
        if work is None:
            return Estimate(choice, memory, None, tuple(warnings))
        if gpu is None and not cpu:
            warnings.append(f"{machine.gpus[0].name} is not in the planner's GPU table: no time estimate")
            return Estimate(choice, memory, None, tuple(warnings))
        speed = cpu_tokens_per_second(arch, setup, machine.cpus) if cpu else \
            tokens_per_second(arch, setup, gpu, min(choice.gpus, len(machine.gpus)))
        factor = 3.0 if setup.method == "rl" else 1.0
        stage_h = work.steps * work.tokens_per_step * factor / speed["tokens_per_s"] / 3600
        hours += stage_h
        per_stage.append({"stage": rc.stage, "method": setup.method, "steps": work.steps,
                          "hours": round(stage_h, 3), "tokens_per_s": speed["tokens_per_s"],
                          "batching": work.assumption})
    cost = CostEstimate(
        hours=round(hours, 3), on_demand_usd=None, spot_usd=None, billing="this machine", estimated_usd=None,
        tokens_per_s=per_stage[0]["tokens_per_s"] if per_stage else None,
        steps=sum(s["steps"] for s in per_stage),
        tokens_from=tuple(sorted({s.source for s in sizes})),
        assumptions=((f"{machine.cpus} CPU cores" if cpu else machine.gpus[0].name) + ": "
                     + ("the CPU throughput assumption of docs/planner.md (order of magnitude)" if cpu
                        else "the GPU throughput model of docs/planner.md"),
                     f"no {STARTUP_HOURS:g} h start-up: nothing to provision"),
        stages=tuple(per_stage) if len(per_stage) > 1 else None)
    return Estimate(choice, memory, cost, tuple(warnings))


def _unplanned(spec: "JobSpec", provider: str, why: str, warnings: list[str]) -> InstanceChoice:
    """The instance when there is no estimate to choose by: the spec's, else the provider's default."""
    from .catalog import find_instance

    compute = spec.compute
    itype = compute.instance_type or DEFAULT_INSTANCE.get(provider)
    if itype is None:
        return InstanceChoice(type=None, count=compute.instance_count, gpus=compute.gpus_per_node or 1,
                              strategy="single", distribution="unknown", chosen=why,
                              strategy_reason="no instance to run on")
    by = "from spec (compute.instance_type)" if compute.instance_type else f"{provider} default ({why})"
    if not compute.instance_type:
        warnings.append(f"no instance type in the spec and {why}: using {itype}")
    try:
        return _catalog_choice(spec, find_instance(provider, itype), compute.instance_count, by)
    except CloudftError as exc:
        gpus = compute.gpus_per_node or 1
        warnings.append(f"{exc.message}: no cost estimate, and {gpus} GPU(s) per instance assumed "
                        f"(set compute.gpus_per_node if that is wrong; {exc.hint})")
        strategy, why = _unestimated_strategy(spec, gpus * compute.instance_count, f"{itype} (assumed {gpus} GPU)")
        return InstanceChoice(type=itype, count=compute.instance_count, gpus=gpus, strategy=strategy,
                              distribution="unknown", chosen="from spec (not in catalog)", strategy_reason=why)


def _estimate_cloud(spec: "JobSpec", provider: str, arch: "Optional[Arch]", stages: "list[RunConfig]",
                    sizes: list, warnings: list[str]) -> Estimate:
    from .catalog import find_instance
    from .estimate import candidates, evaluate, stage_memory

    compute = spec.compute
    where = f"one GPU of the {provider} instance"
    if arch is None:
        return Estimate(_unplanned(spec, provider, "the model's architecture is unknown", warnings),
                        warnings=tuple(warnings))
    if compute.instance_type:
        try:
            inst = find_instance(provider, compute.instance_type)
        except CloudftError:
            choice = _unplanned(spec, provider, "", warnings)
            memory = _memory(arch, stage_memory(arch, stages, 1), "unknown", where)
            return Estimate(choice, memory, None, tuple(warnings))
        require_shardable(spec, f"{compute.instance_count} x {inst.type} ({inst.gpus} GPU)",
                          inst.gpus * compute.instance_count)
        dist = spec.distributed
        chosen = evaluate(arch, stages, inst, compute.instance_count, sizes, dist=dist)
        if chosen is None:
            chosen = evaluate(arch, stages, inst, compute.instance_count, sizes, require_fit=False, dist=dist)
            peak = max(m["peak_gb_per_device"] for m in chosen.memory)
            warnings.append(
                f"{inst.type} does not fit: estimated peak {peak:.1f} GB per GPU > {inst.usable_gpu_memory_gb:.1f} GB "
                f"usable on its {inst.gpu}; choose a larger instance, qlora, a smaller per_device_batch_size / "
                "max_length, or gradient_checkpointing: true")
        ranked, by = [], "from spec (compute.instance_type)"
    else:
        ranked = candidates(arch, provider, compute, stages, sizes, spec.distributed)
        if not ranked:
            peak = max(m["peak_gb_per_device"] for m in stage_memory(arch, stages, 1))
            hint = f" with a {compute.gpu} GPU" if compute.gpu else ""
            warnings.append(f"no {provider} instance{hint} in the catalog fits this job (estimated peak "
                            f"{peak:.1f} GB per GPU unsharded){smaller_hint(arch, spec, stages)}")
            memory = _memory(arch, stage_memory(arch, stages, 1), "none fits", where)
            choice = _unplanned(spec, provider, "no catalog instance fits", warnings)
            return Estimate(choice, memory, None, tuple(warnings))
        chosen = ranked[0]
        by = "cheapest that fits" + (f" (gpu: {compute.gpu})" if compute.gpu else "") + \
            (" at spot prices" if compute.spot else " at on-demand prices")
    if chosen.hours is None:
        warnings.append("training data size unknown (remote data without counts): no time or cost estimate")
    elif chosen.hours > compute.max_runtime_hours:
        warnings.append(f"estimated {chosen.hours:.1f} h exceeds compute.max_runtime_hours "
                        f"({compute.max_runtime_hours:g} h): the job would be stopped first")
    return Estimate(_choice(chosen, by, ranked[1:4]), _memory(arch, chosen.memory, chosen.distribution, where),
                    _cost(chosen, compute.spot, sizes), tuple(warnings))


def smaller_hint(arch: "Arch", spec: "JobSpec", stages: "list[RunConfig]", cpu: bool = False) -> str:
    """What would bring the peak down: gradient checkpointing, then QLoRA (per-device, unsharded)."""
    from .estimate import setup_for_stage
    from .memory import estimate_memory

    tries = [("gradient_checkpointing: true", {"gradient_checkpointing": True}),
             ("peft.type: qlora + gradient_checkpointing: true",
              {"gradient_checkpointing": True, "peft": "qlora", "quant_bits": 4})]
    hints = []
    for label, change in tries:
        if spec.peft.type in ("none", "qlora") and "peft" in change:
            continue  # QLoRA is a different method, not a memory setting of full fine-tuning
        if all(rc.training.gradient_checkpointing for rc in stages) and "peft" not in change:
            continue  # already on
        peak = max(estimate_memory(arch, dataclasses.replace(setup_for_stage(rc, cpu=cpu), **change))
                   ["peak_gb_per_device"] for rc in stages)
        hints.append(f"with {label} the peak would be {peak:.1f} GB")
    return "; " + "; ".join(hints) if hints else ""


def check_budget(spec: "JobSpec", provider: str, estimate: Estimate, force: bool = False) -> list[str]:
    """Refuse a plan whose estimate exceeds `budget.max_cost_usd` or `budget.max_hours` (unless `force`), or
    that has a budget but no estimate to check it against. Returns the warnings a forced submit carries."""
    budget = spec.budget
    if budget.max_cost_usd is None and budget.max_hours is None:
        return []
    if provider not in CLOUD_PROVIDERS:
        return []  # this machine bills nothing; its time is the local preflight's concern
    cost = estimate.cost
    inst = estimate.instance
    problems = []
    if cost is None or cost.hours is None:
        problems.append("the plan has no time/cost estimate to check budget against ("
                        + "; ".join(estimate.warnings[-1:] or ["unknown model or instance price"]) + ")")
    else:
        usd = cost.estimated_usd
        if budget.max_cost_usd is not None and usd is None:
            problems.append(f"no price is known for {inst.type}, so budget.max_cost_usd cannot be checked")
        elif budget.max_cost_usd is not None and usd > budget.max_cost_usd:
            problems.append(f"estimated cost ${usd:,.2f} ({cost.billing}: {cost.hours:.2f} h x {inst.count} x "
                            f"{inst.type}) > budget.max_cost_usd ${budget.max_cost_usd:,.2f}")
        if budget.max_hours is not None and cost.hours > budget.max_hours:
            problems.append(f"estimated time {cost.hours:.2f} h > budget.max_hours {budget.max_hours:g} h")
    if not problems:
        return []
    if force:
        return ["budget not enforced (--force): " + "; ".join(problems)]
    raise CloudftError("plan is over budget or cannot be checked against it: " + "; ".join(problems),
                       hint="raise the budget in the spec, reduce epochs/data, pick a cheaper instance or one with "
                            "a known price, or pass --force to submit anyway")
