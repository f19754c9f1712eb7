"""Checkpoints that are safe to resume from.

A checkpoint counts only once it is complete: after the trainer has written it (every rank: the sharded model
and optimizer of an FSDP run, each rank's RNG state), a `.cloudft-complete` marker listing every file with its
size is written via a temporary name and an atomic rename. A folder without a valid marker (a kill in the middle
of a save, a partial S3 sync) is skipped with a warning.

Several nodes: each node may write into its own local folder (SageMaker syncs every instance's
/opt/ml/checkpoints to the same S3 prefix), so the first process of every node marks what its node wrote
(`.cloudft-complete` on node 0, `.cloudft-complete.nodeN` on the others) and node 0's marker records how many
nodes there are: a checkpoint is complete when every node's marker holds. On resume the ranks agree on one
checkpoint: the newest that every rank sees as complete.
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


def node_marker(node: int) -> str:
    return MARKER if node == 0 else f"{MARKER}.node{node}"


def mark_complete(ckpt: Path, node: int = 0, nodes: int = 1) -> None:
    """Write node `node`'s completion marker (temp file, fsync, rename) listing the files it sees."""
    files = {str(p.relative_to(ckpt)): p.stat().st_size for p in sorted(ckpt.rglob("*"))
             if p.is_file() and not p.name.startswith(MARKER) and not p.name.endswith(".tmp")}
    body: dict = {"files": files}
    if node == 0:
        body["nodes"] = nodes
    tmp = ckpt / (node_marker(node) + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(body, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(ckpt / node_marker(node))


def _marker_holds(ckpt: Path, name: str) -> Optional[dict]:
    """The marker's content when it exists and every file it lists is there with its size, else None."""
    marker = ckpt / name
    if not marker.is_file():
        return None
    try:
        body = json.loads(marker.read_text())
        files = body["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    for rel, size in files.items():
        p = ckpt / rel
        if not p.is_file() or p.stat().st_size != size:
            return None
    return body


def is_complete(ckpt: Path) -> bool:
    body = _marker_holds(ckpt, MARKER)
    if body is None or "trainer_state.json" not in body["files"]:
        return False
    return all(_marker_holds(ckpt, node_marker(n)) is not None for n in range(1, int(body.get("nodes", 1))))


def valid_checkpoints(checkpoint_dir: Path, warn: bool = True) -> list[tuple[int, Path]]:
    """Every complete checkpoint in `checkpoint_dir`, newest first; an incomplete one newer than the newest
    complete one is named in a warning."""
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for p in checkpoint_dir.iterdir():
        m = _CKPT.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    valid = []
    for step, path in sorted(found, reverse=True):
        if is_complete(path):
            valid.append((step, path))
        elif warn and not valid:
            log(f"warning: skipping incomplete or corrupt checkpoint {path.name}")
    return valid


def latest_valid(checkpoint_dir: Path) -> Optional[Path]:
    """The newest complete checkpoint in `checkpoint_dir`, warning about any skipped one."""
    valid = valid_checkpoints(checkpoint_dir)
    return valid[0][1] if valid else None


def agreed_checkpoint(checkpoint_dir: Path) -> Optional[Path]:
    """The checkpoint every rank resumes from: the newest step that all ranks see as complete (one rank's view can
    differ: a node-local folder, a sync still under way). Without a process group: `latest_valid`."""
    import torch.distributed as dist

    valid = valid_checkpoints(checkpoint_dir)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return valid[0][1] if valid else None
    views: list = [None] * dist.get_world_size()
    dist.all_gather_object(views, [step for step, _ in valid])
    common = set.intersection(*(set(v) for v in views))
    if not common:
        return None
    step = max(common)
    if valid and step != valid[0][0]:
        log(f"warning: checkpoint-{valid[0][0]} is not complete on every rank; resuming from checkpoint-{step}")
    return dict(valid)[step]
