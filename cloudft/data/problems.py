"""Data problems: one located problem per bad record, and the run summary that accounts for every record.

Every problem names the file, the line (the record number for Parquet, the element's first line for JSON
arrays, the CSV row's line), the field, a short `reason` code and the fix. `severity` is:

- `error`: the record cannot be trained on; it goes to the quarantine file.
- `removed`: a usable record that prepare drops (exact or near duplicate); it also goes to the quarantine file.
- `warning`: the record is kept (byte-order mark, PII, leakage between splits, small dataset).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

# reason code -> (severity, default fix)
REASONS: dict[str, tuple[str, str]] = {
    "invalid_json": ("error", "make each line one complete JSON object"),
    "invalid_utf8": ("error", "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"),
    "control_chars": ("error", "remove NUL and control characters from the text"),
    "not_an_object": ("error", "each record must be a JSON object ({...})"),
    "malformed_row": ("error", "give every CSV row the same number of fields as the header (quote commas)"),
    "unreadable_file": ("error", "check that the file is complete and in a supported format"),
    "missing_field": ("error", "add the field, or map your column to it with data.columns"),
    "empty_field": ("error", "give the field some text, or drop the record"),
    "wrong_type": ("error", "use the type shown in the message"),
    "unknown_role": ("error", "use one of the roles system, user, assistant, tool"),
    "turn_order": ("error", "order turns as [system], user, assistant, user, assistant, ... (an assistant tool "
                            "call is followed by tool results, then an assistant turn)"),
    "unknown_tool": ("error", "declare every called function in the record's tools, or fix the call's name"),
    "too_deep": ("error", "flatten the value: training data does not nest that deep"),
    "duplicate_key": ("error", "give each key once: JSON keeps only the last value of a repeated key"),
    "needs_conversational": ("error", "use the conversational form of the format (see the message)"),
    "unsupported_mask": ("error", "restructure the record as the message says"),
    "wrong_label": ("error", "use one of the label values data.columns names, or drop the record"),
    "mapping_conflict": ("error", "map or ignore the column (data.columns / data.ignore_columns)"),
    "unused_target": ("error", "map the column (data.columns) or list it in data.ignore_columns"),
    "mixed_forms": ("error", "give every record the same form: text fields, or message lists"),
    "chosen_equals_rejected": ("error", "a preference pair needs two different responses; drop the pair"),
    "empty_prompt": ("error", "give the record a non-empty prompt"),
    "too_long": ("error", "shorten the record or raise training.max_length"),
    "unrecognised_shape": ("error", "set data.format, or map your columns with data.columns"),
    "wrong_format": ("error", "use data of the kind the stage's method trains on"),
    "duplicate": ("removed", "nothing to do: the first copy is kept"),
    "near_duplicate": ("removed", "nothing to do: the first of the near-duplicates is kept"),
    "bom": ("warning", "save the file as UTF-8 without a byte-order mark"),
    "pii": ("warning", "remove or mask personal data and credentials before training"),
    "leakage": ("warning", "remove the overlapping records from one of the splits"),
    "unused_column": ("warning", "map it (data.columns) if it matters, or list it in data.ignore_columns"),
}

QUARANTINED = {"error", "removed"}


@dataclass
class DataProblem:
    """One problem in one record (or one file)."""

    file: str
    line: Optional[int]
    field: str
    reason: str
    message: str
    fix: str = ""
    severity: str = ""

    def __post_init__(self) -> None:
        sev, fix = REASONS.get(self.reason, ("error", ""))
        self.severity = self.severity or sev
        self.fix = self.fix or fix

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field_ = f" {self.field}:" if self.field else ""
        return f"{where}:{field_} {self.message} ({self.reason}); fix: {self.fix}"


class RecordError(Exception):
    """Raised by the format normalisers for a record that cannot be used."""

    def __init__(self, field: str, reason: str, message: str, fix: str = ""):
        super().__init__(message)
        self.field, self.reason, self.message, self.fix = field, reason, message, fix


@dataclass
class Summary:
    """What a validate/prepare pass did. `records_in == records_out + quarantined`, always."""

    records_in: int = 0
    records_out: int = 0
    quarantined: int = 0
    format: Optional[str] = None
    splits: dict[str, int] = field(default_factory=dict)
    tokenizer: str = ""
    quarantine: Optional[str] = None
    warnings: list[str] = field(default_factory=list)
    problems: list[DataProblem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    max_problems: int = 10_000

    def add(self, problem: DataProblem) -> None:
        """Count a problem (kept in `problems` up to `max_problems`; counts are always exact)."""
        self.counts[problem.reason] += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)

    @property
    def errors(self) -> int:
        return sum(n for r, n in self.counts.items() if REASONS.get(r, ("error",))[0] == "error")

    @property
    def problem_total(self) -> int:
        return sum(self.counts.values())

    def balanced(self) -> bool:
        return self.records_in == self.records_out + self.quarantined

    def to_dict(self) -> dict[str, Any]:
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "quarantined": self.quarantined,
            "format": self.format,
            "splits": dict(self.splits),
            "errors": self.errors,
            "counts": dict(sorted(self.counts.items())),
            "tokenizer": self.tokenizer,
            "quarantine": self.quarantine,
            "warnings": list(self.warnings),
            "problems": [p.to_dict() for p in self.problems],
            "problems_total": self.problem_total,
        }

    def count_lines(self) -> list[str]:
        """'reason: n (severity)' lines, most frequent first."""
        return [f"{reason}: {n} ({REASONS.get(reason, ('error',))[0]})" for reason, n in self.counts.most_common()]
