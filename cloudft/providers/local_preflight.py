"""The local provider's preflight: what would make a run on this machine fail or take days, found before anything
starts (issue: "A newcomer's first real run").

- `local.gpu`: no CUDA GPU while the estimate needs one (days on the CPU): refused unless `--force`, naming the
  cloud command that would fit and its estimated cost.
- `local.memory`: the estimated peak does not fit in the GPU's or the host's memory.
- `local.time`: how long the run should take here (information).
- `local.secret`: a secret the spec declares (`env:VAR`) is not set.
- `local.model`: the base model is neither a local directory nor in the Hugging Face cache while the hub is
  unreachable or HF_HUB_OFFLINE is set (one clear line instead of a minute of retries and a traceback).
"""

from __future__ import annotations

import os
import socket
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional
from urllib.parse import urlparse

from ..preflight import Finding, Rule

if TYPE_CHECKING:
    from ..machine import Machine
    from ..plan import Plan

#: above this many estimated hours on the CPU, a run needs a GPU (refused unless --force)
CPU_HOURS_LIMIT = 2.0
PLANNER_SOURCE = "cloudft planner: memory and throughput model (docs/planner.md)"
HF_SOURCE = ("huggingface_hub: HF_HUB_OFFLINE and the cache layout "
             "(https://huggingface.co/docs/huggingface_hub/guides/manage-cache)")


def _hours(h: float) -> str:
    if h < 1 / 60:
        return "under a minute"
    if h < 1:
        return f"~{h * 60:.0f} minutes"
    if h < 48:
        return f"~{h:.1f} hours"
    return f"~{h / 24:.0f} days"


def _cloud_alternative(plan: "Plan") -> str:
    """Where the same stages would fit in the cloud, with time and cost, as the command to run."""
    from ..planner import estimate_plan

    spec_path = plan.spec.source_path or "SPEC"
    offers = []
    for provider in ("aws", "azure"):
        est = estimate_plan(plan.spec, provider, [s.run_config for s in plan.stages], plan.data)
        inst, cost = est.instance, est.cost
        if inst.type is None or cost is None or cost.hours is None:
            continue
        price = f"~${cost.on_demand_usd:,.2f} on-demand" if cost.on_demand_usd is not None else "price unknown"
        offers.append((cost.on_demand_usd or float("inf"),
                       f"`cloudft submit {spec_path} --provider {provider}` ({inst.count} x {inst.type}, "
                       f"{inst.gpu}, {_hours(cost.hours)}, {price})"))
    return " or ".join(text for _, text in sorted(offers)) or f"`cloudft plan {spec_path} --provider aws` shows " \
                                                              "a cloud instance and its cost"


def needs_gpu(plan: "Plan", machine: "Machine") -> Iterator[Finding]:
    est = plan.estimate
    if machine.has_cuda or est.cost is None or est.cost.hours is None or est.cost.hours <= CPU_HOURS_LIMIT:
        return
    peak = f", estimated peak {est.memory.peak_gb_per_device:.1f} GB" if est.memory else ""
    yield Finding("", "error",
                  f"this machine has no CUDA GPU and the run would take {_hours(est.cost.hours)} on its "
                  f"{machine.cpus} CPU cores{peak}",
                  fix=f"run it where a GPU is: {_cloud_alternative(plan)}; or pass --force to start here anyway",
                  forceable=True)


def memory_fits(plan: "Plan", machine: "Machine") -> Iterator[Finding]:
    from ..planner import smaller_hint
    from ..planner.arch import resolve_arch

    mem = plan.estimate.memory
    if mem is None:
        return
    if machine.has_cuda:
        gpu = machine.gpus[0]
        room, what = gpu.memory_gb * 0.92, f"its {gpu.name} ({gpu.memory_gb:.0f} GB)"
    else:
        room, what = machine.available_gb, f"this machine's free memory ({machine.available_gb:.0f} GB)"
    if mem.peak_gb_per_device <= room:
        return
    arch = resolve_arch(plan.spec.base_model, plan.spec.base_dir).arch
    hint = smaller_hint(arch, plan.spec, [s.run_config for s in plan.stages], cpu=not machine.has_cuda) if arch \
        else ""
    checkpointing = "" if all(s.run_config.training.gradient_checkpointing for s in plan.stages) else \
        ", or turn on training.gradient_checkpointing"
    yield Finding("", "error", f"the estimated peak of {mem.peak_gb_per_device:.1f} GB does not fit in {what}",
                  fix=f"lower training.per_device_batch_size or training.max_length{checkpointing}{hint}; or run it "
                      f"in the cloud: {_cloud_alternative(plan)}")


def time_here(plan: "Plan", machine: "Machine") -> Iterator[Finding]:
    cost = plan.estimate.cost
    if cost is not None and cost.hours is not None:
        yield Finding("", "info", f"estimated training time on this machine: {_hours(cost.hours)} "
                                  f"({machine.describe()})")


def secrets_set(plan: "Plan", machine: "Machine") -> Iterator[Finding]:
    for name, ref in plan.spec.secrets.items():
        var = ref.split(":", 1)[1] if ref.startswith("env:") else None
        if var and not os.environ.get(var):
            yield Finding("", "error", f"secret {name} comes from the environment variable {var}, which is not set",
                          fix=f"export {var}=... before submitting (it is passed to the run, never written down)",
                          field=f"secrets.{name}")


def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_reason() -> Optional[str]:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return None if _hub_reachable(endpoint) else f"the hub ({endpoint}) cannot be reached from this machine"


def _in_cache(repo_id: str) -> Optional[bool]:
    """True/False when huggingface_hub can tell; None when it is not installed (then the trainer finds out)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cache = os.environ.get("HF_HUB_CACHE") or (os.path.join(os.environ["HF_HOME"], "hub")
                                               if os.environ.get("HF_HOME") else None)
    try:  # the environment as it is now (huggingface_hub reads it once, at import)
        return isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=cache), str)
    except Exception:  # noqa: BLE001 - an id the hub library refuses is not cached
        return False


def model_available(plan: "Plan", machine: "Machine") -> Iterator[Finding]:
    base = plan.stages[0].run_config.base_model
    if Path(base).is_absolute():
        if not (Path(base) / "config.json").is_file():
            yield Finding("", "error", f"{base} is not a model directory (no config.json)",
                          fix="point base_model at a folder written by save_pretrained, or at a hub id",
                          field="base_model")
        return
    if _in_cache(base) is not False:
        return
    reason = _offline_reason()
    if reason:
        yield Finding("", "error", f"{base} is neither a local directory nor in the Hugging Face cache, and {reason}",
                      fix=f"download it where the hub is reachable (`huggingface-cli download {base}`, with HF_TOKEN "
                          "for gated models) and copy the cache here, or point base_model at a local directory",
                      field="base_model")


def local_rules(machine: "Machine") -> list[Rule]:
    """The local rules, bound to `machine`."""
    return [Rule("local.model", HF_SOURCE, partial(model_available, machine=machine)),
            Rule("local.secret", "cloudft secrets: env:VAR references are read from this machine's environment",
                 partial(secrets_set, machine=machine)),
            Rule("local.memory", PLANNER_SOURCE, partial(memory_fits, machine=machine)),
            Rule("local.gpu", PLANNER_SOURCE, partial(needs_gpu, machine=machine)),
            Rule("local.time", PLANNER_SOURCE, partial(time_here, machine=machine))]
