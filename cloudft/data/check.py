"""The pre-submit data check (called by `cloudft.plan.check_before_submit`): no broken or empty dataset reaches a
paid GPU.

`check_data(plan.data)` refuses (CloudftError, before any provider call) a plan whose data had errors: records that
could not be used (invalid JSON/UTF-8, missing fields, wrong types, roles, turn order, chosen == rejected, too
long, ...). The message gives the counts per reason and the quarantine file.

`--force` (`submit --force`): the run goes ahead on the clean records only (the canonical file never contains
a quarantined record); submit prints how many were left out. A dataset with no clean training
record is refused even with --force. Duplicates and near-duplicates are removed without blocking; warnings
(PII, leakage, byte-order marks) and the "should you fine-tune at all?" advice become plan warnings
(`data_warnings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..errors import CloudftError
from .problems import REASONS

if TYPE_CHECKING:
    from .resolve import ResolvedData


def _errors(rdata: "ResolvedData") -> dict[str, int]:
    return {r: n for r, n in rdata.counts.items() if REASONS.get(r, ("error",))[0] == "error"}


def data_warnings(data: "Sequence[ResolvedData]") -> list[str]:
    """Advice and warnings from every stage's data, prefixed with the stage, each once."""
    out: list[str] = []
    for i, rdata in enumerate(data):
        for w in rdata.warnings:
            out.append(f"stage{i} data: {w}")
        if (rdata.tokenizer or "").startswith("skipped"):
            out.append(f"stage{i} data: token lengths {rdata.tokenizer}")
    return list(dict.fromkeys(out))


def check_data(data: "Sequence[ResolvedData]", force: bool = False) -> list[str]:
    """Refuse data with errors (unless forced) or no usable training record. Returns, for a forced submit, what
    it leaves out (one line per stage with the count and the quarantine file)."""
    notes: list[str] = []
    for i, rdata in enumerate(data):
        if not rdata.local:
            continue  # cloud URIs: checked where they are read
        name = f"stage{i}"
        errors = _errors(rdata)
        total = sum(errors.values())
        clean = rdata.records.get("train", 0)
        counts = ", ".join(f"{r}: {n}" for r, n in sorted(errors.items(), key=lambda kv: -kv[1]))
        where = f"quarantined records with the reason for each: {rdata.quarantine}"
        if not clean:
            raise CloudftError(
                f"{name}: no usable training records ({rdata.records_in or 0} read, "
                f"{rdata.quarantined} quarantined{'; ' + counts if counts else ''}); {where}",
                hint="fix the data (cloudft data validate FILE shows every problem with its line)")
        if total and not force:
            raise CloudftError(
                f"{name}: {total} record{'s' if total != 1 else ''} in the data cannot be used ({counts}); "
                f"nothing was submitted. {where}",
                hint=f"fix them (cloudft data validate FILE lists each with its line), or pass --force to train "
                     f"on the {clean} clean records")
        if total:
            notes.append(f"{name} data: --force: training on {clean} clean records, {total} with errors "
                         f"left out ({rdata.quarantine})")
    return notes
