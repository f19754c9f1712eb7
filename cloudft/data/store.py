"""Run the pipeline into a dataset directory, and the content-addressed store under `$CLOUDFT_HOME/datasets/`.

Store layout:

    datasets/<version>/            one dataset version (name = combined SHA-256 of its splits and format)
      train.jsonl, validation.jsonl, test.jsonl    canonical records
      manifest.json, README.md     version, counts, sources with hashes, format, validation summary; dataset card
      quarantine.jsonl             every rejected record with file, line, field, reason, fix
    datasets/.cache/<key>.json     fast path: (source path+size+mtime | source content hash, options) → version
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from .. import paths
from ..errors import CloudftError
from .pipeline import Options, Pipeline
from .problems import Summary
from .version import DatasetWriter, build_manifest, file_sha256, write_manifest

PIPELINE_VERSION = 2  # bump when the pipeline's output for the same input changes (2: the format registry)
QUARANTINE = "quarantine.jsonl"

Sources = Sequence[tuple[Path, str]]  # (local file, its role: "train" or "validation")


def store_root() -> Path:
    """The content-addressed dataset store."""
    root = paths.home() / "datasets"
    root.mkdir(parents=True, exist_ok=True)
    return root


def validate_files(sources: Sources, options: Options, quarantine: Optional[Path] = None) -> Summary:
    """Validate only: run every check and write the quarantine file (when given); no dataset is written."""
    with _maybe_open(quarantine) as qfh:
        pipe = Pipeline(options, qfh, roles=[role for _, role in sources])
        try:
            for path, role in sources:
                pipe.consume(path, role)
        except CloudftError as exc:  # a refused file: the caller may still show what was counted so far
            exc.summary = pipe.summary  # type: ignore[attr-defined]
            raise
        summary = pipe.finish()
    if quarantine is not None and not summary.quarantined:
        quarantine.unlink(missing_ok=True)
    summary.quarantine = str(quarantine) if quarantine and summary.quarantined else None
    return summary


def prepare_files(sources: Sources, options: Options, out_dir: Path,
                  extra: Optional[dict[str, Any]] = None) -> tuple[Summary, dict[str, Any]]:
    """Validate + normalise `sources` into `out_dir` (split files, quarantine, manifest.json, README.md)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    qpath = out_dir / QUARANTINE
    writer = DatasetWriter(out_dir)
    with open(qpath, "w", encoding="utf-8") as qfh:
        pipe = Pipeline(options, qfh, roles=[role for _, role in sources])
        for path, role in sources:
            pipe.consume(path, role, writer)
        summary = pipe.finish()
    counts, versions = writer.close()
    if not summary.quarantined:
        qpath.unlink()
    summary.quarantine = str(qpath) if summary.quarantined else None
    manifest = build_manifest(summary.format or "unknown", counts, versions,
                              [_source(p, role, pipe.file_sha256) for p, role in sources], summary=summary.to_dict(),
                              extra=extra)
    write_manifest(out_dir, manifest)
    return summary, manifest


def prepare_into_store(sources: Sources, options: Options,
                       extra: Optional[dict[str, Any]] = None) -> tuple[Summary, dict[str, Any], Path]:
    """prepare_files into a temporary directory, then move it to `datasets/<version>/`."""
    root = store_root()
    tmp = root / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        summary, manifest = prepare_files(sources, options, tmp, extra=extra)
        target = root / manifest["version"]
        if summary.quarantine:
            summary.quarantine = str(target / QUARANTINE)
            manifest["validation"]["quarantine"] = summary.quarantine
            write_manifest(tmp, manifest)
        if target.exists():  # same records already stored: keep them, refresh the run's own reports
            for name in ("manifest.json", "README.md", QUARANTINE):
                if (tmp / name).exists():
                    os.replace(tmp / name, target / name)
                elif name == QUARANTINE and (target / name).exists():
                    (target / name).unlink()
        else:
            try:
                os.replace(tmp, target)
            except OSError:  # another process stored the same version first
                pass
        return summary, manifest, target
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _source(path: Path, role: str, known: Optional[dict] = None) -> dict[str, Any]:
    st = path.stat()
    sha = (known or {}).get((str(path), st.st_size, st.st_mtime_ns)) or file_sha256(path)
    return {"path": str(path.resolve()), "role": role, "sha256": sha, "bytes": st.st_size}


# -- fast path ---------------------------------------------------------------------------------------

def options_fingerprint(options: Options) -> dict[str, Any]:
    """What, besides the sources, decides the pipeline's output."""
    tok = None
    if options.counter is not None:
        tj = options.counter.model_dir / "tokenizer.json"
        st = tj.stat()
        tok = [str(tj.resolve()), st.st_size, st.st_mtime_ns]
    return {"pipeline": PIPELINE_VERSION, "format": str(options.format), "columns": options.columns,
            "ignore": sorted(options.ignore),
            "method": options.method, "max_length": options.max_length, "tokenizer": tok,
            "near_dup": options.near_dup, "pii": options.pii, "holdout": options.holdout}


def _key(kind: str, parts: Any) -> Path:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    cache = store_root() / ".cache"
    cache.mkdir(exist_ok=True)
    return cache / f"{kind}-{digest[:32]}.json"


def stat_key(sources: Sources, fingerprint: dict[str, Any]) -> Path:
    """Cache entry keyed on each source's path, size and mtime (no reading)."""
    stats = [[str(p.resolve()), role, p.stat().st_size, p.stat().st_mtime_ns] for p, role in sources]
    return _key("stat", [fingerprint, stats])


def content_key(sources: Sources, fingerprint: dict[str, Any]) -> Path:
    """Cache entry keyed on each source's content hash (a touched but unchanged file still hits)."""
    return _key("content", [fingerprint, [[file_sha256(p), role] for p, role in sources]])


def cached_manifest(entry: Path) -> Optional[dict[str, Any]]:
    """The stored manifest a cache entry points at, if both still exist."""
    try:
        version = json.loads(entry.read_text())["version"]
        manifest = json.loads((store_root() / version / "manifest.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    return manifest if manifest.get("version") == version else None


def remember(entries: Sequence[Path], version: str) -> None:
    """Point cache entries at a stored version."""
    for entry in entries:
        tmp = entry.with_name(entry.name + f".{os.getpid()}")
        tmp.write_text(json.dumps({"version": version}))
        os.replace(tmp, entry)


class _maybe_open:
    """`open(path, 'w')` or a no-op context giving None."""

    def __init__(self, path: Optional[Path]):
        self.path, self.fh = path, None

    def __enter__(self):
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.path, "w", encoding="utf-8")
        return self.fh

    def __exit__(self, *exc: Any) -> None:
        if self.fh is not None:
            self.fh.close()
