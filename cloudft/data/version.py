"""Content-addressed dataset versions: canonical JSONL per split + `manifest.json` + a `README.md` dataset card.

Stable API (the labeling export calls it):

- `dataset_version(records) -> str`: SHA-256 of the canonical records, independent of their order. Each record is
  serialised canonically (`canonical_line`: sorted keys, no extra spaces, UTF-8), hashed, the digests are sorted
  and hashed again. The same multiset of records always gives the same version; one changed record changes it.
- `write_dataset(records, out_dir, *, format, sources, splits=None) -> manifest`: writes `<split>.jsonl` files,
  `manifest.json` and `README.md` into `out_dir`. `records` is an iterable of canonical records (split by hash
  with `splits`, e.g. `{"train": 0.9, "validation": 0.1}`; default all train) or a mapping `{split: records}`.
  Every record is checked against `format` first (a CloudftError names the bad one).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

from ..errors import CloudftError

MANIFEST_SCHEMA = 1
_VERSION_SALT = b"cloudft-dataset-v1\n"


try:  # same bytes as the standard library for canonical records (strings, bools, lists, objects), faster
    import orjson

    def canonical_bytes(record: dict) -> bytes:
        """The one canonical serialisation of a record, UTF-8 (what is hashed and written)."""
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
except ImportError:  # pragma: no cover - optional speed-up
    def canonical_bytes(record: dict) -> bytes:
        """The one canonical serialisation of a record, UTF-8 (what is hashed and written)."""
        return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def canonical_line(record: dict) -> str:
    """The canonical serialisation as text: sorted keys, no spaces, non-ASCII kept as is."""
    return canonical_bytes(record).decode("utf-8")


def record_digest(line: Union[str, bytes]) -> bytes:
    """SHA-256 of one canonical line."""
    return hashlib.sha256(line.encode("utf-8") if isinstance(line, str) else line).digest()


def version_of_digests(digests: Iterable[bytes]) -> str:
    """Order-independent version from per-record digests."""
    h = hashlib.sha256(_VERSION_SALT)
    for d in sorted(digests):
        h.update(d)
    return h.hexdigest()


def dataset_version(records: Iterable[dict]) -> str:
    """SHA-256 version of canonical records, independent of their order."""
    return version_of_digests(record_digest(canonical_bytes(r)) for r in records)


def combined_version(fmt: str, versions: Mapping[str, str]) -> str:
    """The version of a whole dataset (all splits + format): the name of its directory in the store."""
    body = json.dumps({"format": fmt, "splits": dict(sorted(versions.items()))}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def file_sha256(path: Union[str, Path]) -> str:
    """SHA-256 of a file's bytes (source files in the manifest, cache fast path)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_fraction(key: Union[str, bytes]) -> float:
    """A stable number in [0, 1) from `key` (for deterministic splits)."""
    data = key.encode("utf-8") if isinstance(key, str) else key
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") / 2.0 ** 64


def assign_split(key: Union[str, bytes], splits: Mapping[str, float]) -> str:
    """The split a record with this key belongs to. `splits` maps names to fractions; 'train' takes the rest.

    Held-out splits take fixed slices of [0, 1) in sorted-name order, so adding records never moves old ones.
    """
    x = hash_fraction(key)
    for name, end in split_bounds(splits):
        if x < end:
            return name
    return "train"


def split_bounds(splits: Mapping[str, float]) -> list[tuple[str, float]]:
    """(name, upper bound) of each held-out split's slice of [0, 1), in sorted-name order."""
    out, start = [], 0.0
    for name in sorted(s for s in splits if s != "train"):
        start += splits[name]
        out.append((name, start))
    return out


class DatasetWriter:
    """Streams canonical lines into `<split>.jsonl` files and tracks counts and versions."""

    def __init__(self, out_dir: Union[str, Path]):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, Any] = {}
        self._digests: dict[str, list[bytes]] = {}

    def _file(self, split: str) -> Any:
        fh = self._files.get(split)
        if fh is None:
            fh = self._files[split] = open(self.out_dir / f"{split}.jsonl", "wb")
            self._digests[split] = []
        return fh

    def add_blob(self, split: str, blob: bytes, digests: list[bytes]) -> None:
        """Append canonical lines, each ending in a newline (UTF-8 bytes), with their digests."""
        if digests:
            self._file(split).write(blob)
            self._digests[split].extend(digests)

    def add(self, split: str, line: Union[str, bytes], digest: Optional[bytes] = None) -> None:
        """Append one canonical line (text or UTF-8 bytes) to the split's file."""
        fh = self._file(split)
        data = line.encode("utf-8") if isinstance(line, str) else line
        fh.write(data)
        fh.write(b"\n")
        self._digests[split].append(digest or record_digest(line))

    def close(self) -> tuple[dict[str, int], dict[str, str]]:
        """Close the files; returns (counts, versions) per split."""
        for fh in self._files.values():
            fh.close()
        counts = {s: len(d) for s, d in self._digests.items()}
        versions = {s: version_of_digests(d) for s, d in self._digests.items()}
        self._digests.clear()
        return counts, versions


def build_manifest(fmt: str, counts: dict[str, int], versions: dict[str, str], sources: list,
                   summary: Optional[dict] = None, extra: Optional[dict] = None) -> dict[str, Any]:
    """The manifest of a dataset version."""
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "version": combined_version(fmt, versions),
        "format": fmt,
        "splits": {s: {"file": f"{s}.jsonl", "records": counts[s], "version": versions[s]} for s in sorted(counts)},
        "sources": [s if isinstance(s, dict) else _source_entry(s) for s in sources],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if summary is not None:
        manifest["validation"] = summary
    if extra:
        manifest.update(extra)
    return manifest


def _source_entry(source: Any) -> dict[str, Any]:
    path = Path(str(source))
    if "://" not in str(source) and path.is_file():
        return {"path": str(path.resolve()), "sha256": file_sha256(path), "bytes": path.stat().st_size}
    return {"path": str(source)}


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json and the README.md dataset card (atomically)."""
    atomic_write(out_dir / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
    atomic_write(out_dir / "README.md", dataset_card(manifest))


def atomic_write(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file renamed into place: never a partial file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_dataset(records: Union[Iterable[dict], Mapping[str, Iterable[dict]]], out_dir: Union[str, Path], *,
                  format: str, sources: list, splits: Optional[Mapping[str, float]] = None,
                  summary: Optional[dict] = None, extra: Optional[dict] = None) -> dict[str, Any]:
    """Write canonical records as a versioned dataset in `out_dir`; returns the manifest (also manifest.json).

    `format` is a canonical format (prompt_completion, messages, text, preference, kto); each record is checked
    against it. `sources` lists where the records came from (paths are hashed, other entries kept as given).
    """
    from .formats import METHOD_KINDS, normalise
    from .problems import RecordError

    canonical = {k for kinds in METHOD_KINDS.values() for k in kinds}
    if format not in canonical:
        raise CloudftError(f"unknown canonical format '{format}'", hint=f"use one of {sorted(canonical)}")
    writer = DatasetWriter(out_dir)
    groups = records.items() if isinstance(records, Mapping) else [(None, records)]
    for fixed_split, group in groups:
        for i, rec in enumerate(group):
            try:
                rec = normalise(rec, format)
            except RecordError as exc:
                raise CloudftError(f"record {i + 1} ({fixed_split or 'records'}): {exc.field}: {exc.message}",
                                   hint=f"write {format} records (see docs/data.md)") from None
            line = canonical_bytes(rec)
            split = fixed_split or (assign_split(_split_key(rec, line), splits) if splits else "train")
            writer.add(split, line)
    counts, versions = writer.close()
    manifest = build_manifest(format, counts, versions, sources, summary=summary, extra=extra)
    write_manifest(Path(out_dir), manifest)
    return manifest


def _split_key(record: dict, line: bytes) -> Union[str, bytes]:
    from .formats import prompt_key

    return prompt_key(record) or line


def dataset_card(manifest: dict[str, Any]) -> str:
    """A dataset card (README.md) for a manifest."""
    rows = "\n".join(f"| {name} | {s['records']} | `{s['version'][:16]}` |" for name, s in manifest["splits"].items())
    sources = "\n".join(f"- `{s.get('path')}`" + (f" (sha256 `{s['sha256'][:16]}`)" if s.get("sha256") else "")
                        for s in manifest.get("sources", [])) or "- (not recorded)"
    val = manifest.get("validation") or {}
    checks = ""
    if val:
        counts = val.get("counts") or {}
        lines = "\n".join(f"- {reason}: {n}" for reason, n in counts.items()) or "- no problems"
        checks = (f"\n## Validation\n\nRecords in: {val.get('records_in')}, out: {val.get('records_out')}, "
                  f"quarantined: {val.get('quarantined')}. Token lengths: {val.get('tokenizer') or 'n/a'}.\n\n"
                  f"{lines}\n")
        for w in val.get("warnings", []):
            checks += f"\n> {w}\n"
    return (f"---\ndataset_version: {manifest['version']}\nformat: {manifest['format']}\n---\n\n"
            f"# Dataset {manifest['version'][:12]}\n\nCanonical `{manifest['format']}` JSONL written by cloudft "
            f"on {manifest.get('created')}. The version is the SHA-256 of the canonical records (order-independent).\n\n"
            f"| split | records | version |\n|---|---|---|\n{rows}\n\n## Sources\n\n{sources}\n{checks}")
