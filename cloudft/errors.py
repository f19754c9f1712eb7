"""Errors that the CLI prints as one clear message (no traceback)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


class CloudftError(Exception):
    """A user-facing error. `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return self.message + (f"\n  fix: {self.hint}" if self.hint else "")


@dataclass
class Problem:
    """One located problem in a user file."""

    file: str
    line: Optional[int]
    column: Optional[int]
    field: str
    message: str
    fix: Optional[str] = None

    def render(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


class SpecError(CloudftError):
    """A job spec that cannot be used. Carries every problem found, each with file:line:col."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(p.render() for p in problems))

    def render(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the job spec:"
        return head + "\n" + "\n".join("  " + p.render().replace("\n", "\n  ") for p in self.problems)


class MissingExtraError(CloudftError):
    """A command needs an optional dependency group that is not installed."""

    exit_code = 3

    def __init__(self, extra: str, module: str):
        super().__init__(
            f"this command needs the '{extra}' extra ({module} is not installed)",
            hint=f"pip install 'cloudft[{extra}]'",
        )


def require(module: str, extra: str):
    """Import `module` or raise MissingExtraError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised when extras are absent
        if exc.name and module.split(".")[0] != exc.name.split(".")[0]:
            raise
        raise MissingExtraError(extra, module) from None
