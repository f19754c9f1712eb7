"""Read canonical training data (JSONL/JSON/CSV/Parquet, gzip ok) into a `datasets.Dataset`.

train_entry reads only the canonical formats (TRL's column names); `cloudft data prepare` converts
everything else before upload. Format `auto` is decided from the first record's keys.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Optional

CANONICAL_KEYS = {
    "preference": {"prompt", "chosen", "rejected"},
    "kto": {"prompt", "completion", "label"},
    "prompt_completion": {"prompt", "completion"},
    "messages": {"messages"},
    "text": {"text"},
}

METHOD_FORMATS = {
    "sft": ("prompt_completion", "messages", "text"),
    "dpo": ("preference",),
    "orpo": ("preference",),
    "reward": ("preference",),
    "kto": ("kto", "preference"),  # TRL splits pairs into good/bad labels
    "rl": ("prompt_completion", "preference", "messages", "kto"),
}


class DataError(ValueError):
    """The data cannot be used for this method (exit code 2)."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL / JSON array / CSV / Parquet file (gzip ok). Line numbers are kept in errors."""
    name = path.name
    if name.endswith((".parquet",)):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig") as fh:
        if name.endswith((".csv", ".csv.gz")):
            import csv

            return list(csv.DictReader(fh))
        text = fh.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(stripped)
    records = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i}: invalid JSON ({exc.msg}); run `cloudft data validate` on it") from None
    return records


def detect_format(record: dict[str, Any]) -> str:
    keys = set(record)
    for fmt, needed in CANONICAL_KEYS.items():
        if needed <= keys:
            return fmt
    raise DataError(
        f"unrecognised record keys {sorted(keys)}; train_entry reads canonical data "
        "(prompt/completion, messages, text, prompt/chosen/rejected, prompt/completion/label). "
        "Convert with `cloudft data prepare`."
    )


def load_dataset(path: Path, fmt: str, method: str, columns: Optional[dict[str, str]] = None):
    """A `datasets.Dataset` with only the canonical columns for `fmt`, checked against `method`."""
    from datasets import Dataset

    records = read_records(path)
    if not records:
        raise DataError(f"{path}: no records")
    if columns:
        rename = {theirs: ours for ours, theirs in columns.items()}
        records = [{rename.get(k, k): v for k, v in r.items()} for r in records]
    if fmt in ("auto", None):
        fmt = detect_format(records[0])
    if fmt not in CANONICAL_KEYS:
        raise DataError(f"{path}: format '{fmt}' is not canonical; convert it with `cloudft data prepare`")
    allowed = METHOD_FORMATS[method]
    if fmt not in allowed:
        raise DataError(f"{path}: method '{method}' needs {' or '.join(allowed)} data, got {fmt}")
    keep = sorted(CANONICAL_KEYS[fmt])
    rows = []
    for i, r in enumerate(records, start=1):
        missing = [k for k in keep if k not in r]
        if missing:
            raise DataError(f"{path}: record {i} lacks {missing}")
        rows.append({k: r[k] for k in keep})
    if fmt == "kto":
        for r in rows:
            r["label"] = r["label"] in (True, 1, "true", "True", "1", "good", "up")
    return Dataset.from_list(rows), fmt
