"""Detection: rank the registered source formats by how well they explain the first records, and say when the
evidence does not settle it. When nothing fits, read the data to suggest a mapping (`suggest_mapping`).

A format's evidence on one record is `SourceFormat.score` (the share of the record's keys it reads, plus shape
evidence; 0 for a record it cannot read). Candidates are ranked by their summed score, ties by `priority`.
Detection is unsure when the best reads fewer than half of the records, or when the two best score within 5 %
but would give different canonical data (e.g. preference vs prompt_completion).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from ...errors import CloudftError
from .base import REGISTRY
from .mapping import label_key

TIE_MARGIN = 0.05
MIN_SHARE = 0.5


@dataclass
class Candidate:
    name: str
    records: int  # records of the sample this format can read
    score: float  # summed evidence

    @property
    def canonical(self) -> str:
        return REGISTRY[self.name].canonical


@dataclass
class Detection:
    best: Optional[str]
    candidates: list[Candidate] = field(default_factory=list)
    readable: int = 0  # JSON objects in the sample
    unsure: Optional[str] = None  # why the evidence does not settle it

    def describe(self, top: int = 3) -> str:
        return ", ".join(f"{c.name} (reads {c.records} of {self.readable}, score {c.score:.1f})"
                         for c in self.candidates[:top])


def rank(records: list[dict]) -> Detection:
    """Rank every registered format against `records` (already mapped)."""
    totals: dict[str, list[float]] = {}
    for obj in records:
        for name, fmt in REGISTRY.items():
            s = fmt.score(obj)
            if s > 0:
                entry = totals.setdefault(name, [0, 0.0])
                entry[0] += 1
                entry[1] += s
    cands = sorted((Candidate(n, int(c), s) for n, (c, s) in totals.items()),
                   key=lambda c: (-round(c.score, 6), REGISTRY[c.name].priority, c.name))
    det = Detection(best=cands[0].name if cands else None, candidates=cands, readable=len(records))
    if not cands:
        return det
    best = cands[0]
    if best.records < MIN_SHARE * len(records):
        det.unsure = (f"no format reads most records: {det.describe()}; the records look like a mix of "
                      "formats")
    elif len(cands) > 1:
        second = cands[1]
        if second.canonical != best.canonical and second.score >= best.score * (1 - TIE_MARGIN):
            det.unsure = (f"the records fit {best.name} ({best.canonical}) and {second.name} ({second.canonical}) "
                          "equally well")
    return det


# -- suggesting a mapping from the data ---------------------------------------------------------------------

PROMPT_NAMES = ("prompt", "instruction", "question", "query", "input", "context", "problem", "dialogue", "text")
ANSWER_NAMES = ("completion", "response", "output", "answer", "target", "ground_truth", "summary", "solution")
LABEL_NAMES = ("label", "winner", "preference", "preferred", "choice", "better", "chosen", "pick", "rank",
               "ranking", "score", "kto_tag")
PAIR = re.compile(r"^(?P<stem>.+?)(?:[_\- ](?P<tag>[a-zA-Z]|[0-9]+)|(?P<num>[0-9]+))$")


def _text_size(records: list[dict], column: str) -> float:
    """Mean length of a column's text (message lists count their contents); 0 when it holds no text."""
    sizes = []
    for r in records:
        v = r.get(column)
        if isinstance(v, str):
            sizes.append(len(v))
        elif isinstance(v, list):
            sizes.append(sum(len(str(m.get("content", m.get("value", "")))) for m in v if isinstance(m, dict)))
    return sum(sizes) / len(sizes) if sizes else 0.0


def _pairs(records: list[dict], keys: list[str]) -> list[tuple[str, str, str, str]]:
    """(column A, column B, tag A, tag B) for text columns that differ only in a trailing tag: output_1/output_2,
    response_a/response_b, answer1/answer2, response_j/response_k; the pair with the longest text first (so
    model_a/model_b name columns lose to the answers)."""
    found = []
    for i, a in enumerate(keys):
        ma = PAIR.match(a)
        if not ma:
            continue
        for b in keys[i + 1:]:
            mb = PAIR.match(b)
            tag_a, tag_b = ma.group("tag") or ma.group("num"), (mb.group("tag") or mb.group("num")) if mb else None
            if mb and mb.group("stem") == ma.group("stem") and tag_a != tag_b:
                size = min(_text_size(records, a), _text_size(records, b))
                if size > 0:
                    found.append((size, (a, b, tag_a, tag_b)))
    return [p for _, p in sorted(found, key=lambda x: -x[0])]


def _tag_match(value: str, tag: str) -> bool:
    tag = tag.lower()
    return value == tag or value.endswith(("_" + tag, "-" + tag, " " + tag)) or (
        len(value) > 1 and value[-1] == tag and not tag.isdigit() and not value[-2].isalnum())


def _label_values(records: list[dict], column: str) -> list[Any]:
    seen: dict[str, Any] = {}
    for r in records:
        if column in r and r[column] is not None and not isinstance(r[column], (dict, list)):
            seen.setdefault(label_key(r[column]), r[column])
    return list(seen.values())


def suggest_mapping(records: list[dict], method: str) -> tuple[dict[str, Any], list[str]]:
    """A mapping for records no format reads, read from their columns and values, and notes on what is uncertain.

    A pair of answer columns with a label column gives a pairwise mapping that uses the label (its values are
    matched to the columns' tags); Alpaca-style instruction + input give a templated prompt."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    lower = {k.lower(): k for k in keys}
    notes: list[str] = []
    prompt_cols = [lower[n] for n in PROMPT_NAMES if n in lower]
    mapping: dict[str, Any] = {}
    if "instruction" in lower and "input" in lower:
        mapping["prompt"] = "{%s}\n\n{%s}" % (lower["instruction"], lower["input"])
    elif prompt_cols:
        mapping["prompt"] = prompt_cols[0]
    pairs = [p for p in _pairs(records, keys) if p[0] not in prompt_cols]
    label_col = next((k for k in keys if k.lower() in LABEL_NAMES or k.lower().endswith(("_label", "_winner"))),
                     None)
    if pairs:
        a, b, tag_a, tag_b = pairs[0]
        if label_col is not None:
            values = _label_values(records, label_col)
            va = [v for v in values if _tag_match(label_key(v), tag_a)]
            vb = [v for v in values if _tag_match(label_key(v), tag_b)]
            mapping.update(response_a=a, response_b=b, label=label_col)
            if len(va) == 1 and len(vb) == 1:
                mapping.update(label_a=va[0], label_b=vb[0])
                others = [v for v in values if v not in (va[0], vb[0])]
                if others:
                    notes.append(f"{label_col} also has {', '.join(map(repr, others[:5]))}: those records (ties?) "
                                 "are quarantined")
            else:
                mapping.update(label_a="<value meaning A is better>", label_b="<value meaning B is better>")
                notes.append(f"unsure which {label_col} value means {a} is better (seen: "
                             f"{', '.join(map(repr, values[:6]))}); check the dataset's card")
        else:
            mapping.update(chosen=a, rejected=b)
            notes.append(f"no label column: this assumes {a} is the better answer in every record; check it")
    elif method in ("kto",) and label_col:
        answer = next((lower[n] for n in ANSWER_NAMES if n in lower), None)
        mapping.update(completion=answer or "<answer column>", label=label_col)
    else:
        answer = next((lower[n] for n in ANSWER_NAMES if n in lower), None)
        if answer:
            mapping["completion"] = answer
    return mapping, notes


def render_mapping(mapping: dict[str, Any]) -> tuple[str, str]:
    """(YAML flow form for data.columns, the --columns form for the CLI)."""
    def yaml_value(v: Any) -> str:
        return json.dumps(v) if isinstance(v, str) and (not re.fullmatch(r"[\w.\-]+", v) or v in ("true", "false")) \
            else str(v).lower() if isinstance(v, bool) else str(v)

    spec = "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in mapping.items()) + "}"
    if any(isinstance(v, str) and "{" in v for v in mapping.values()):
        cli = "'" + json.dumps(mapping) + "'"
    else:
        cli = ",".join(f"{k}={v}" for k, v in mapping.items())
    return spec, cli


def shape_error(path: str, records: list[dict], method: str, detection: Optional[Detection] = None) -> CloudftError:
    """The error for a file whose records fit no known format, or not clearly one: its keys and a mapping
    read from the data."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    mapping, notes = suggest_mapping(records, method)
    spec, cli = render_mapping(mapping) if mapping else ("{prompt: <column>, completion: <column>}",
                                                        "prompt=<column>,completion=<column>")
    if detection is not None and detection.unsure:
        what = f"cannot tell the format of the records: {detection.unsure}"
        fix = f"set data.format (one of {', '.join(c.name for c in detection.candidates[:3])}), or map "
    else:
        what = f"records have keys {keys}, which fit no known data format"
        fix = ""
    hint = (f"{fix}map your columns in the spec: data.columns: {spec} (cloudft data commands: --columns {cli})"
            + ("; " + "; ".join(notes) if notes else "")
            + ". Formats: docs/data.md")
    return CloudftError(f"{path}: {what}", hint=hint)


def unused_report(counts: Counter, fmt: str) -> tuple[list[str], list[str]]:
    """(target-like columns, other columns) a format does not read, most frequent first."""
    from .base import looks_like_target

    targets = [c for c, _ in counts.most_common() if looks_like_target(c.split(".")[-1])]
    others = [c for c, _ in counts.most_common() if c not in targets]
    return targets, others
