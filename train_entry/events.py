"""Structured progress events: `##cloudft {json}` lines on stdout, parsed by the cloudft CLI and log streams.

Every event and log line also goes to the run's log file once `open_log` named it (train_entry keeps full
tracebacks there, never on the console)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

PREFIX = "##cloudft "
LOG_PREFIX = "[train_entry] "

_log_file: Optional[Path] = None


def open_log(path: Path) -> Optional[Path]:
    """Also append every line to `path` from now on; None (and no file) when it cannot be written."""
    global _log_file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError:
        _log_file = None
        return None
    _log_file = path
    return path


def write_to_log(path: Path, text: str) -> bool:
    """Append `text` to `path`; False when it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
        return True
    except OSError:
        return False


def _write(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()
    if _log_file is not None:
        write_to_log(_log_file, line)


def parse_event(line: str) -> Optional[dict[str, Any]]:
    """The event carried by a log line (also with a prefix before it, as log streams add), or None."""
    idx = line.find(PREFIX)
    if idx < 0:
        return None
    try:
        event = json.loads(line[idx + len(PREFIX):])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def emit(event: str, **fields: Any) -> None:
    """Print one event line (rank 0 only is the caller's job)."""
    _write(PREFIX + json.dumps({"event": event, **fields}, default=str) + "\n")


def log(message: str) -> None:
    """A human-readable line in the run log."""
    _write(f"{LOG_PREFIX}{message}\n")


def close_log() -> None:
    global _log_file
    _log_file = None
