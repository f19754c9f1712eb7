"""Read records from JSONL, JSON arrays, CSV/TSV and Parquet files (each optionally gzip-compressed), streaming.

`iter_raw(path)` yields one `RawItem` per record in the file, with its line number, so every problem can be
located. A record that cannot be read (invalid JSON, invalid UTF-8, a malformed CSV row) is still yielded,
with `problem` set, so that records in = records out + quarantined holds. Blank lines are not records.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional

from ..errors import CloudftError
from .problems import DataProblem

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_SUFFIXES = {".parquet", ".pq"}
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
MAX_RAW_CHARS = 1_000_000  # raw text kept per quarantined record (the rest is elided, with its length)

try:  # orjson is several times faster than the standard library; results are the same for valid JSON
    from orjson import loads as fast_loads
except ImportError:  # pragma: no cover - optional speed-up
    fast_loads = json.loads


_ESCAPE_OR_DEL = re.compile(rb"\\[ubf]|\x7f").search  # \b and \f decode to control characters too


@dataclass
class RawItem:
    """One record as read: `obj` (a parsed value) or `problem` (why it could not be read), plus its raw text
    (`bytes` for JSONL lines, decoded only when the record is quarantined)."""

    line: int
    obj: Any = None
    raw: Any = None
    problem: Optional[DataProblem] = None

    def needs_char_check(self) -> bool:
        """False when the raw JSON line cannot hold control characters (no \\u escape, no DEL byte)."""
        raw = self.raw
        return not isinstance(raw, bytes) or _ESCAPE_OR_DEL(raw) is not None

    def raw_text(self) -> Any:
        """The raw record for the quarantine file (text, or the parsed value for Parquet)."""
        if isinstance(self.raw, bytes):
            return clip(self.raw.decode("utf-8", "replace"))
        return self.raw if self.raw is not None else self.obj


Warn = Callable[[DataProblem], None]


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def file_kind(path: Path) -> str:
    """'jsonl', 'json' (an array), 'csv', 'tsv' or 'parquet', from the suffix (under .gz) or the first byte."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in PARQUET_SUFFIXES:
        return "parquet"
    if last in CSV_SUFFIXES:
        return last[1:]
    with _open_binary(path) as fh:
        head = fh.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    head = head[len(BOM):] if head.startswith(BOM) else head
    return "json" if head.lstrip()[:1] == b"[" else "jsonl"


def clip(text: str) -> str:
    """Raw text for the quarantine file, elided past MAX_RAW_CHARS."""
    if len(text) <= MAX_RAW_CHARS:
        return text
    return text[:MAX_RAW_CHARS] + f"... [{len(text) - MAX_RAW_CHARS} more characters]"


def iter_raw(path: str | Path, warn: Optional[Warn] = None, display: Optional[str] = None) -> Iterator[RawItem]:
    """Yield every record of `path`. File-level warnings (a byte-order mark) go to `warn`."""
    path = Path(path)
    name = display or str(path)
    if not path.is_file():
        raise CloudftError(f"data file not found: {path}", hint="check data.train / data.validation in the spec")
    warn = warn or (lambda p: None)
    kind = file_kind(path)
    if kind == "parquet":
        yield from _iter_parquet(path, name)
    elif kind in ("csv", "tsv"):
        yield from _iter_csv(path, name, "\t" if kind == "tsv" else ",", warn)
    elif kind == "json":
        yield from _iter_json_array(path, name, warn)
    else:
        yield from _iter_jsonl(path, name, warn)


def _utf8_problem(name: str, line: int, exc: UnicodeDecodeError) -> DataProblem:
    return DataProblem(name, line, "", "invalid_utf8",
                       f"invalid UTF-8 at byte {exc.start} (0x{exc.object[exc.start]:02x})")


def _iter_jsonl(path: Path, name: str, warn: Warn) -> Iterator[RawItem]:
    """JSONL: orjson parses the bytes when installed; the standard library explains the lines that fail."""
    fast = fast_loads
    with _open_binary(path) as fh:
        for lineno, data in enumerate(fh, 1):
            if lineno == 1 and data.startswith(BOM):
                data = data[len(BOM):]
                warn(DataProblem(name, 1, "", "bom", "file starts with a UTF-8 byte-order mark (ignored)"))
            data = data.rstrip(b"\r\n")
            try:
                obj = fast(data)
            except ValueError:
                if not data.strip():
                    continue
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield RawItem(lineno, raw=data, problem=_utf8_problem(name, lineno, exc))
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield RawItem(lineno, raw=data, problem=DataProblem(
                        name, lineno, "", "invalid_json", f"invalid JSON at column {exc.colno}: {exc.msg}"))
                    continue
            yield RawItem(lineno, obj=obj, raw=data)


def _iter_json_array(path: Path, name: str, warn: Warn) -> Iterator[RawItem]:
    with _open_binary(path) as fh:
        data = fh.read()
    if data.startswith(BOM):
        data = data[len(BOM):]
        warn(DataProblem(name, 1, "", "bom", "file starts with a UTF-8 byte-order mark (ignored)"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield RawItem(line, raw=clip(data.decode("utf-8", "replace")), problem=_utf8_problem(name, line, exc))
        return
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line, counted = 1, 0
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n:
            yield RawItem(line + text.count("\n", counted, pos), raw="", problem=DataProblem(
                name, line + text.count("\n", counted, pos), "", "invalid_json", "JSON array is not closed (missing ']')"))
            return
        line += text.count("\n", counted, pos)
        counted = pos
        if text[pos] == "]":
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield RawItem(line, raw=clip(text[pos:]), problem=DataProblem(
                name, exc.lineno, "", "invalid_json",
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg} (the rest of the array is unreadable)"))
            return
        yield RawItem(line, obj=obj, raw=text[pos:end] if end - pos <= MAX_RAW_CHARS else clip(text[pos:end]))
        pos = end


def _iter_csv(path: Path, name: str, delimiter: str, warn: Warn) -> Iterator[RawItem]:
    with _open_binary(path) as raw_fh:
        head = raw_fh.peek(3)[:3] if hasattr(raw_fh, "peek") else b""
        if head == BOM:
            warn(DataProblem(name, 1, "", "bom", "file starts with a UTF-8 byte-order mark (ignored)"))
        fh = io.TextIOWrapper(raw_fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        prev = reader.line_num
        for row in reader:
            start, prev = prev + 1, reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            raw = delimiter.join(row)
            bad = next((i for i, cell in enumerate(row) if _has_surrogate(cell)), None)
            if bad is not None:
                yield RawItem(start, raw=clip(raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")),
                              problem=DataProblem(name, start, header[bad] if bad < len(header) else "",
                                                  "invalid_utf8", "invalid UTF-8 in this cell"))
                continue
            if len(row) != len(header):
                yield RawItem(start, raw=clip(raw), problem=DataProblem(
                    name, start, "", "malformed_row", f"row has {len(row)} fields, the header has {len(header)}"))
                continue
            yield RawItem(start, obj={k: _cell(v) for k, v in zip(header, row)}, raw=clip(raw))


def _cell(value: str) -> Any:
    """A CSV cell; a JSON list of objects (e.g. messages) is decoded."""
    if value.startswith("[{") and value.endswith("]"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _iter_parquet(path: Path, name: str) -> Iterator[RawItem]:
    from ..errors import require

    pq = require("pyarrow.parquet", "data")
    source: Any = str(path)
    if _is_gzip(path):
        with gzip.open(path, "rb") as fh:
            source = io.BytesIO(fh.read())
    try:
        pfile = pq.ParquetFile(source)
    except Exception as exc:  # pyarrow raises ArrowInvalid & co. for a damaged file
        raise CloudftError(f"{name}: not a readable Parquet file ({exc})",
                           hint="check that the file is complete (re-export it)") from None
    number = 0
    for batch in pfile.iter_batches(batch_size=4096):
        for obj in batch.to_pylist():
            number += 1
            yield RawItem(number, obj=obj, raw=None)
