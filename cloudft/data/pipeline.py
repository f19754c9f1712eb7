"""The streaming validate/prepare pipeline shared by `cloudft data`, the plan's resolver and the submit check.

Per record: read (readers) → map columns → normalise to the canonical form (formats) → token length →
exact duplicate → split by hash → prompt leakage → near duplicate (optional) → PII (optional) → out.
A record that fails a check goes to the quarantine file with its reason; nothing is dropped silently, so
`records_in == records_out + quarantined`. Memory is bounded by the per-record digests (≈100 bytes each),
never by the data itself.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import chain, compress, islice
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Optional

from ..errors import CloudftError
from .formats import (METHOD_KINDS, REGISTRY, SOURCE_TO_CANONICAL, all_keys, check_columns, check_form, form_of,
                      looks_like_target, make_mapper, normalise, note_unused, prompt_key, rank, record_parts,
                      record_text, shape_error, source_field)
from .problems import DataProblem, RecordError, Summary
from .readers import RawItem, _is_gzip, clip, empty_file_error, file_kind, is_cr_only, iter_raw, open_binary
from .tokens import CHARS_PER_TOKEN_BOUND, TokenCounter
from .version import canonical_bytes, hash_fraction, record_digest, split_bounds

DETECT_WINDOW = 100
MIN_EXAMPLES, FEW_EXAMPLES, MIN_VALIDATION = 50, 500, 50
MAX_EXAMPLES = 5  # examples of leakage listed in the warnings


@dataclass
class Options:
    """What to check and how. `holdout` maps held-out split names to fractions (hash split of train)."""

    format: str = "auto"
    columns: Optional[dict[str, Any]] = None
    ignore: tuple[str, ...] = ()  # data.ignore_columns
    method: str = "sft"
    max_length: Optional[int] = None
    counter: Optional[TokenCounter] = None
    tokenizer_note: str = "skipped: no tokenizer given"
    near_dup: Optional[float] = None
    pii: bool = False
    holdout: dict[str, float] = field(default_factory=dict)
    batch_size: int = 1024
    workers: Optional[int] = None  # processes for large JSONL files (None: CLOUDFT_DATA_WORKERS or one per core)


@dataclass
class Out:
    """One accepted record."""

    split: str
    line: bytes  # canonical JSON, UTF-8
    digest: bytes
    record: dict


class Pipeline:
    """Validates files one after another (train first), sharing duplicate and leakage state between them."""

    def __init__(self, options: Options, quarantine: Optional[IO[str]] = None, roles: Iterable[str] = ("train",)):
        """`roles`: the roles of the files that will be run (prompt leakage is tracked when there are several)."""
        self.opt = options
        self.summary = Summary(tokenizer=options.tokenizer_note)
        self.quarantine = quarantine
        self.source_format: Optional[str] = None if options.format == "auto" else str(options.format)
        if self.source_format is not None and self.source_format not in REGISTRY:
            raise CloudftError(f"unknown data format '{self.source_format}'",
                               hint=f"use auto or one of: {', '.join(sorted(REGISTRY))} (docs/data.md)")
        check_columns(options.columns, all_keys())
        self._mapper = make_mapper(options.columns, options.ignore)
        self.form: Optional[str] = None  # "standard" or "conversational": one form per dataset (TRL needs it)
        self._unused: Counter = Counter()  # columns the format does not read, in the current file
        self._files: list[str] = []
        self.file_sha256: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> hex, of files read whole
        self._seen: dict[bytes, int] = {}
        self._prompts: dict[bytes, int] = {}
        self._track_prompts = len(set(roles)) > 1
        self._near = None
        self._where: dict[int, str] = {}  # near-dup key (file ref | line) -> split
        self._leaks: list[str] = []
        self._leak_count = 0
        self._bounds = split_bounds(options.holdout)
        if options.near_dup:
            from .dedup import NearDupIndex

            self._near = NearDupIndex(options.near_dup)

    # -- bookkeeping -----------------------------------------------------------------------------
    def _loc(self, ref: int) -> str:
        return f"{self._files[ref >> 40]}:{ref & ((1 << 40) - 1)}"

    def _warn(self, problem: DataProblem) -> None:
        self.summary.add(problem)

    def _reject(self, problem: DataProblem, raw: Any) -> None:
        s = self.summary
        s.add(problem)
        s.quarantined += 1
        if self.quarantine is not None:
            entry = problem.to_dict()
            entry["record"] = raw
            try:
                line = json.dumps(entry, ensure_ascii=False, default=str)
            except (RecursionError, ValueError):  # a Parquet value nested too deep to write back as JSON
                entry["record"] = clip(repr(raw))
                line = json.dumps(entry, ensure_ascii=False, default=str)
            self.quarantine.write(line + "\n")

    # -- the run ---------------------------------------------------------------------------------
    def run(self, path: str | Path, split: str = "train", display: Optional[str] = None) -> Iterator[Out]:
        """Stream the accepted records of one file. `split` is the file's role (train or validation)."""
        name = display or str(path)
        self._files.append(name)
        file_ref = (len(self._files) - 1) << 40
        before = self.summary.records_in
        items = iter_raw(path, warn=self._warn, display=name)
        items = self._detect(items, name)
        batch: list[tuple[RawItem, dict]] = []
        for item in items:
            self.summary.records_in += 1
            if item.problem is not None:
                self._reject(item.problem, item.raw_text())
                continue
            try:
                rec = self.convert(item.obj, chars=item.needs_char_check())
            except RecordError as exc:
                self._reject(DataProblem(name, item.line, source_field(self.opt.columns, exc.field), exc.reason,
                                         exc.message, exc.fix), _raw(item))
                continue
            batch.append((item, rec))
            if len(batch) >= self.opt.batch_size:
                yield from self._flush(batch, name, file_ref, split)
                batch = []
        if batch:
            yield from self._flush(batch, name, file_ref, split)
        self._end_file(path, name, self.summary.records_in - before)

    def convert(self, obj: Any, chars: bool = True) -> dict:
        """One raw record → its canonical record (map columns, convert, check the unused columns and the form)."""
        fmt = REGISTRY[self.source_format or "prompt_completion"]
        mapped = self._mapper(obj)
        rec = normalise(mapped, fmt.name, prompt_only=self.opt.method == "rl", chars=chars)
        note_unused(fmt, mapped, self._unused)
        form = check_form(rec, self.form)
        if self.form is None:
            self.form = form
        return rec

    def consume(self, path: str | Path, split: str = "train", writer: Any = None,
                display: Optional[str] = None) -> None:
        """Run one file to the end, adding the accepted records to `writer` (a DatasetWriter) when given.

        Plain JSONL (the common case) goes through the block path (`blocks.py`: per-record work batched, in
        worker processes for large files); the results are the same as `run()`'s, record for record."""
        path = Path(path)
        name = display or str(path)
        if self._blocks_ok(path):
            items = iter_raw(path, display=name)
            try:
                head = list(islice(items, DETECT_WINDOW))
            finally:
                items.close()
            if self._fix_format(head, name) and (self.form is not None or not _two_forms(self.source_format)):
                self._files.append(name)
                before = self.summary.records_in
                self._run_blocks(path, name, (len(self._files) - 1) << 40, split, writer)
                self._end_file(path, name, self.summary.records_in - before)
                return
        for out in self.run(path, split, display):
            if writer is not None:
                writer.add(out.split, out.line, out.digest)

    def _end_file(self, path: Any, name: str, records: int) -> None:
        """An empty file is an error; columns no format read are reported by name."""
        if not records:
            raise empty_file_error(Path(path), name)
        if self._unused:
            fmt = self.source_format or "prompt_completion"
            for col, n in self._unused.most_common():
                self._warn(DataProblem(name, None, col, "unused_column",
                                       f"column '{col}' is not read by the {fmt} format ({n} records): it is not in "
                                       "the prepared data"))
            cols = ", ".join(f"{c} ({n})" for c, n in self._unused.most_common(8))
            self.summary.warnings.append(f"{name}: columns the {fmt} format does not read, left out: {cols}")
            self._unused = Counter()

    def _blocks_ok(self, path: Path) -> bool:
        opt = self.opt
        if self._near is not None or (opt.max_length and opt.counter is not None) or not path.is_file():
            return False
        return file_kind(path) == "jsonl" and not is_cr_only(path)

    def _iter_blocks(self, path: Path, ctx: Any) -> Iterator[tuple[Any, Callable[[], bytes]]]:
        """(stage-1 Block, a function giving its raw bytes) in file order."""
        from dataclasses import replace

        from . import blocks

        if _is_gzip(path):
            with open_binary(path, ctx.name) as fh:
                for n, data in enumerate(blocks.iter_stream_blocks(fh)):
                    yield blocks.stage1(data, ctx if n == 0 else replace(ctx, first=False)), (lambda d=data: d)
            return
        size = path.stat().st_size
        ranges = blocks.block_ranges(str(path), size)
        workers = self.opt.workers if self.opt.workers is not None else blocks.default_workers()
        if workers < 2 or len(ranges) < 2 or (self.opt.workers is None and size < blocks.PARALLEL_MIN_BYTES):
            h = hashlib.sha256()  # the source's SHA-256 for the manifest, while its bytes are at hand
            for start, end in ranges:
                data = blocks.read_range(str(path), start, end)
                h.update(data)
                yield blocks.stage1(data, ctx if start == 0 else replace(ctx, first=False)), (lambda d=data: d)
            st = path.stat()
            if st.st_size == size:
                self.file_sha256[(str(path), size, st.st_mtime_ns)] = h.hexdigest()
            return
        import multiprocessing as mp

        methods = mp.get_all_start_methods()
        mpc = mp.get_context("fork" if "fork" in methods else None)
        todo = iter(ranges)
        queue: deque = deque()

        def submit() -> None:
            r = next(todo, None)
            if r is not None:
                args = (str(path), r[0], r[1], ctx if r[0] == 0 else replace(ctx, first=False))
                queue.append((r, pool.apply_async(blocks._work, (args,))))

        # at most 2 blocks per worker in flight: memory stays bounded
        with mpc.Pool(workers, initializer=blocks.worker_init) as pool:
            for _ in range(2 * workers):
                submit()
            while queue:
                (start, end), result = queue.popleft()
                blk = result.get()
                submit()
                yield blk, (lambda s=start, e=end: blocks.read_range(str(path), s, e))

    def _run_blocks(self, path: Path, name: str, file_ref: int, split: str, writer: Any) -> None:
        from .blocks import Context

        opt = self.opt
        ctx = Context(name=name, fmt=self.source_format or "prompt_completion", split=split, columns=opt.columns,
                      ignore=tuple(opt.ignore), form=self.form, prompt_only=opt.method == "rl",
                      max_length=opt.max_length,
                      bounds=list(self._bounds) if split == "train" else [],
                      need_pkey=bool(opt.holdout or self._track_prompts), track_prompts=self._track_prompts,
                      pii=opt.pii)
        s = self.summary
        size = opt.batch_size
        pending: list[tuple[Any, int, int, Callable[[], bytes]]] = []  # accepted, not yet through _flush
        count = 0  # accepted records since the last flush (run() flushes every batch_size of them)
        base = 0  # physical lines before the block
        for blk, data in self._iter_blocks(path, ctx):
            s.records_in += blk.records
            self._unused.update(blk.unused)
            if blk.bom:
                self._warn(DataProblem(name, 1, "", "bom", "file starts with a UTF-8 byte-order mark (ignored)"))
            n = len(blk)
            if blk.clean and not pending and self._bulk(blk, base, file_ref, split, writer):
                count = (count + n) % size
            else:  # replay record by record, in run()'s order
                rejects, r = blk.rejects, 0
                for i in range(n + 1):
                    while r < len(rejects) and rejects[r][0] == i:
                        _, problem, raw = rejects[r]
                        problem.line += base
                        self._reject(problem, raw)
                        r += 1
                    if i == n:
                        break
                    pending.append((blk, i, base, data))
                    count += 1
                    if count == size:
                        self._flush_pending(pending, name, file_ref, split, writer)
                        pending, count = [], 0
            base += blk.nlines
        self._flush_pending(pending, name, file_ref, split, writer)

    def _bulk(self, blk: Any, base: int, file_ref: int, split: str, writer: Any) -> bool:
        """A clean block in one go; False (nothing done) when one of its records duplicates an earlier one."""
        seen, digests = self._seen, blk.digests
        if any(map(seen.__contains__, digests)):
            return False
        seen.update(zip(digests, [file_ref | (base + r) for r in blk.rel]))
        s = self.summary
        s.records_out += len(digests)
        for name, blob in blk.blobs.items():
            ds = digests if blk.splits is None else list(compress(digests, [sp == name for sp in blk.splits]))
            s.splits[name] = s.splits.get(name, 0) + len(ds)
            if writer is not None:
                writer.add_blob(name, blob, ds)
        return True

    def _flush_pending(self, pending: list, name: str, file_ref: int, split: str, writer: Any) -> None:
        """_flush for records whose per-record work the block path already did."""
        from .blocks import raw_line

        s, seen = self.summary, self._seen
        for blk, i, base, data in pending:
            line = base + blk.rel[i]
            msg = blk.too_long.get(i)
            if msg is not None:
                self._reject(DataProblem(name, line, "record", "too_long", msg),
                             raw_line(data(), blk.rel[i], blk.bom))
                continue
            digest = blk.digests[i]
            ref = file_ref | line
            first = seen.get(digest)
            if first is not None:
                self._reject(DataProblem(name, line, "record", "duplicate", f"same record as {self._loc(first)}"),
                             raw_line(data(), blk.rel[i], blk.bom))
                continue
            seen[digest] = ref
            rec_split = blk.splits[i] if blk.splits is not None else split
            if blk.pkeys is not None and blk.pkeys[i] is not None:
                self._prompt_leak(blk.pkeys[i], ref, rec_split, name, line)
            kinds = blk.pii.get(i)
            if kinds:
                s.add(DataProblem(name, line, "record", "pii", f"looks like: {', '.join(kinds)}"))
            s.records_out += 1
            s.splits[rec_split] = s.splits.get(rec_split, 0) + 1
            if writer is not None:
                writer.add(rec_split, blk.line(i, rec_split), digest)

    def _detect(self, items: Iterator[RawItem], name: str) -> Iterator[RawItem]:
        """Fix the source format from the first records (unless the spec sets it); check it fits the method."""
        head = list(islice(items, DETECT_WINDOW))
        self._fix_format(head, name)  # when nothing in the window is readable, run() reports record by record
        return chain(head, items)

    def _fix_format(self, head: list[RawItem], name: str) -> bool:
        """Detect the source format from `head` when not set; check it fits the method, that no label- or
        target-like column would be dropped, and the dataset's form. False when no record there is readable."""
        raw = [i.obj for i in head if i.problem is None and isinstance(i.obj, dict)]
        mapped = []
        for obj in raw:
            try:
                mapped.append(self._mapper(obj))
            except RecordError:
                pass
        if self.source_format is None:
            if not mapped:
                if raw:
                    raise shape_error(name, raw, self.opt.method)
                return False
            detection = rank(mapped)
            if detection.best is None or detection.unsure:
                raise shape_error(name, raw, self.opt.method, detection)
            self.source_format = detection.best
        fmt = REGISTRY[self.source_format]
        unused: Counter = Counter()
        for obj in mapped:
            unused.update(fmt.unused(obj))
        targets = [c for c in unused if looks_like_target(c.split(".")[-1])]
        if targets:
            raise unused_target_error(name, fmt.name, targets, raw, self.opt.method)
        if self.summary.format is None:
            kinds = METHOD_KINDS.get(self.opt.method, tuple(SOURCE_TO_CANONICAL.values()))
            if fmt.canonical not in kinds:
                raise CloudftError(
                    f"{name}: {fmt.name} records ({fmt.canonical}), but the '{self.opt.method}' method "
                    f"trains on {' or '.join(kinds)} data",
                    hint=f"give this stage {kinds[0]} data, or set data.format if the detection is wrong"
                         + _mapping_hint(raw, self.opt.method))
            self.summary.format = fmt.canonical
        if self.form is None and _two_forms(fmt.name):
            for obj in mapped:
                try:
                    rec = normalise(obj, fmt.name, prompt_only=self.opt.method == "rl")
                except RecordError:
                    continue
                self.form = form_of(rec)
                break
        ignored = [c for c in self.opt.ignore if not any(c in obj for obj in raw)]
        if ignored and raw:
            self._warn(DataProblem(name, None, ignored[0], "unused_column",
                                   f"data.ignore_columns names {', '.join(ignored)}, not in the first records "
                                   "(a typo?)", "check the column names in data.ignore_columns"))
        return True

    def _flush(self, batch: list[tuple[RawItem, dict]], name: str, file_ref: int, split: str) -> Iterator[Out]:
        lines = [canonical_bytes(rec) for _, rec in batch]
        lengths = self._lengths(batch, lines)
        for (item, rec), line, length in zip(batch, lines, lengths):
            if length is not None:
                self._reject(DataProblem(name, item.line, "record", "too_long", length), _raw(item))
                continue
            digest = record_digest(line)
            key = digest
            ref = file_ref | item.line
            first = self._seen.get(key)
            if first is not None:
                self._reject(DataProblem(name, item.line, "record", "duplicate",
                                         f"same record as {self._loc(first)}"), _raw(item))
                continue
            self._seen[key] = ref
            rec_split = split
            pkey = prompt_key(rec) if (self.opt.holdout or self._track_prompts) else None
            if self._bounds and split == "train":
                x = hash_fraction(pkey or line)
                rec_split = next((name for name, end in self._bounds if x < end), "train")
            if self._near is not None and self._near_dup(rec, ref, rec_split, name, item):
                continue
            if pkey is not None and self._track_prompts:
                self._prompt_leak(record_digest(pkey)[:12], ref, rec_split, name, item.line)
            if self.opt.pii:
                from .pii import find_pii

                kinds = find_pii(record_text(rec))
                if kinds:
                    self.summary.add(DataProblem(name, item.line, "record", "pii", f"looks like: {', '.join(kinds)}"))
            self.summary.records_out += 1
            self.summary.splits[rec_split] = self.summary.splits.get(rec_split, 0) + 1
            yield Out(rec_split, line, digest, rec)

    def _lengths(self, batch: list[tuple[RawItem, dict]], lines: list[bytes]) -> list[Optional[str]]:
        """For each record: None when it fits max_length, else the message saying how long it is."""
        out: list[Optional[str]] = [None] * len(batch)
        limit = self.opt.max_length
        if not limit:
            return out
        bound = limit * CHARS_PER_TOKEN_BOUND
        todo = []
        for i, line in enumerate(lines):
            if len(line) > bound:
                out[i] = (f"{len(line)} characters: longer than max_length={limit} tokens for any tokenizer "
                          f"(over {CHARS_PER_TOKEN_BOUND} characters per token)")
            else:
                todo.append(i)
        counter = self.opt.counter
        if counter is not None and todo:
            for i, n in zip(todo, counter.lengths([batch[i][1] for i in todo])):
                if n > limit:
                    out[i] = f"{n} tokens, max_length is {limit}"
        return out

    def _near_dup(self, rec: dict, ref: int, split: str, name: str, item: RawItem) -> bool:
        """Quarantine a near-duplicate of an earlier record (noting when it crosses splits)."""
        other = self._near.check(ref, record_parts(rec))
        if other is None:
            self._where[ref] = split
            return False
        other_split = self._where.get(other, "train")
        cross = f" ({other_split} split; removed from {split} to prevent leakage)" if other_split != split else ""
        if cross:
            self._leak(f"{name}:{item.line} ({split}) is a near-duplicate of {self._loc(other)} ({other_split})")
        self._reject(DataProblem(name, item.line, "record", "near_duplicate",
                                 f"near-duplicate of {self._loc(other)}{cross}"), _raw(item))
        return True

    def _prompt_leak(self, pd: bytes, ref: int, split: str, name: str, line: int) -> None:
        """Warn when a prompt (`pd`: its digest's first 12 bytes) appears in two splits (exact leakage); both
        records are kept."""
        self._prompts.setdefault(pd + split.encode()[:4], ref)
        for other_split in ("train", "validation", "test"):
            if other_split == split:
                continue
            other = self._prompts.get(pd + other_split.encode()[:4])
            if other is not None:
                self.summary.add(DataProblem(name, line, "prompt", "leakage",
                                             f"same prompt as {self._loc(other)} in the {other_split} split"))
                self._leak(f"{name}:{line} ({split}) has the same prompt as {self._loc(other)} ({other_split})")
                return

    def _leak(self, example: str) -> None:
        self._leak_count += 1
        if len(self._leaks) < MAX_EXAMPLES:
            self._leaks.append(example)

    def finish(self) -> Summary:
        """Close the run: add the leakage examples and the 'should you fine-tune' advice to the warnings."""
        s = self.summary
        if s.format is None:  # nothing readable: name the format the data should have had
            fmt = self.source_format or str(self.opt.format)
            s.format = SOURCE_TO_CANONICAL.get(fmt) or METHOD_KINDS.get(self.opt.method, ("prompt_completion",))[0]
        if self._leaks:
            s.warnings.append(f"leakage between splits ({self._leak_count} records), e.g.: " + "; ".join(self._leaks))
        s.warnings.extend(advice(s.splits, s.format))
        assert s.balanced(), f"records_in {s.records_in} != out {s.records_out} + quarantined {s.quarantined}"
        return s


def _raw(item: RawItem) -> Any:
    return item.raw_text()


def _two_forms(fmt: Optional[str]) -> bool:
    """Whether a source format can give both forms (then the dataset's form is fixed by its first records)."""
    return REGISTRY[fmt or "prompt_completion"].canonical in ("prompt_completion", "preference", "kto")


def _mapping_hint(raw: list[dict], method: str) -> str:
    """'; or map the columns: ...' when the data suggests a mapping with a label or an answer column."""
    from .formats import render_mapping, suggest_mapping

    mapping, notes = suggest_mapping(raw, method)
    if not any(k in mapping for k in ("label", "response_a", "completion", "chosen")):
        return ""
    return f"; or map the columns: data.columns: {render_mapping(mapping)[0]}" + ("; " + "; ".join(notes) if notes
                                                                                  else "")


def unused_target_error(name: str, fmt: str, targets: list[str], raw: list[dict], method: str) -> CloudftError:
    """The refusal for label- or target-like columns the format does not read, with a mapping read from the data."""
    return CloudftError(
        f"{name}: {', '.join(targets)}: looks like a label or a target, but the {fmt} format does not read it, so "
        "training would silently drop it",
        hint=f"set data.format if another format reads it, list it in data.ignore_columns (--ignore-columns) to "
             f"leave it out on purpose{_mapping_hint(raw, method)}. Formats: docs/data.md")


def advice(splits: dict[str, int], fmt: Optional[str] = None) -> list[str]:
    """'Should you fine-tune at all?' from the data size, and whether the validation split is big enough."""
    train, val = splits.get("train", 0), splits.get("validation", 0)
    out = []
    if train < MIN_EXAMPLES:
        out.append(f"only {train} training examples: with fewer than {MIN_EXAMPLES}, prompting (few-shot examples "
                   "in the prompt, or retrieval) is likely better than fine-tuning")
    elif train < FEW_EXAMPLES:
        out.append(f"{train} training examples is few: under ~{FEW_EXAMPLES}, fine-tuning often overfits or "
                   "changes little; compare against a prompted baseline")
    if train >= MIN_EXAMPLES and val < MIN_VALIDATION:
        total = train + val
        need = min(0.49, MIN_VALIDATION / max(total, 1))
        what = f"the validation split has only {val} records" if val else "there is no validation split"
        out.append(f"{what}: at least {MIN_VALIDATION} are needed for a stable eval loss; "
                   f"set data.validation_split to {need:.2f} or more, or give data.validation")
    return out
