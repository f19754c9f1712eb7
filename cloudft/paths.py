"""Where cloudft keeps its state (run registry, caches). `CLOUDFT_HOME` overrides the default."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The state directory: $CLOUDFT_HOME, else the platform's user data dir."""
    env = os.environ.get("CLOUDFT_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir("cloudft", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def registry_path() -> Path:
    return home() / "runs.sqlite"
