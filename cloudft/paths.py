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


def templates_dir() -> Path:
    """The project's `templates/` folder: beside the package in a source or editable install, else the copy
    a wheel installs under `<prefix>/share/cloudft/templates` (pyproject's data-files)."""
    import sys

    source = Path(__file__).resolve().parents[1] / "templates"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "cloudft" / "templates"


def train_entry_dir() -> Path:
    """The train_entry package shipped with this cloudft (the code and Dockerfile every provider ships)."""
    import train_entry.config  # light (pydantic); the package may resolve as a namespace path in editable installs

    return Path(train_entry.config.__file__).resolve().parent


def template(*parts: str) -> Path:
    """A file under `templates/` (guidelines, task templates, launchers, scoring scripts, Lambda code)."""
    from .errors import CloudftError

    path = templates_dir().joinpath(*parts)
    if not path.exists():
        raise CloudftError(f"missing project template {path}", hint="reinstall cloudft, or pass the file explicitly")
    return path
