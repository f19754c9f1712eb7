"""The pairs file: one JSON object per line, two candidate answers to one prompt.

    {"pair_id": "p-000001", "prompt": "...", "response_a": "...", "response_b": "...",
     "model_a": "run-1", "model_b": "run-1", "generation": {"temperature": 0.8, ...}}

`response_a`/`response_b` are the original orientation. What an annotator sees may be swapped; the swap is
recorded with every label and undone before any metric or export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import CloudftError

REQUIRED = ("pair_id", "prompt", "response_a", "response_b")


def _is_prompt(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a JSONL file; invalid UTF-8, invalid or too deeply
    nested JSON is a CloudftError naming the line (never a traceback)."""
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise CloudftError(f"{path}:{n}: invalid UTF-8 at byte {exc.start}",
                                   hint="re-encode the file as UTF-8") from None
            try:
                yield n, json.loads(line)
            except RecursionError:
                raise CloudftError(f"{path}:{n}: JSON nested too deep to read") from None
            except ValueError as exc:
                raise CloudftError(f"{path}:{n}: not valid JSON ({str(exc)[:100]})") from None


def prompt_text(prompt: Any) -> str:
    """A prompt (string or list of chat messages) as display text."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt)


def validate_pair(rec: Any, where: str) -> dict:
    """Check one pair record; raise CloudftError naming the line and field."""
    if not isinstance(rec, dict):
        raise CloudftError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise CloudftError(f"{where}: missing field(s) {', '.join(missing)}",
                           hint="each line needs pair_id, prompt, response_a, response_b "
                                "(`cloudft label candidates` writes this format)")
    if not isinstance(rec["pair_id"], str) or not rec["pair_id"].strip():
        raise CloudftError(f"{where}: pair_id must be a non-empty string")
    if not _is_prompt(rec["prompt"]):
        raise CloudftError(f"{where}: prompt must be a string or a list of {{role, content}} messages")
    for key in ("response_a", "response_b"):
        if not isinstance(rec[key], str):
            raise CloudftError(f"{where}: {key} must be a string")
    return rec


def load_pairs(path: str | Path) -> list[dict]:
    """Read and validate a pairs file. Duplicate pair ids are an error (labels are keyed by them)."""
    path = Path(path)
    if not path.exists():
        raise CloudftError(f"pairs file {path} does not exist",
                           hint="create one with `cloudft label candidates --prompts FILE --model RUN_OR_PATH`")
    pairs: list[dict] = []
    seen: set[str] = set()
    for n, rec in iter_json_lines(path):
        validate_pair(rec, f"{path}:{n}")
        if rec["pair_id"] in seen:
            raise CloudftError(f"{path}:{n}: duplicate pair_id '{rec['pair_id']}'")
        seen.add(rec["pair_id"])
        pairs.append(rec)
    if not pairs:
        raise CloudftError(f"pairs file {path} is empty")
    return pairs


def write_jsonl(records: Iterable[dict], path: str | Path) -> int:
    """Write records as JSON Lines (UTF-8, one object per line), atomically (a temp file renamed into place);
    returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    n = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n
