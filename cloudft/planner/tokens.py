"""How many tokens a stage trains on: from the data resolver's counts when present, else from file sizes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

BYTES_PER_TOKEN = 4.0  # English text with BPE tokenizers (~4 characters per token)
JSON_OVERHEAD_BYTES = 30  # keys, quotes and braces of one canonical JSONL record
COMPRESSED_RATIO = 3.0  # .gz / .parquet: text is ~3x the bytes on disk (assumption)
COUNT_LINES_LIMIT = 256 << 20  # read at most this much to count records; extrapolate beyond


@dataclass
class DataSize:
    """Records and text tokens of a stage's training data, with where the numbers came from."""

    records: Optional[int]
    tokens: Optional[int]
    source: str


def _split_value(value: Any) -> Optional[int]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, dict):
        for key in ("train", "total"):
            if isinstance(value.get(key), (int, float)):
                return int(value[key])
    return None


def _count_lines(path: Path) -> int:
    size = path.stat().st_size
    read = lines = 0
    with open(path, "rb") as fh:
        while read < COUNT_LINES_LIMIT:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            read += len(chunk)
            lines += chunk.count(b"\n")
    if read < size and read:
        lines = int(lines * size / read)
    return max(lines, 1)


def data_size(stage_data: dict[str, Any]) -> DataSize:
    """Records and tokens of the train split: resolver counts (`records`, `tokens`), else file-size estimates."""
    records = _split_value(stage_data.get("records"))
    tokens = _split_value(stage_data.get("tokens"))
    if tokens is not None:
        return DataSize(records, tokens, "token count from the data resolver")
    train = stage_data.get("train")
    path = Path(train) if isinstance(train, str) and "://" not in train else None
    if path is None or not path.is_file():
        if records is not None:
            return DataSize(records, None, "record count from the data resolver; token count unknown")
        return DataSize(None, None, f"train data {train!r} is not a local file: size unknown")
    size = path.stat().st_size
    compressed = path.suffix in (".gz", ".parquet", ".zst", ".bz2")
    if records is None and path.suffix in (".jsonl", ".json", ".csv", ".txt"):
        records = _count_lines(path)
    text_bytes = size * (COMPRESSED_RATIO if compressed else 1.0) - JSON_OVERHEAD_BYTES * (records or 0)
    tokens = max(int(text_bytes / BYTES_PER_TOKEN), 1)
    how = "record count from the data resolver" if _split_value(stage_data.get("records")) is not None \
        else "records counted from lines"
    return DataSize(records, tokens, f"{how}; tokens estimated as file bytes / {BYTES_PER_TOKEN:g}"
                    + (f" x{COMPRESSED_RATIO:g} (compressed)" if compressed else ""))
