"""Export consolidated labels as a versioned DPO dataset (prompt/chosen/rejected), optionally KTO-style
unpaired labels, through `cloudft.data.version.write_dataset`.

Beside the dataset: `labels.jsonl` (every individual label, un-swapped, with its display position),
`label_history.jsonl` (labels that were replaced by a later one), `provenance.jsonl` (votes and annotators per
exported pair; TRL never sees these columns), `quarantine.jsonl` (every item left out, with its reason: no
majority, a tie, an empty or identical response, a control character, ...; nothing is dropped silently) and the
agreement report (`agreement.json`, `agreement.md`).

The export is written into a temporary directory beside `out_dir` and renamed into place, so an interrupted or
failed export never leaves a partial dataset (a previous export there is replaced as a whole).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from ..data.formats import normalise
from ..data.problems import RecordError
from ..data.version import atomic_write
from .agreement import agreement_report, render_report
from .pairs import write_jsonl
from .store import Store


def _as_completion(prompt: Any, text: str) -> Any:
    """Conversational prompts get conversational completions (TRL's two preference forms)."""
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text


def build_records(items: dict[str, dict], consolidated: dict[str, dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(dpo_records, provenance, quarantine) from consolidated items, in item order."""
    dpo, prov, quarantine = [], [], []
    for pid, item in items.items():
        c = consolidated.get(pid)
        if c is None:
            quarantine.append({"pair_id": pid, "reason": "no labels", "votes": None})
            continue
        if c["winner"] is None:
            quarantine.append({"pair_id": pid, "reason": c["reason"], "votes": c["votes"]})
            continue
        win, lose = ("response_a", "response_b") if c["winner"] == "a" else ("response_b", "response_a")
        if item[win].strip() == item[lose].strip():
            quarantine.append({"pair_id": pid, "reason": "identical responses", "votes": c["votes"]})
            continue
        record = {"prompt": item["prompt"], "chosen": _as_completion(item["prompt"], item[win]),
                  "rejected": _as_completion(item["prompt"], item[lose])}
        try:  # the dataset's own checks (an empty answer, a control character, ...): left out, not a failed export
            record = normalise(record, "preference")
        except RecordError as exc:
            side = {"chosen": win, "rejected": lose}.get(exc.field.split("[")[0], exc.field)
            quarantine.append({"pair_id": pid, "reason": f"{side}: {exc.message}", "votes": c["votes"]})
            continue
        dpo.append(record)
        prov.append({"pair_id": pid, "winner": c["winner"], "votes": c["votes"], "annotators": c["annotators"],
                     "model_chosen": item.get("model_" + win[-1]), "model_rejected": item.get("model_" + lose[-1])})
    return dpo, prov, quarantine


def kto_records(dpo: list[dict]) -> list[dict]:
    """Unpaired labels: each chosen answer is desirable, each rejected one undesirable."""
    out = []
    for r in dpo:
        out.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
        out.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
    return out


def write_report(report: dict, out_dir: str | Path) -> Path:
    """agreement.json + agreement.md in `out_dir` (each written atomically); returns the Markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "agreement.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    md = out / "agreement.md"
    atomic_write(md, render_report(report))
    return md


EXPORT_FILES = {"train.jsonl", "validation.jsonl", "manifest.json", "README.md", "provenance.jsonl",
                "quarantine.jsonl", "labels.jsonl", "label_history.jsonl", "agreement.json", "agreement.md", "kto"}


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished export in `tmp` (a rename each way: no partial state is ever visible)."""
    from ..errors import CloudftError

    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in EXPORT_FILES)
        if not out.is_dir() or foreign:
            raise CloudftError(f"{out} holds other files ({', '.join(foreign[:5]) or 'not a directory'}); an export "
                               "replaces its directory as a whole", hint="export to a new or empty --out directory")
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def export(store: Store, out_dir: str | Path, *, kto: bool = False, min_votes: int = 1,
           min_agreement: float = 0.5, splits: Optional[dict[str, float]] = None) -> dict[str, Any]:
    """Write the DPO dataset (and `kto/` when asked) with sidecars; returns a summary with the manifests."""
    from ..data.version import write_dataset
    from ..errors import CloudftError

    out = Path(out_dir)
    labels = store.labels()
    if not labels:
        raise CloudftError(f"{store.path} holds no labels yet", hint="label some items first (`cloudft label serve`)")
    report = agreement_report(labels, min_votes=min_votes, min_agreement=min_agreement)
    dpo, prov, quarantine = build_records(store.items(), report["consolidated"])
    if not dpo:
        raise CloudftError("no item has a majority winner, so there is no preference pair to export",
                           hint="see `cloudft label report`; lower --min-agreement or collect more labels")
    sources = [{"path": str(store.path.resolve()), "kind": "label-store"}]
    extra = {"labeling": {"pairs": len(dpo), "quarantined": len(quarantine), "labels": len(labels),
                          "policy": report["policy"]}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        manifest = write_dataset(dpo, tmp, format="preference", sources=sources, splits=splits, extra=extra)
        write_jsonl(prov, tmp / "provenance.jsonl")
        write_jsonl(quarantine, tmp / "quarantine.jsonl")
        write_jsonl(labels, tmp / "labels.jsonl")
        write_jsonl(store.history(), tmp / "label_history.jsonl")
        write_report(report, tmp)
        summary = {"out_dir": str(out), "pairs": len(dpo), "quarantined": len(quarantine), "manifest": manifest}
        if kto:
            summary["kto_manifest"] = write_dataset(kto_records(dpo), tmp / "kto", format="kto", sources=sources,
                                                    splits=splits, extra=extra)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
