"""Helpers for the data tests: writing files in every input shape, the broken-file corpus, a job spec."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any, Iterable

from helpers import HH_RLHF, REPO  # noqa: F401  (one definition of each path)


def write_jsonl(path: Path, records: Iterable[Any], gz: bool = False) -> Path:
    """One JSON value per line (gzip-compressed when `gz`)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_json_array(path: Path, records: list[Any]) -> Path:
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        for r in records:
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def sft_records(n: int, start: int = 0) -> list[dict[str, str]]:
    """Distinct prompt/completion records (varied wording so they are not near-duplicates)."""
    words = ["apple", "river", "quantum", "violet", "engine", "harbor", "lemon", "canyon", "signal", "meadow",
             "copper", "falcon", "ember", "glacier", "lantern", "orbit"]
    out = []
    for i in range(start, start + n):
        w = [words[(i * k + k * k) % len(words)] for k in range(1, 9)]
        out.append({"prompt": f"Question {i}: describe {w[0]} and {w[1]} near the {w[2]}.",
                    "completion": f" Answer {i}: the {w[3]} {w[4]} meets a {w[5]} {w[6]} by the {w[7]} ({i * 7})."})
    return out


def broken_corpus(dir_: Path) -> dict[str, dict[str, Any]]:
    """Files with known bad lines: {name: {"path", "bad": {line: reason}, "good": n, "warn": {line: reason}}}.

    Covers truncated lines, mixed encodings, CRLF, a BOM, an empty file, a 10 MB single line, wrong types,
    NUL/control characters, unknown roles, wrong turn order, chosen == rejected, empty prompts.
    """
    dir_.mkdir(parents=True, exist_ok=True)
    corpus: dict[str, dict[str, Any]] = {}
    good = [json.dumps(r).encode() for r in sft_records(6)]

    # truncated lines + mixed encodings (a latin-1 line) + CRLF endings + wrong types + control characters
    lines = [
        good[0],                                                     # 1 ok
        good[1][:-15],                                               # 2 truncated
        '{"prompt": "caf\xe9 au lait?", "completion": " yes"}'.encode("latin-1"),  # 3 latin-1
        good[2],                                                     # 4 ok
        b'{"prompt": 42, "completion": " forty-two"}',               # 5 wrong type
        b'{"prompt": "nul \\u0000 here", "completion": " x"}',       # 6 NUL
        b'{"prompt": "bell \\u0007", "completion": " x"}',           # 7 control char
        b"",                                                         # 8 blank: not a record
        b'{"prompt": "   ", "completion": " empty prompt"}',         # 9 empty prompt
        b'{"prompt": "no completion"}',                              # 10 missing field
        b'["a", "list"]',                                            # 11 not an object
        good[3],                                                     # 12 ok
        good[0],                                                     # 13 duplicate of 1
    ]
    path = dir_ / "mixed.jsonl"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    corpus["mixed"] = {"path": path, "good": 3, "warn": {}, "bad": {
        2: "invalid_json", 3: "invalid_utf8", 5: "wrong_type", 6: "control_chars", 7: "control_chars",
        9: "empty_prompt", 10: "missing_field", 11: "not_an_object", 13: "duplicate"}}

    path = dir_ / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(good[:3]) + b"\n")
    corpus["bom"] = {"path": path, "good": 3, "bad": {}, "warn": {1: "bom"}}

    path = dir_ / "empty.jsonl"
    path.write_bytes(b"")
    corpus["empty"] = {"path": path, "good": 0, "bad": {}, "warn": {}}

    big = json.dumps({"prompt": "long " * 2_000_000, "completion": " end"}).encode()  # ~10 MB on one line
    path = dir_ / "huge.jsonl"
    path.write_bytes(good[0] + b"\n" + big + b"\n" + good[1] + b"\n")
    corpus["huge"] = {"path": path, "good": 2, "bad": {2: "too_long"}, "warn": {}}

    chats = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]},
        {"messages": [{"role": "assistant", "content": "first"}, {"role": "user", "content": "then"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 5}]},
        {"messages": "not a list"},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why?"},
                      {"role": "assistant", "content": "because"}]},
    ]
    path = write_jsonl(dir_ / "chat.jsonl", chats)
    corpus["chat"] = {"path": path, "good": 2, "warn": {},
                      "bad": {2: "unknown_role", 3: "turn_order", 4: "wrong_type", 5: "wrong_type"}}

    prefs = [
        {"prompt": "2+2?", "chosen": " 4", "rejected": " 5"},
        {"prompt": "3+3?", "chosen": " 6", "rejected": " 6"},
        {"prompt": "", "chosen": " a", "rejected": " b"},
        {"prompt": "4+4?", "chosen": " 8"},
        {"prompt": "5+5?", "chosen": [" 10"], "rejected": " 11"},
    ]
    path = write_jsonl(dir_ / "prefs.jsonl", prefs)
    corpus["prefs"] = {"path": path, "good": 1, "warn": {}, "method": "dpo",
                       "bad": {2: "chosen_equals_rejected", 3: "empty_prompt", 4: "missing_field", 5: "wrong_type"}}
    return corpus


SPEC = """\
name: data-test
base_model: {base_model}
method: {method}
data:
  train: {train}
{extra}training:
  max_length: {max_length}
"""


def write_spec(dir_: Path, train: str, method: str = "sft", base_model: str = "some-org/some-model",
               max_length: int = 256, extra: str = "") -> Path:
    """A minimal job spec beside the data (extra: more indented lines under data:)."""
    path = dir_ / "job.yaml"
    path.write_text(SPEC.format(base_model=base_model, method=method, train=train, extra=extra,
                                max_length=max_length))
    return path
