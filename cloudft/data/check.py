"""The pre-submit data check (`cloudft.plan.PRE_SUBMIT_CHECKS`): no broken or empty dataset reaches a paid GPU.

`check_plan(plan)` refuses (CloudftError, before any provider call) a plan whose data had errors: records that
could not be used (invalid JSON/UTF-8, missing fields, wrong types, roles, turn order, chosen == rejected, too
long, ...). The message gives the counts per reason and the quarantine file.

`--force` (`submit --force`): the run goes ahead on the clean records only (the canonical file never contains
a quarantined record); the plan gets a warning saying how many were left out. A dataset with no clean training
record is refused even with --force. Duplicates and near-duplicates are removed without blocking; warnings
(PII, leakage, byte-order marks) and the "should you fine-tune at all?" advice become plan warnings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import CloudftError
from .problems import REASONS

if TYPE_CHECKING:
    from ..plan import Plan


def _errors(rdata: dict[str, Any]) -> dict[str, int]:
    return {r: n for r, n in (rdata.get("counts") or {}).items() if REASONS.get(r, ("error",))[0] == "error"}


def data_warnings(plan: "Plan") -> list[str]:
    """Advice and warnings from every stage's data, prefixed with the stage."""
    out = []
    for name, rdata in plan.data.items():
        for w in rdata.get("warnings") or []:
            out.append(f"{name} data: {w}")
        if rdata.get("tokenizer", "").startswith("skipped"):
            out.append(f"{name} data: token lengths {rdata['tokenizer']}")
    return out


def check_plan(plan: "Plan", force: bool = False) -> None:
    """Refuse a plan whose data has errors (unless forced) or no usable training record; add data warnings."""
    for w in data_warnings(plan):
        if w not in plan.warnings:
            plan.warnings.append(w)
    for name, rdata in plan.data.items():
        if "dataset_dir" not in rdata:
            continue  # cloud URIs: checked where they are read
        errors = _errors(rdata)
        total = sum(errors.values())
        clean = (rdata.get("records") or {}).get("train", 0)
        counts = ", ".join(f"{r}: {n}" for r, n in sorted(errors.items(), key=lambda kv: -kv[1]))
        where = f"quarantined records with the reason for each: {rdata.get('quarantine')}"
        if not clean:
            raise CloudftError(
                f"{name}: no usable training records ({rdata.get('records_in') or 0} read, "
                f"{rdata.get('quarantined', 0)} quarantined{'; ' + counts if counts else ''}); {where}",
                hint="fix the data (cloudft data validate FILE shows every problem with its line)")
        if total and not force:
            raise CloudftError(
                f"{name}: {total} record{'s' if total != 1 else ''} in the data cannot be used ({counts}); "
                f"nothing was submitted. {where}",
                hint=f"fix them (cloudft data validate FILE lists each with its line), or pass --force to train "
                     f"on the {clean} clean records")
        if total:
            plan.warnings.append(f"{name} data: --force: training on {clean} clean records, {total} with errors "
                                 f"left out ({rdata.get('quarantine')})")
