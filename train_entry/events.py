"""Structured progress events: `##cloudft {json}` lines on stdout, parsed by the cloudft CLI and log streams."""

from __future__ import annotations

import json
import sys
from typing import Any

PREFIX = "##cloudft "


def emit(event: str, **fields: Any) -> None:
    """Print one event line (rank 0 only is the caller's job)."""
    sys.stdout.write(PREFIX + json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    """A human-readable line in the run log."""
    sys.stdout.write(f"[train_entry] {message}\n")
    sys.stdout.flush()
