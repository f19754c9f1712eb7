"""Small test helpers shared by the test modules (import as `from helpers import ...`)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLE_DATA = REPO / "examples" / "data"
HH_RLHF = SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"


def shared_file(path: Path) -> Path:
    """A file of the public test data in ../shared/data (beside the checkout, as in CI); a clear skip where a
    clone has no ../shared beside it, instead of a FileNotFoundError deep inside the code under test."""
    if not path.is_file():
        import pytest

        pytest.skip(f"{path} is not there: these tests read the public data in ../shared/data beside the checkout")
    return path


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_wheel(folder: Path, name: str, version: str, requires=(), modules=None) -> Path:
    """A wheel file (PEP 427: a zip with .dist-info/METADATA, WHEEL and RECORD) of a pure-Python distribution,
    built here so that tests give pip real wheels without reaching an index. `modules`: {"pkg/__init__.py": code}."""
    import base64
    import hashlib
    import re
    import zipfile

    stem = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"
    info = f"{stem}.dist-info"
    files = dict(modules or {})
    files[f"{info}/METADATA"] = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                                         *(f"Requires-Dist: {r}\n" for r in requires)])
    files[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: cloudft-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return out
