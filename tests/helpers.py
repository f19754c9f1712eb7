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
