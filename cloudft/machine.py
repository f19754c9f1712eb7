"""This machine, as the local provider sees it: CPU cores, memory and CUDA GPUs, found without importing torch
(`cloudft plan` stays light): /proc and os.sysconf for the host, `nvidia-smi` for the GPUs."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional


@dataclass(frozen=True)
class LocalGpu:
    name: str  # as the driver names it, e.g. "NVIDIA H200"
    memory_gb: float
    catalog: Optional[str] = None  # the planner's GPU name (cloudft/planner/gpus.json), when known


@dataclass(frozen=True)
class Machine:
    cpus: int
    memory_gb: float
    available_gb: float
    gpus: tuple[LocalGpu, ...] = ()

    @property
    def has_cuda(self) -> bool:
        return bool(self.gpus)

    def describe(self) -> str:
        gpus = ", ".join(f"{g.name} ({g.memory_gb:.0f} GB)" for g in self.gpus) or "no CUDA GPU"
        return f"{self.cpus} CPU cores, {self.memory_gb:.0f} GB memory ({self.available_gb:.0f} GB free), {gpus}"


def _meminfo() -> tuple[float, float]:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    available = total
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) / 2**20
                    break
    except OSError:
        pass
    return total, available


#: words in a driver's GPU name that mean another bf16 peak than the plain model's (Hopper: NVL and PCIe cards run
#: at lower clocks; an A100 PCIe has the SXM's 312 TFLOP/s)
VARIANTS = {"H100": ("NVL", "PCIE"), "H200": ("NVL", "PCIE")}


def catalog_gpu(name: str) -> Optional[str]:
    """The planner's name for a GPU the driver reports ("NVIDIA A100-SXM4-80GB" → "A100-80GB"), matching whole words:
    "L40" is not "L4", and a variant the table does not hold ("H100 PCIe", "H200 NVL") is None, not the plain model."""
    import re

    from .planner.catalog import gpu_specs

    words = set(re.split(r"[\s_-]+", name.upper()))
    best = None
    for known in gpu_specs():
        base, _, detail = known.upper().partition("-")
        if base in words and (not detail or detail in words) and (best is None or len(known) > len(best)):
            best = known
    if best is None:
        return None
    base, _, detail = best.upper().partition("-")
    return None if any(v in words and v != detail for v in VARIANTS.get(base, ())) else best


def _cuda_gpus() -> tuple[LocalGpu, ...]:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "" or not shutil.which("nvidia-smi"):
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    gpus = []
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        name, _, mib = line.rpartition(",")
        try:
            gpus.append(LocalGpu(name.strip(), float(mib) / 1024, catalog_gpu(name.strip())))
        except ValueError:
            continue
    return tuple(gpus)


@lru_cache(maxsize=1)
def this_machine() -> Machine:
    """The machine cloudft runs on (cached for the process)."""
    total, available = _meminfo()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Machine(cpus=cpus, memory_gb=round(total, 1), available_gb=round(available, 1), gpus=_cuda_gpus())
