"""Check the memory estimator against published measured peak-memory tables (validation.csv)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib.resources import files

from .arch import from_table
from .memory import Setup, estimate_memory


@dataclass
class Row:
    """One published measurement, the estimate for the same setup, and the relative error."""

    id: str
    role: str
    source: str
    peft: str
    measured_gb: float
    estimated_gb: float

    @property
    def error(self) -> float:
        return (self.estimated_gb - self.measured_gb) / self.measured_gb


def load_rows() -> list[dict[str, str]]:
    """The rows of the bundled validation table."""
    text = files("cloudft.planner").joinpath("validation.csv").read_text()
    return list(csv.DictReader(io.StringIO(text)))


def sources() -> dict[str, str]:
    """Where each source's rows come from (validation_sources.json)."""
    return json.loads(files("cloudft.planner").joinpath("validation_sources.json").read_text())["sources"]


def setup_for(row: dict[str, str]) -> Setup:
    """The estimator's Setup for one table row."""
    return Setup(
        method="sft",
        peft=row["peft"],
        r=int(row["r"]),
        target_modules=row["target_modules"].split(";"),
        quant_bits=int(row["quant_bits"]) if row["quant_bits"] else None,
        seq_len=int(row["seq_len"]),
        micro_batch=int(row["micro_batch"]),
        gradient_checkpointing=row["gradient_checkpointing"] == "true",
        loss=row["loss"],
        attention=row["attention"],
        lora_dropout=float(row["lora_dropout"]),
        optimizer=row["optimizer"],
    )


def evaluate() -> list[Row]:
    """Estimate every row; raises if a row's model is missing from the bundled table."""
    out = []
    for row in load_rows():
        arch = from_table(row["model"])
        if arch is None:
            raise KeyError(f"validation row {row['id']}: {row['model']} is not in models.json")
        est = estimate_memory(arch, setup_for(row))["peak_gb_per_device"]
        out.append(Row(row["id"], row["role"], row["source"], row["peft"], float(row["measured_gb"]), est))
    return out


def summary(rows: list[Row]) -> dict[str, float]:
    """Mean absolute relative error overall, on test rows only, and per source / PEFT kind."""
    def mae(sel: list[Row]) -> float:
        return round(100 * sum(abs(r.error) for r in sel) / len(sel), 2) if sel else float("nan")

    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(f"{r.source}/{r.peft}", []).append(r)
    result = {"mae_pct_all": mae(rows), "mae_pct_test": mae([r for r in rows if r.role == "test"]),
              "max_abs_pct": round(100 * max(abs(r.error) for r in rows), 2), "rows": len(rows)}
    result.update({f"mae_pct[{k}]": mae(v) for k, v in sorted(groups.items())})
    return result
