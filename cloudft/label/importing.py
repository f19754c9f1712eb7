"""`cloudft label import`: labels collected elsewhere, several annotators per pair, into a label store.

One row per judgment (JSONL, JSON array, CSV/TSV or Parquet; gzip ok): which pair, which annotator, and the
label, as the tool that collected them wrote it. Label codes (case and spacing aside) map to the store's
choices in the pair's orientation: A better, B better, tie (Chatbot Arena's "tie (bothbad)" too), or skip
(missing data, never a category; see ../shared/reference/labeling_and_agreement.md). A value no code names is
an error listing it: nothing is guessed. The pairs' texts come from `--pairs` (the pairs file format) or from
the rows themselves (prompt, response_a, response_b columns).

Display order: a `swapped` column (true when B was shown first) keeps the position-bias figures; without one the
order is unknown, the labels are stored with source `import`, and position bias leaves them out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..data.formats.mapping import label_key
from ..errors import CloudftError
from .pairs import load_pairs, validate_pair
from .store import UNORDERED_SOURCE

ORDERED_SOURCE = "import-ordered"

ALIASES: dict[str, tuple[str, ...]] = {
    "pair_id": ("pair_id", "item_id", "question_id", "sample_id", "id"),
    "annotator": ("annotator", "annotator_id", "worker", "worker_id", "judge", "rater", "labeler", "user_id"),
    "label": ("label", "choice", "winner", "preference", "vote", "judgment", "judgement"),
    "prompt": ("prompt", "question", "instruction"),
    "response_a": ("response_a", "answer_a", "completion_a", "answer1", "response_1", "output_1"),
    "response_b": ("response_b", "answer_b", "completion_b", "answer2", "response_2", "output_2"),
    "swapped": ("swapped", "b_shown_first"),
    "seconds": ("seconds", "time_spent", "timeSpentInSeconds", "duration"),
    "rationale": ("rationale", "comment", "reason", "explanation"),
}
REQUIRED = ("pair_id", "annotator", "label")


@dataclass
class Codes:
    """Label values meaning each choice (compared without case or surrounding spaces; 1 and "1" agree)."""

    a: tuple = ("a", "model_a", "response_a", "1", "left", "first")
    b: tuple = ("b", "model_b", "response_b", "2", "right", "second")
    tie: tuple = ("tie", "t", "tie (bothbad)", "tie (both bad)", "both_bad", "bothbad", "both bad", "both good",
                  "equal", "same", "draw")
    skip: tuple = ("skip", "s", "unsure", "cant_tell", "can't tell", "n/a", "")
    table: dict = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for choice in ("a", "b", "tie", "skip"):
            for code in getattr(self, choice):
                key = label_key(code)
                if self.table.get(key, choice) != choice:
                    raise CloudftError(f"label code {code!r} is given for both {self.table[key]} and {choice}",
                                       hint="give each code to one choice only")
                self.table[key] = choice

    def choice(self, value: Any) -> Optional[str]:
        return self.table.get(label_key("" if value is None else value))


def _columns(keys: list[str], columns: Optional[dict[str, str]]) -> dict[str, str]:
    """What each role is called in the file: the mapping given, else the first alias present."""
    out = dict(columns or {})
    unknown = sorted(set(out) - set(ALIASES))
    if unknown:
        raise CloudftError(f"--columns: {', '.join(unknown)} is not a label import field",
                           hint=f"map to: {', '.join(ALIASES)}")
    for role, names in ALIASES.items():
        if role not in out:
            found = next((k for n in names for k in keys if k.lower() == n.lower()), None)
            if found is not None:
                out[role] = found
    missing = [r for r in REQUIRED if r not in out]
    if missing:
        raise CloudftError(f"the label file has no {' / '.join(missing)} column (columns: {', '.join(keys)})",
                           hint="name them with --columns, e.g. --columns pair_id=question_id,annotator=judge,"
                                "label=winner")
    return out


def _bool(value: Any, where: str) -> bool:
    key = label_key(value)
    if key in ("true", "1", "yes"):
        return True
    if key in ("false", "0", "no", ""):
        return False
    raise CloudftError(f"{where}: swapped must be true or false, got {value!r}")


def read_labels(path: str | Path, *, columns: Optional[dict[str, str]] = None, codes: Optional[Codes] = None,
                pairs_path: Optional[str | Path] = None) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(pairs, labels for Store.import_labels, summary) from a label file; CloudftError for anything it cannot
    read or map (every problem with its line)."""
    from ..data.readers import iter_raw

    codes = codes or Codes()
    path = Path(path)
    rows, problems = [], []
    for item in iter_raw(path, display=str(path)):
        if item.problem is not None:
            problems.append(item.problem.render())
        elif not isinstance(item.obj, dict):
            problems.append(f"{path}:{item.line}: a row must be an object")
        else:
            rows.append((item.line, item.obj))
    if problems:
        raise CloudftError(f"{path}: {len(problems)} unreadable row(s): " + "; ".join(problems[:5]),
                           hint="fix the rows (nothing was imported)")
    if not rows:
        raise CloudftError(f"{path}: no labels in the file")
    cols = _columns(list(dict.fromkeys(k for _, r in rows for k in r)), columns)
    texts: dict[str, dict] = {p["pair_id"]: p for p in load_pairs(pairs_path)} if pairs_path else {}
    from_rows: dict[str, dict] = {}
    labels, unknown, where_unknown = [], Counter(), {}
    ordered = "swapped" in cols
    for line, row in rows:
        where = f"{path}:{line}"
        for role in REQUIRED:
            if row.get(cols[role]) is None or (role != "label" and str(row[cols[role]]).strip() == ""):
                raise CloudftError(f"{where}: {cols[role]} is missing")
        pid, annotator = str(row[cols["pair_id"]]).strip(), str(row[cols["annotator"]]).strip()
        choice = codes.choice(row[cols["label"]])
        if choice is None:
            value = str(row[cols["label"]])
            unknown[value] += 1
            where_unknown.setdefault(value, line)
            continue
        if all(r in cols and r in row for r in ("prompt", "response_a", "response_b")):
            pair = validate_pair({"pair_id": pid, "prompt": row[cols["prompt"]],
                                  "response_a": row[cols["response_a"]], "response_b": row[cols["response_b"]]},
                                 where)
            seen = from_rows.setdefault(pid, pair)
            if seen != pair:
                raise CloudftError(f"{where}: pair {pid} has other texts than on an earlier row",
                                   hint="one pair id, one prompt and two responses")
        swapped = _bool(row.get(cols["swapped"]), where) if ordered else False
        shown = choice if choice in ("tie", "skip") else {"a": "A", "b": "B"}[choice]
        if swapped and choice in ("a", "b"):
            shown = "B" if shown == "A" else "A"
        seconds = row.get(cols["seconds"]) if "seconds" in cols else None
        labels.append({"annotator": annotator, "pair_id": pid, "shown": shown, "swapped": swapped,
                       "rationale": str(row.get(cols["rationale"]) or "") if "rationale" in cols else "",
                       "seconds": float(seconds) if isinstance(seconds, (int, float)) or
                       (isinstance(seconds, str) and seconds.replace(".", "", 1).isdigit()) else None})
    if unknown:
        listed = ", ".join(f"{v!r} ({n} rows, first at line {where_unknown[v]})" for v, n in unknown.most_common(8))
        raise CloudftError(f"{path}: label values that no code names: {listed}",
                           hint="say what they mean with --a-codes / --b-codes / --tie-codes / --skip-codes "
                                "(nothing was imported)")
    for pid, pair in from_rows.items():
        if pid in texts and texts[pid] != {**texts[pid], **pair}:
            raise CloudftError(f"pair {pid}: the label file and --pairs give different texts")
        texts.setdefault(pid, pair)
    missing = sorted({lab["pair_id"] for lab in labels} - set(texts))
    if missing:
        raise CloudftError(f"no prompt and responses for {len(missing)} pair(s), e.g. {', '.join(missing[:5])}",
                           hint="pass --pairs PAIRS.jsonl, or map prompt/response_a/response_b with --columns")
    per_pair: dict[str, set] = defaultdict(set)
    for lab in labels:
        per_pair[lab["pair_id"]].add(lab["annotator"])
    choices = Counter(codes.choice(r[cols["label"]]) for _, r in rows)
    summary = {"labels": len(labels), "pairs": len(per_pair), "annotators": len({lab["annotator"] for lab in labels}),
               "annotators_per_pair": dict(Counter(len(v) for v in per_pair.values())), "choices": dict(choices),
               "display_order": "given" if ordered else "unknown", "columns": cols,
               "source": ORDERED_SOURCE if ordered else UNORDERED_SOURCE}
    pairs = [texts[pid] for pid in per_pair]
    return pairs, labels, summary
