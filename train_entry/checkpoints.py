"""Checkpoints that are safe to resume from.

A checkpoint counts only once it is complete: after the trainer has written it, a `.cloudft-complete`
marker listing every file with its size is written via a temporary name and an atomic rename. A folder
without a valid marker (a kill in the middle of a save, a partial S3 sync) is skipped with a warning.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional

from .events import log

MARKER = ".cloudft-complete"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(ckpt: Path) -> None:
    """Write the completion marker (temp file, fsync, rename)."""
    files = {str(p.relative_to(ckpt)): p.stat().st_size for p in sorted(ckpt.rglob("*"))
             if p.is_file() and p.name != MARKER and not p.name.endswith(".tmp")}
    tmp = ckpt / (MARKER + ".tmp")
    with open(tmp, "w") as fh:
        json.dump({"files": files}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(ckpt / MARKER)


def is_complete(ckpt: Path) -> bool:
    marker = ckpt / MARKER
    if not marker.is_file():
        return False
    try:
        files = json.loads(marker.read_text())["files"]
    except (json.JSONDecodeError, KeyError):
        return False
    for rel, size in files.items():
        p = ckpt / rel
        if not p.is_file() or p.stat().st_size != size:
            return False
    return "trainer_state.json" in files


def latest_valid(checkpoint_dir: Path) -> Optional[Path]:
    """The newest complete checkpoint in `checkpoint_dir`, warning about any skipped one."""
    if not checkpoint_dir.is_dir():
        return None
    found = []
    for p in checkpoint_dir.iterdir():
        m = _CKPT.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    for step, path in sorted(found, reverse=True):
        if is_complete(path):
            return path
        log(f"warning: skipping incomplete or corrupt checkpoint {path.name}")
    return None
