"""Typed stack settings read from `Pulumi.<stack>.yaml` (namespace `cloudft:`), shared by both programs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "cloudft"


class ConfigReader:
    """Reads `cloudft:<key>` values with defaults from a `pulumi.Config` (or any object whose `get(key)` returns the
    raw string): objects, lists, numbers and booleans arrive as JSON, plain strings as themselves."""

    def __init__(self, config: Any):
        self._config = config

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._config.get(key)
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def section(self, key: str) -> dict[str, Any]:
        value = self.get(key, {})
        if not isinstance(value, dict):
            raise ValueError(f"config {NAMESPACE}:{key} must be a mapping, got {type(value).__name__}")
        return value


def resolve_dir(value: Optional[str], default: str) -> Path:
    """A folder from config: absolute, or relative to the repository root."""
    path = Path(value or default)
    return path if path.is_absolute() else REPO_ROOT / path


def safe_name(text: str, max_len: int = 40) -> str:
    """Lowercase letters, digits and dashes (for resource names)."""
    out = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return "-".join(p for p in out.split("-") if p)[:max_len] or "cloudft"
