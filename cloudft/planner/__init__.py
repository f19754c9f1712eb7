"""Know before you spend: peak memory, instance choice, time and cost, and the budget guard.

`annotate_plan(plan)` is called by cloudft.plan.build_plan: it adds `memory`, `instance` and `cost`
to `plan.extras`. `check_budget(plan, force)` is a pre-submit check (cloudft.plan.check_before_submit).
Imports stay light (json + dataclasses): `cloudft plan` must not import torch or a cloud SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..errors import CloudftError

if TYPE_CHECKING:
    from ..plan import Plan
    from .arch import Arch
    from .estimate import Candidate

CLOUD_PROVIDERS = ("aws", "azure")
COMPONENTS = ("weights_gb", "trainable_params_gb", "gradients_gb", "optimizer_gb", "activations_gb", "logits_gb",
              "reference_model_gb", "overhead_gb")

__all__ = ["annotate_plan", "check_budget"]


def _memory_section(arch: "Arch", mems: list[dict[str, float]], distribution: str, where: str) -> dict[str, Any]:
    worst = max(range(len(mems)), key=lambda i: mems[i]["peak_gb_per_device"])
    out: dict[str, Any] = {"peak_gb_per_device": mems[worst]["peak_gb_per_device"]}
    out.update({k: mems[worst][k] for k in COMPONENTS})
    out.update({
        "model": arch.name,
        "architecture_from": arch.source,
        "params_b": mems[worst]["params_b"],
        "trainable_params_m": mems[worst]["trainable_params_m"],
        "tokens_per_micro_batch": mems[worst]["tokens_per_micro_batch"],
        "distribution": distribution,
        "device": where,
        "units": "GiB; estimate, validated to ~7.5% mean error on published tables (docs/planner.md)",
    })
    if len(mems) > 1:
        out["peak_stage"] = worst
        out["per_stage_peak_gb"] = [m["peak_gb_per_device"] for m in mems]
    return out


def _instance_section(c: "Candidate", chosen_by: str, others: list["Candidate"]) -> dict[str, Any]:
    inst = c.instance
    section: dict[str, Any] = {
        "type": inst.type,
        "gpus": inst.gpus,
        "gpu_memory_gb": inst.gpu_memory_gb,
        "count": c.count,
        "gpu": inst.gpu,
        "price_per_hour": inst.on_demand_per_hour,
        "spot_price_per_hour": inst.spot_per_hour,
        "prices_as_of": inst.price_date,
        "distribution": c.distribution,
        "chosen": chosen_by,
    }
    if others:
        section["alternatives"] = [
            {"type": o.instance.type, "gpu": o.instance.gpu, "gpus": o.instance.gpus,
             "on_demand_usd": _usd(o.on_demand_usd), "spot_usd": _usd(o.spot_usd)} for o in others]
    return section


def _usd(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(v, 2)


def _cost_section(c: "Candidate", spot: bool, sizes: list) -> dict[str, Any]:
    from .estimate import STARTUP_HOURS

    first = c.stages[0] if c.stages else {}
    out: dict[str, Any] = {
        "hours": None if c.hours is None else round(c.hours, 3),
        "on_demand_usd": _usd(c.on_demand_usd),
        "spot_usd": _usd(c.spot_usd),
        "billing": "spot" if spot else "on-demand",
        "estimated_usd": _usd(c.spot_usd if spot else c.on_demand_usd),
        "step_seconds": first.get("step_seconds"),
        "tokens_per_s": first.get("tokens_per_s"),
        "tokens_per_s_per_gpu": first.get("tokens_per_s_per_gpu"),
        "steps": sum(s["steps"] for s in c.stages) if c.stages else None,
        "train_tokens": sizes[0].tokens if len(sizes) == 1 else [s.tokens for s in sizes],
        "tokens_from": sorted({s.source for s in sizes}),
        "assumptions": [
            f"hardware-FLOPs utilisation {first.get('hfu_assumed', 0.4):g}; FLOPs/token = k*N (+ attention), "
            "k=4 LoRA, 6 full or LoRA+GC, 8 full+GC; DPO/KTO add a 2N reference forward",
            f"{STARTUP_HOURS:g} h per stage for provisioning, image pull, model download and saving",
            "spot price " + (c.instance.spot_source if c.instance.spot_per_hour is not None else "unknown"),
        ],
    }
    if len(c.stages) > 1:
        out["stages"] = c.stages
    elif c.stages:
        out["batching"] = first.get("batching")
        out["flops_per_token"] = first.get("flops_per_token")
    return out


def annotate_plan(plan: "Plan") -> None:
    """Add `memory` (all providers), `instance` and `cost` (aws, azure) to `plan.extras`; warn when unknown."""
    from .arch import resolve_arch
    from .tokens import data_size

    spec = plan.spec
    found = resolve_arch(spec.base_model, spec.base_dir)
    plan.warnings.extend(found.warnings)
    arch = found.arch
    if arch is None:
        return
    from .estimate import stage_memory

    if plan.provider not in CLOUD_PROVIDERS:
        plan.extras["memory"] = _memory_section(
            arch, stage_memory(arch, plan, 1), "single device",
            f"this machine ({plan.provider} provider): per-GPU estimate; without a GPU it is system RAM")
        return
    sizes = [data_size(plan.data.get(f"stage{st.index}", {})) for st in plan.stages]
    _annotate_cloud(plan, arch, sizes)


def _annotate_cloud(plan: "Plan", arch: "Arch", sizes: list) -> None:
    from .catalog import find_instance
    from .estimate import candidates, evaluate, stage_memory

    compute = plan.spec.compute
    where = f"one GPU of the {plan.provider} instance"
    if compute.instance_type:
        try:
            inst = find_instance(plan.provider, compute.instance_type)
        except CloudftError as exc:
            plan.warnings.append(f"{exc.message}: no cost estimate ({exc.hint})")
            plan.extras["memory"] = _memory_section(arch, stage_memory(arch, plan, 1), "unknown", where)
            plan.extras["instance"] = {"type": compute.instance_type, "gpus": None, "gpu_memory_gb": None,
                                       "count": compute.instance_count, "gpu": None, "price_per_hour": None,
                                       "chosen": "from spec (not in catalog)"}
            return
        chosen = evaluate(arch, plan, inst, compute.instance_count, sizes)
        if chosen is None:
            chosen = evaluate(arch, plan, inst, compute.instance_count, sizes, require_fit=False)
            peak = chosen.memory and max(m["peak_gb_per_device"] for m in chosen.memory)
            plan.warnings.append(
                f"{inst.type} does not fit: estimated peak {peak:.1f} GB per GPU > {inst.usable_gpu_memory_gb:.1f} GB "
                f"usable on its {inst.gpu}; choose a larger instance, qlora, a smaller per_device_batch_size / "
                "max_length, or gradient_checkpointing: true")
        ranked, by = [], "from spec (compute.instance_type)"
    else:
        ranked = candidates(arch, plan, sizes)
        if not ranked:
            peak = max(m["peak_gb_per_device"] for m in stage_memory(arch, plan, 1))
            hint = f" with a {compute.gpu} GPU" if compute.gpu else ""
            plan.warnings.append(f"no {plan.provider} instance{hint} in the catalog fits this job (estimated peak "
                                 f"{peak:.1f} GB per GPU unsharded){_smaller_hint(arch, plan)}")
            plan.extras["memory"] = _memory_section(arch, stage_memory(arch, plan, 1), "none fits", where)
            return
        chosen = ranked[0]
        by = "cheapest that fits" + (f" (gpu: {compute.gpu})" if compute.gpu else "") + \
            (" at spot prices" if compute.spot else " at on-demand prices")
    plan.extras["memory"] = _memory_section(arch, chosen.memory, chosen.distribution, where)
    plan.extras["instance"] = _instance_section(chosen, by, ranked[1:4])
    plan.extras["cost"] = _cost_section(chosen, compute.spot, sizes)
    if chosen.hours is None:
        plan.warnings.append("training data size unknown (remote data without counts): no time or cost estimate")
    elif chosen.hours > compute.max_runtime_hours:
        plan.warnings.append(f"estimated {chosen.hours:.1f} h exceeds compute.max_runtime_hours "
                             f"({compute.max_runtime_hours:g} h): the job would be stopped first")


def _smaller_hint(arch: "Arch", plan: "Plan") -> str:
    """What would bring the peak down: gradient checkpointing, then QLoRA (per-device, unsharded)."""
    import dataclasses

    from .estimate import setup_for_stage
    from .memory import estimate_memory

    tries = [("gradient_checkpointing: true", {"gradient_checkpointing": True}),
             ("peft.type: qlora + gradient_checkpointing: true",
              {"gradient_checkpointing": True, "peft": "qlora", "quant_bits": 4})]
    hints = []
    for label, change in tries:
        if plan.spec.peft.type == "none" and "peft" in change:
            continue  # QLoRA is a different method, not a memory setting of full fine-tuning
        peak = max(estimate_memory(arch, dataclasses.replace(setup_for_stage(st), **change))["peak_gb_per_device"]
                   for st in plan.stages)
        hints.append(f"with {label} the peak would be {peak:.1f} GB")
    return "; " + "; ".join(hints) if hints else ""


def check_budget(plan: "Plan", force: bool = False) -> None:
    """Refuse a plan whose estimate exceeds `budget.max_cost_usd` or `budget.max_hours` (unless `force`)."""
    budget = plan.spec.budget
    if budget.max_cost_usd is None and budget.max_hours is None:
        return
    cost = plan.extras.get("cost") or {}
    if plan.provider not in CLOUD_PROVIDERS:
        return
    if cost.get("hours") is None:
        plan.warnings.append("budget not checked: the plan has no time/cost estimate")
        return
    problems = []
    usd = cost.get("estimated_usd")
    inst = plan.extras.get("instance", {})
    if budget.max_cost_usd is not None and usd is not None and usd > budget.max_cost_usd:
        problems.append(f"estimated cost ${usd:,.2f} ({cost['billing']}: {cost['hours']:.2f} h x "
                        f"{inst.get('count', 1)} x {inst.get('type')}) > budget.max_cost_usd ${budget.max_cost_usd:,.2f}")
    if budget.max_hours is not None and cost["hours"] > budget.max_hours:
        problems.append(f"estimated time {cost['hours']:.2f} h > budget.max_hours {budget.max_hours:g} h")
    if not problems:
        return
    if force:
        plan.warnings.append("over budget, submitted with --force: " + "; ".join(problems))
        return
    raise CloudftError("plan is over budget: " + "; ".join(problems),
                       hint="raise the budget in the spec, reduce epochs/data, pick a cheaper instance, "
                            "or pass --force to submit anyway")
