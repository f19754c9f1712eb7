"""Instance catalogs (SageMaker training, Azure ML VM sizes) and GPU facts, from the bundled dated JSON files.

A refreshed copy written by `cloudft catalog refresh` ($CLOUDFT_HOME/planner/catalog_<provider>.json) takes
precedence over the bundled file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Optional

from ..errors import CloudftError

PROVIDERS = ("aws", "azure")
# Usable fraction of the nominal GPU memory (driver/ECC reservations, e.g. A10G 24 GB shows ~22.5 GiB).
USABLE_FRACTION = 0.92


@dataclass(frozen=True)
class Instance:
    """One instance type / VM size with its GPUs and prices (USD per hour for the whole instance)."""

    provider: str
    type: str
    gpu: str
    gpus: int
    gpu_memory_gb: float
    vcpus: int
    memory_gb: float
    on_demand_per_hour: Optional[float]
    spot_per_hour: Optional[float]
    spot_source: str
    price_date: str
    online_endpoint: Optional[bool] = None  # in the provider's online-endpoint SKU list (None: unknown)
    #: local NVMe instance storage (SageMaker refuses a volume KMS key for these types; see `has_local_storage`)
    local_storage: bool = False

    @property
    def usable_gpu_memory_gb(self) -> float:
        return self.gpu_memory_gb * USABLE_FRACTION


@lru_cache(maxsize=None)
def gpu_specs() -> dict[str, dict[str, Any]]:
    """GPU name → {memory_gb, bf16_tflops, bf16, flash_attention, memory_tb_s}."""
    return json.loads(files("cloudft.planner").joinpath("gpus.json").read_text())["gpus"]


def refreshed_path(provider: str) -> Path:
    """Where `cloudft catalog refresh` writes a provider's catalog."""
    from ..paths import home

    return home() / "planner" / f"catalog_{provider}.json"


def raw_catalog(provider: str) -> dict[str, Any]:
    """The catalog document: the refreshed copy when one exists, else the bundled file."""
    if provider not in PROVIDERS:
        raise CloudftError(f"no instance catalog for provider '{provider}'", hint=f"use one of {', '.join(PROVIDERS)}")
    refreshed = refreshed_path(provider)
    if refreshed.is_file():
        try:
            doc = json.loads(refreshed.read_text())
            doc.setdefault("origin", str(refreshed))
            return doc
        except json.JSONDecodeError:
            pass  # a broken refresh falls back to the shipped file
    doc = json.loads(files("cloudft.planner").joinpath(f"catalog_{provider}.json").read_text())
    doc["origin"] = "bundled"
    return doc


def load_catalog(provider: str) -> list[Instance]:
    """The provider's GPU instances, spot prices filled from the catalog's spot fraction when not listed."""
    doc = raw_catalog(provider)
    frac = float(doc.get("spot_fraction", 1.0))
    out = []
    for row in doc["instances"]:
        od = row.get("on_demand_per_hour")
        spot = row.get("spot_per_hour")
        source = "listed"
        if spot is None and od is not None:
            spot, source = round(od * frac, 4), f"assumed {frac:.0%} of on-demand"
        out.append(Instance(
            provider=provider, type=row["type"], gpu=row["gpu"], gpus=int(row["gpus"]),
            gpu_memory_gb=float(row["gpu_memory_gb"]), vcpus=int(row.get("vcpus", 0)),
            memory_gb=float(row.get("memory_gb", 0)), on_demand_per_hour=od, spot_per_hour=spot,
            spot_source=source, price_date=row.get("price_date", doc.get("taken", "")),
            online_endpoint=row.get("online_endpoint"),
            local_storage=_has_local_storage(doc, row["type"]),
        ))
    return out


def _has_local_storage(doc: dict[str, Any], instance_type: str) -> bool:
    parts = str(instance_type or "").split(".")
    families = (doc.get("local_storage") or {}).get("families") or ()
    return len(parts) >= 2 and parts[1] in families


def has_local_storage(instance_type: str) -> bool:
    """True for SageMaker types with local NVMe instance storage (``ml.g5.12xlarge`` → family ``g5``), from the AWS
    catalog's `local_storage` list (the one place this fact lives; source cited there). Such types are refused a
    training `VolumeKmsKeyId`; their instance store is encrypted by the instance's hardware module."""
    return _has_local_storage(raw_catalog("aws"), instance_type)


def find_instance(provider: str, instance_type: str) -> Instance:
    """The catalog entry for an instance type, or a CloudftError naming close matches."""
    catalog = load_catalog(provider)
    for inst in catalog:
        if inst.type.lower() == instance_type.lower():
            return inst
    import difflib

    guess = difflib.get_close_matches(instance_type, [i.type for i in catalog], n=3, cutoff=0.5)
    raise CloudftError(
        f"instance type '{instance_type}' is not in the {provider} catalog",
        hint=(f"did you mean {', '.join(guess)}? " if guess else "") + f"see `cloudft catalog list --provider {provider}`",
    )


def region_offers(provider: str, region: Optional[str], instance_type: str) -> Optional[bool]:
    """Is `instance_type` offered in `region`, as far as the catalog knows? True: its meters are in the catalog for
    that region; False: a refresh for that region found no meter for it; None: unknown (never assumed)."""
    if not region:
        return None
    doc = raw_catalog(provider)
    want, where = instance_type.lower(), region.lower().replace(" ", "")
    avail = {str(k).lower(): v for k, v in (doc.get("availability") or {}).items()}
    seen = avail.get(where) or {}
    if want in {t.lower() for t in seen.get("offered", [])}:
        return True
    if want in {t.lower() for t in seen.get("not_offered", [])}:
        return False
    if str(doc.get("region", "")).lower() == where:
        priced = {r["type"].lower() for r in doc["instances"] if r.get("on_demand_per_hour")}
        if want in priced:
            return True
    return None


def gpu_matches(hint: str, gpu: str) -> bool:
    """Does a `compute.gpu` hint (T4, A10G, A100, A100-80GB, H100, L40S...) name this GPU?"""
    h, g = hint.upper().replace(" ", ""), gpu.upper()
    return g == h or g.startswith(h + "-") or (h == "A10" and g == "A10G")
