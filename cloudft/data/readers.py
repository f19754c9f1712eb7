"""Read records from JSONL, JSON arrays, CSV/TSV and Parquet files (each optionally gzip-compressed), streaming.

`iter_raw(path)` yields one `RawItem` per record in the file, with its line number, so every problem can be
located. A record that cannot be read (invalid JSON, invalid UTF-8, a malformed CSV row) is still yielded,
with `problem` set, so that records in = records out + quarantined holds. Blank lines are not records.

Hostile input is a record-level problem, never a traceback: JSON nested past the parser's limit, an integer
of more than 4,300 digits, a repeated key (JSON keeps the last value silently), text after a JSON array's end,
a CSV cell over MAX_CSV_CELL. A corrupt or truncated gzip stream, repeated CSV headers and repeated Parquet
columns are file-level errors naming the file. Files with only carriage returns (old Mac) are split on them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
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
MAX_CSV_CELL = 16 << 20  # CSV cells up to this many characters are read (the csv module's default is 128 KiB)

try:  # orjson is several times faster than the standard library; results are the same for valid JSON
    from orjson import loads as fast_loads
except ImportError:  # pragma: no cover - optional speed-up
    fast_loads = json.loads


_ESCAPE_OR_DEL = re.compile(rb"\\[ubf]|\x7f").search  # \b and \f decode to control characters too
_KEY_END = re.compile(rb'"\s*:')  # the end of an object key (or a quote and a colon inside a string: \":)


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


class _GuardedGzip(io.RawIOBase):
    """A gzip stream whose corruption or truncation is a CloudftError naming the file, not a bare EOFError
    (which click reports as just "Aborted")."""

    def __init__(self, path: Path, name: str):
        self._fh = gzip.open(path, "rb")
        self._name = name

    def _guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except (EOFError, zlib.error, OSError) as exc:
            raise CloudftError(f"{self._name}: the gzip data is corrupt or truncated ({exc})",
                               hint="re-create or re-download the file (`gzip -t FILE` checks it)") from None

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        return self._guard(self._fh.readinto, buf)

    def read(self, size: int = -1) -> bytes:
        return self._guard(self._fh.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._guard(self._fh.readline, size)

    def peek(self, size: int = 0) -> bytes:
        return self._guard(self._fh.peek, size)

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_binary(path: Path, name: Optional[str] = None) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip (corruption is a CloudftError naming `name`)."""
    return _GuardedGzip(path, name or str(path)) if _is_gzip(path) else open(path, "rb")


def file_kind(path: Path, name: Optional[str] = None) -> str:
    """'jsonl', 'json' (an array), 'csv', 'tsv' or 'parquet', from the suffix (under .gz) or the first byte."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in PARQUET_SUFFIXES:
        return "parquet"
    if last in CSV_SUFFIXES:
        return last[1:]
    with open_binary(path, name) as fh:
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
    kind = file_kind(path, name)
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


def count_keys(obj: Any) -> int:
    """Object keys in a parsed JSON value, at every level (iterative)."""
    n, stack = 0, [obj]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            n += len(item)
            stack.extend(v for v in item.values() if type(v) in (dict, list))
        elif type(item) is list:
            stack.extend(v for v in item if type(v) in (dict, list))
    return n


def no_repeated_key(raw: bytes, keys: int) -> bool:
    """True when the raw JSON line cannot hold a repeated key, given that the parsed value has `keys` keys.

    A key ends with `"`, optional blanks and `:`, so the line has at least one such end per key written. When
    every colon in the line directly follows a quote, those ends are the `":` pairs; otherwise they are counted
    with a regular expression. Either count equal to `keys` means no key is written twice (a `\\":` inside a
    string can only add to it)."""
    quoted = raw.count(b'":')
    if quoted == keys and raw.count(b":") == quoted:
        return True
    return len(_KEY_END.findall(raw)) == keys


def duplicate_key(raw: bytes, obj: Any) -> Optional[str]:
    """A key that appears twice in one object of the raw JSON line, else None (parsed again only when the
    counts leave it open)."""
    if type(obj) is not dict or no_repeated_key(raw, count_keys(obj)):
        return None
    hook, found = _repeat_recorder()
    try:
        json.loads(raw, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return None
    return found[0] if found else None


def parse_line(raw: bytes, name: str, lineno: int) -> tuple[Any, Optional[DataProblem]]:
    """(value, None) or (None, problem) for one JSONL line that the fast parser refused or that needs a second
    look: invalid UTF-8, invalid JSON, nesting past the parser's limit, an integer too long to convert."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, _utf8_problem(name, lineno, exc)
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, DataProblem(name, lineno, "", "invalid_json", f"invalid JSON at column {exc.colno}: {exc.msg}")
    except RecursionError:
        return None, DataProblem(name, lineno, "", "too_deep", "JSON nested too deep to read")
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        return None, DataProblem(name, lineno, "", "invalid_json", f"unreadable JSON value: {str(exc)[:120]}")


def _repeated_key(pairs: list) -> list[str]:
    """[the first key given twice] among an object's (key, value) pairs, else []."""
    seen: set = set()
    for k, _ in pairs:
        if k in seen:
            return [k]
        seen.add(k)
    return []


def _repeat_recorder() -> tuple[Callable[[list], dict], list[str]]:
    """An `object_pairs_hook` that builds objects as json does, and the list where it records the first key
    given twice in any object (clear it to look again)."""
    found: list[str] = []

    def hook(pairs: list) -> dict:
        if not found:
            found.extend(_repeated_key(pairs))
        return dict(pairs)

    return hook, found


def _duplicate_key_problem(name: str, lineno: int, key: str) -> DataProblem:
    return DataProblem(name, lineno, key, "duplicate_key",
                       f"key '{key}' appears twice in one object (JSON would keep only the last value)")


def duplicate_problem(raw: bytes, obj: Any, name: str, lineno: int) -> Optional[DataProblem]:
    """The problem for a record with a repeated key, else None."""
    dup = duplicate_key(raw, obj)
    return None if dup is None else _duplicate_key_problem(name, lineno, dup)


def read_record(raw: bytes, name: str, lineno: int) -> tuple[Any, Optional[DataProblem]]:
    """Parse one JSONL line: orjson when it can, the standard library to explain what it cannot; a repeated
    key is a problem."""
    try:
        obj = fast_loads(raw)
    except ValueError:
        obj, problem = parse_line(raw, name, lineno)
        if problem is not None:
            return None, problem
    problem = duplicate_problem(raw, obj, name, lineno)
    return (None, problem) if problem is not None else (obj, None)


def _cr_only(head: bytes) -> bool:
    return b"\r" in head and b"\n" not in head


def _cr_lines(fh: IO[bytes]) -> Iterator[bytes]:
    """Lines of a stream whose lines end in a bare carriage return."""
    rest = b""
    while True:
        chunk = fh.read(1 << 20)
        if not chunk:
            if rest:
                yield rest
            return
        parts = (rest + chunk).split(b"\r")
        rest = parts.pop()
        yield from parts


def is_cr_only(path: Path) -> bool:
    """Whether a file's lines end in bare carriage returns (no line feed in its first 64 KiB)."""
    with open_binary(path) as fh:
        return _cr_only(fh.read(1 << 16))


def _iter_jsonl(path: Path, name: str, warn: Warn) -> Iterator[RawItem]:
    """JSONL: orjson parses the bytes when installed; the standard library explains the lines that fail."""
    with open_binary(path, name) as fh:
        head = fh.peek(1 << 16)[: 1 << 16] if hasattr(fh, "peek") else b""
        lines: Iterator[bytes] = _cr_lines(fh) if _cr_only(head) else iter(fh)
        for lineno, data in enumerate(lines, 1):
            if lineno == 1 and data.startswith(BOM):
                data = data[len(BOM):]
                warn(DataProblem(name, 1, "", "bom", "file starts with a UTF-8 byte-order mark (ignored)"))
            data = data.rstrip(b"\r\n")
            if not data.strip():
                continue
            obj, problem = read_record(data, name, lineno)
            if problem is not None:
                yield RawItem(lineno, raw=data, problem=problem)
                continue
            yield RawItem(lineno, obj=obj, raw=data)


def _iter_json_array(path: Path, name: str, warn: Warn) -> Iterator[RawItem]:
    with open_binary(path, name) as fh:
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
    if _cr_only(data[: 1 << 16]):  # a bare CR is JSON whitespace, and cannot stand inside a JSON string
        text = text.replace("\r", "\n")
    pairs, repeated = _repeat_recorder()
    decoder = json.JSONDecoder(object_pairs_hook=pairs)
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
            tail = text[pos + 1:]
            if tail.strip():  # a second array or stray text: records there would otherwise vanish
                at = line + text.count("\n", pos, pos + 1 + len(tail) - len(tail.lstrip()))
                yield RawItem(at, raw=clip(tail.strip()), problem=DataProblem(
                    name, at, "", "invalid_json", "text after the end of the JSON array (a second array, or "
                    "stray data): it is not read", "give the file one JSON array, or write it as JSONL"))
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield RawItem(line, raw=clip(text[pos:]), problem=DataProblem(
                name, exc.lineno, "", "invalid_json",
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg} (the rest of the array is unreadable)"))
            return
        except (RecursionError, ValueError) as exc:
            what = "nested too deep to read" if isinstance(exc, RecursionError) else str(exc)[:120]
            yield RawItem(line, raw=clip(text[pos:]), problem=DataProblem(
                name, line, "", "too_deep" if isinstance(exc, RecursionError) else "invalid_json",
                f"unreadable JSON value ({what}); the rest of the array is unreadable"))
            return
        raw = text[pos:end] if end - pos <= MAX_RAW_CHARS else clip(text[pos:end])
        if repeated:
            yield RawItem(line, raw=raw, problem=_duplicate_key_problem(name, line, repeated[0]))
            repeated.clear()
        else:
            yield RawItem(line, obj=obj, raw=raw)
        pos = end


def _iter_csv(path: Path, name: str, delimiter: str, warn: Warn) -> Iterator[RawItem]:
    csv.field_size_limit(MAX_CSV_CELL)  # process-wide: the csv module has no per-reader limit
    with open_binary(path, name) as raw_fh:
        head = raw_fh.peek(3)[:3] if hasattr(raw_fh, "peek") else b""
        if head == BOM:
            warn(DataProblem(name, 1, "", "bom", "file starts with a UTF-8 byte-order mark (ignored)"))
        fh = io.TextIOWrapper(raw_fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CloudftError(f"{name}: the header row is unreadable ({exc})",
                               hint="check the file's first line and delimiter") from None
        seen: set[str] = set()
        repeats = [h for h in header if h in seen or seen.add(h)]
        if repeats:
            raise CloudftError(f"{name}: the header names {', '.join(map(repr, dict.fromkeys(repeats)))} more than "
                               "once: all but the last such column would be lost",
                               hint="give every column a distinct name")
        prev = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a cell over the size limit: the reader resumes on the next row
                start, prev = prev + 1, reader.line_num
                yield RawItem(start, raw="", problem=DataProblem(
                    name, start, "", "malformed_row", f"unreadable row ({exc})",
                    f"cells are limited to {MAX_CSV_CELL >> 20} MiB; split the text or use JSONL"))
                continue
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
        except (ValueError, RecursionError):
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
        with open_binary(path, name) as fh:
            source = io.BytesIO(fh.read())
    try:
        pfile = pq.ParquetFile(source)
    except Exception as exc:  # pyarrow raises ArrowInvalid & co. for a damaged file
        raise CloudftError(f"{name}: not a readable Parquet file ({exc})",
                           hint="check that the file is complete (re-export it)") from None
    names = pfile.schema_arrow.names
    repeats = sorted({n for n in names if names.count(n) > 1})
    if repeats:
        raise CloudftError(f"{name}: the columns {', '.join(repeats)} appear more than once: all but one would be lost",
                           hint="give every column a distinct name")
    number = 0
    batches = pfile.iter_batches(batch_size=4096)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # a damaged row group
            raise CloudftError(f"{name}: Parquet data unreadable after record {number} ({exc})",
                               hint="check that the file is complete (re-export it)") from None
        for obj in batch.to_pylist():
            number += 1
            yield RawItem(number, obj=obj, raw=None)


def empty_file_error(path: Path, name: str) -> CloudftError:
    """The error for a data file with no records, saying what it holds instead."""
    kind = file_kind(path, name)
    head = b""
    if kind != "parquet":
        with open_binary(path, name) as fh:
            head = fh.read(1 << 16)
        head = head[len(BOM):] if head.startswith(BOM) else head
    if kind == "parquet":
        what = "has no rows"
    elif not head.strip():
        what = "is empty" if not head else "has only blank lines"
    elif kind in ("csv", "tsv"):
        what = "has a header row and no records"
    elif kind == "json":
        what = "is an empty JSON array"
    else:
        what = "has no records"
    return CloudftError(f"{name}: no records: the file {what}",
                        hint="check that this is the file you meant (data.train / data.validation) and that it was "
                             "written completely")
