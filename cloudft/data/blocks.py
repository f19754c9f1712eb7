"""The fast JSONL path of the pipeline: per-record work on blocks of lines, optionally in worker processes.

A block is a byte range of a JSONL file that starts and ends at line boundaries. `stage1(data, ctx)` does the
per-record work that depends on the record alone (parse, map columns, normalise, control characters, canonical
line, SHA-256, split by hash, too-long by characters, PII) and returns the results column by column, with the
records it rejected and where they fall among the accepted ones. The pipeline (`Pipeline.consume`) then applies
the checks that need the whole run's state (exact duplicates, prompt leakage) in file order, exactly as the
record-at-a-time path does, so the problems, the quarantine file and the output bytes are the same whichever
path or however many workers ran.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from .formats import (REGISTRY, check_chars, check_form, make_mapper, normalise, note_unused, prompt_key,
                      record_text, source_field)
from .problems import DataProblem, RecordError
from .readers import BOM, clip, duplicate_problem, fast_loads, no_repeated_key, parse_line
from .tokens import CHARS_PER_TOKEN_BOUND
from .version import canonical_bytes

try:  # canonical_bytes without the call: the same bytes
    from orjson import OPT_SORT_KEYS as SORT_KEYS
    from orjson import dumps as fast_dumps
except ImportError:  # pragma: no cover - optional speed-up
    SORT_KEYS = fast_dumps = None

BLOCK_BYTES = 4 << 20  # bytes of JSONL per block
PARALLEL_MIN_BYTES = 64 << 20  # smaller files are not worth starting worker processes for


@dataclass
class Context:
    """What stage 1 needs to know about the run (picklable: sent to the workers once per block)."""

    name: str
    fmt: str
    split: str  # the file's role
    columns: Optional[dict[str, Any]] = None
    ignore: tuple = ()  # data.ignore_columns
    form: Optional[str] = None  # the dataset's form ("standard" / "conversational"), when fixed
    prompt_only: bool = False
    max_length: Optional[int] = None
    bounds: list = field(default_factory=list)  # split_bounds of the holdout (train files only)
    need_pkey: bool = False
    track_prompts: bool = False
    pii: bool = False
    first: bool = True  # the block starts the file (line 1: byte-order mark)


@dataclass
class Block:
    """Stage-1 results of one block. Accepted records are columns; `rejects` are (position among the accepted
    records, problem, raw text) in file order; `too_long`/`pii` map an accepted record's index to its finding."""

    nlines: int = 0  # physical lines in the block
    records: int = 0  # records (non-blank lines)
    bom: bool = False
    rel: list = field(default_factory=list)  # line of each accepted record, relative to the block (1-based)
    blobs: dict = field(default_factory=dict)  # split -> its accepted canonical lines, each ending in a newline
    digests: list = field(default_factory=list)
    splits: Optional[list] = None  # split of each accepted record (None: all in the file's role)
    pkeys: Optional[list] = None  # prompt digest (12 bytes) or None, when leakage is tracked
    too_long: dict = field(default_factory=dict)
    pii: dict = field(default_factory=dict)
    rejects: list = field(default_factory=list)
    unused: Counter = field(default_factory=Counter)  # columns the format does not read -> records
    unique: bool = True  # no two accepted records of the block have the same digest

    def __len__(self) -> int:
        return len(self.digests)

    def line(self, i: int, split: str) -> bytes:
        """The canonical line of accepted record `i` (whose split is `split`)."""
        cache = self.__dict__.get("_lines")
        if cache is None:
            cache = self.__dict__["_lines"] = {name: blob.split(b"\n") for name, blob in self.blobs.items()}
            if self.splits is not None:  # index of each record within its split's lines
                seen: dict[str, int] = {}
                cache[None] = [seen.__setitem__(sp, seen.get(sp, -1) + 1) or seen[sp] for sp in self.splits]
        return cache[split][i if self.splits is None else cache[None][i]]

    @property
    def clean(self) -> bool:
        """Nothing in this block can produce a problem except an exact duplicate of an earlier block."""
        return not self.rejects and not self.too_long and not self.pii and self.pkeys is None and self.unique


def stage1(data: bytes, ctx: Context) -> Block:
    """Per-record work on `data` (whole lines of a JSONL file)."""
    from hashlib import blake2b, sha256

    name, fmt, prompt_only, form = ctx.name, ctx.fmt, ctx.prompt_only, ctx.form
    source = REGISTRY[fmt]
    mapper = make_mapper(ctx.columns, ctx.ignore)
    plain = (ctx.columns is None and not ctx.ignore and fmt == "prompt_completion" and not prompt_only
             and form != "conversational")
    loads, dumps, from_bytes = fast_loads, (fast_dumps or canonical_bytes), int.from_bytes
    limit = ctx.max_length
    bound = limit * CHARS_PER_TOKEN_BOUND if limit else None
    bounds, need_pkey, track, pii = ctx.bounds, ctx.need_pkey, ctx.track_prompts, ctx.pii
    if pii:
        from .pii import find_pii
    b = Block(splits=[] if bounds else None, pkeys=[] if track else None)
    rel, digests, rejects = b.rel, b.digests, b.rejects
    lines: list[bytes] = []
    by_split: dict[str, list[bytes]] = {}
    raw_lines = data.split(b"\n")
    if raw_lines and not raw_lines[-1]:
        raw_lines.pop()
    b.nlines = len(raw_lines)
    if ctx.first and raw_lines and raw_lines[0].startswith(BOM):
        raw_lines[0] = raw_lines[0][len(BOM):]
        b.bom = True
    records = 0
    splits_append, rel_append, digest_append = (b.splits.append if bounds else None), rel.append, digests.append
    for lineno, raw in enumerate(raw_lines, 1):
        raw = raw.rstrip(b"\r\n")
        try:
            obj = loads(raw)
        except ValueError:
            if not raw.strip():
                continue
            records += 1
            obj, problem = parse_line(raw, name, lineno)
            if problem is not None:
                rejects.append((len(digests), problem, raw))
                continue
        else:
            records += 1
        chars = b"\x7f" in raw or (b"\\" in raw and (b"\\u" in raw or b"\\b" in raw or b"\\f" in raw))
        try:
            rec = pkey = None
            if plain and type(obj) is dict and len(obj) == 2 and no_repeated_key(raw, 2):  # the common case,
                p = obj.get("prompt")  # the same result as below
                if type(p) is str and p and not p.isspace() and "completion" in obj:
                    c = obj["completion"]
                    if type(c) is str and c and not c.isspace():
                        rec = {"prompt": p, "completion": c}
                        pkey = p  # prompt_key(rec)
                        if chars:
                            check_chars(rec)
            if rec is None:
                problem = duplicate_problem(raw, obj, name, lineno)
                if problem is not None:
                    rejects.append((len(digests), problem, raw))
                    continue
                mapped = mapper(obj)
                rec = normalise(mapped, fmt, prompt_only=prompt_only, chars=chars)
                note_unused(source, mapped, b.unused)
                check_form(rec, form)
                pkey = prompt_key(rec) if need_pkey else None
        except RecordError as exc:
            rejects.append((len(digests), DataProblem(name, lineno, source_field(ctx.columns, exc.field), exc.reason,
                                                    exc.message, exc.fix), raw))
            continue
        line = dumps(rec, option=SORT_KEYS) if SORT_KEYS is not None else dumps(rec)
        if bound is not None and len(line) > bound:
            b.too_long[len(digests)] = (f"{len(line)} characters: longer than max_length={limit} tokens for any tokenizer "
                             f"(over {CHARS_PER_TOKEN_BOUND} characters per token)")
        if bounds:  # version.hash_fraction / assign_split
            key = pkey or line
            x = from_bytes(blake2b(key.encode("utf-8") if isinstance(key, str) else key,
                                   digest_size=8).digest(), "big") / 2.0 ** 64
            rec_split = "train"
            for sname, end in bounds:
                if x < end:
                    rec_split = sname
                    break
            splits_append(rec_split)
            by_split.setdefault(rec_split, []).append(line)
        else:
            lines.append(line)
        if track:
            b.pkeys.append(sha256(pkey.encode("utf-8")).digest()[:12] if pkey is not None else None)
        if pii:
            kinds = find_pii(record_text(rec))
            if kinds:
                b.pii[len(digests)] = kinds
        rel_append(lineno)
        digest_append(sha256(line).digest())
    b.records = records
    b.unique = len(set(digests)) == len(digests)
    if bounds:
        b.blobs = {sname: b"\n".join(ls) + b"\n" for sname, ls in by_split.items()}
    elif lines:
        b.blobs = {ctx.split: b"\n".join(lines) + b"\n"}
    # raw text of a rejected record is only kept for the quarantine file
    b.rejects = [(pos, prob, clip(raw.decode("utf-8", "replace"))) for pos, prob, raw in rejects]
    return b


def raw_line(data: bytes, rel: int, first: bool) -> str:
    """The raw text of line `rel` of a block (for the quarantine file)."""
    raw = data.split(b"\n", rel)[rel - 1]
    if rel == 1 and first and raw.startswith(BOM):
        raw = raw[len(BOM):]
    return clip(raw.rstrip(b"\r\n").decode("utf-8", "replace"))


def block_ranges(path: str, size: int, block: Optional[int] = None) -> list[tuple[int, int]]:
    """(start, end) byte ranges of `path` that each end just after a newline (the last one at the end of file)."""
    block = block or BLOCK_BYTES
    out, start = [], 0
    with open(path, "rb") as fh:
        while start < size:
            end = start + block
            if end >= size:
                out.append((start, size))
                break
            fh.seek(end)
            fh.readline()
            end = min(fh.tell(), size)
            out.append((start, end))
            start = end
    return out


def read_range(path: str, start: int, end: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(end - start)


def _work(args: tuple) -> Block:
    path, start, end, ctx = args
    return stage1(read_range(path, start, end), ctx)


def worker_init() -> None:
    """A pool worker dies on SIGTERM and leaves Ctrl-C to its parent, whatever handlers its parent had.

    Workers are forked, so they inherit the parent's signal handlers: a process that had taken SIGTERM (train_entry's
    checkpoint-on-SIGTERM handler, an embedding app's) gave workers that ignored Pool.terminate(), which then waited
    for them forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def iter_stream_blocks(fh: Any, block: Optional[int] = None):
    """Whole-line blocks of a binary stream (a gzip file): data, in order."""
    block = block or BLOCK_BYTES
    while True:
        data = fh.read(block)
        if not data:
            return
        if not data.endswith(b"\n"):
            data += fh.readline()
        yield data


def default_workers() -> int:
    """Worker processes for a large plain JSONL file: CLOUDFT_DATA_WORKERS, else 1 (in-process).

    Workers pay off only with idle cores: on the shared 2-core dev box (the other core busy) two workers were
    slower than one process (1.6 s vs 1.1 s for 200k records), so they are opt-in."""
    env = os.environ.get("CLOUDFT_DATA_WORKERS")
    return max(0, int(env)) if env else 1
