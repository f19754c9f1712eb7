"""How many tokens a stage trains on: from the data resolver's counts when present, else from file sizes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from train_entry.config import is_remote

if TYPE_CHECKING:
    from ..data.resolve import ResolvedData

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


def data_size(data: "ResolvedData") -> DataSize:
    """Records of the train split from the data resolver's counts; tokens estimated from the file's size."""
    resolved = data.records.get("train")
    records = resolved
    train = data.train
    path = Path(train) if isinstance(train, str) and not is_remote(train) else None
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
    how = "record count from the data resolver" if resolved is not None else "records counted from lines"
    return DataSize(records, tokens, f"{how}; tokens estimated as file bytes / {BYTES_PER_TOKEN:g}"
                    + (f" x{COMPRESSED_RATIO:g} (compressed)" if compressed else ""))
