"""The broken-file corpus: every bad line is reported with its number and reason, and nothing is lost."""

from __future__ import annotations

import json

import pytest

from cloudft.data.pipeline import Options
from cloudft.data.store import validate_files
from data_fixtures import broken_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return broken_corpus(tmp_path_factory.mktemp("broken"))


@pytest.mark.parametrize("name", ["mixed", "bom", "huge", "chat", "prefs"])
def test_every_bad_line_reported_and_nothing_lost(corpus, tmp_path, name):
    case = corpus[name]
    quarantine = tmp_path / "q.jsonl"
    summary = validate_files([(case["path"], "train")],
                             Options(method=case.get("method", "sft"), max_length=256), quarantine)
    # records in = records out + quarantined, and the quarantine file holds exactly the quarantined ones
    assert summary.records_in == summary.records_out + summary.quarantined
    assert summary.records_out == case["good"]
    assert summary.quarantined == len(case["bad"])
    rejected = [json.loads(line) for line in quarantine.read_text().splitlines()] if quarantine.exists() else []
    assert {q["line"]: q["reason"] for q in rejected} == case["bad"]
    warned = {p.line: p.reason for p in summary.problems if p.severity == "warning"}
    assert warned == case["warn"]
    for p in summary.problems:  # every problem names file, line, reason and a fix
        assert p.file.endswith(case["path"].name) and p.line and p.reason and p.fix
    for q in rejected:  # the raw record is kept, so nothing is lost
        assert q["record"] is not None


def test_mixed_file_problem_details(corpus, tmp_path):
    summary = validate_files([(corpus["mixed"]["path"], "train")], Options(), None)
    by_line = {p.line: p for p in summary.problems}
    assert "column" in by_line[2].message  # invalid JSON says where
    assert by_line[3].message.startswith("invalid UTF-8 at byte")
    assert by_line[5].field == "prompt" and "int" in by_line[5].message
    assert "NUL" in by_line[6].message and by_line[6].field == "prompt"
    assert "mixed.jsonl:1" in by_line[13].message  # the duplicate names the first copy
    assert summary.counts["control_chars"] == 2


def test_huge_single_line_is_rejected_without_tokenizing(corpus, tmp_path):
    summary = validate_files([(corpus["huge"]["path"], "train")], Options(max_length=256), None)
    (p,) = [p for p in summary.problems if p.reason == "too_long"]
    assert p.line == 2 and "characters" in p.message


def test_unreadable_head_does_not_drop_the_rest_of_the_file(tmp_path):
    """A file whose first 100+ lines are garbage still has every later line read and accounted for."""
    path = tmp_path / "late.jsonl"
    lines = ["not json"] * 120 + [json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) for i in range(5)]
    path.write_text("\n".join(lines) + "\n")
    summary = validate_files([(path, "train")], Options(), None)
    assert summary.records_in == 125
    assert summary.records_in == summary.records_out + summary.quarantined
    assert summary.quarantined >= 120


@pytest.mark.parametrize("escape", ["\\b", "\\f"])
def test_json_escapes_that_decode_to_control_characters_are_caught(tmp_path, escape):
    path = tmp_path / "ctl.jsonl"
    path.write_text('{"prompt": "bell' + escape + 'here", "completion": "ok"}\n'
                    '{"prompt": "clean", "completion": "ok"}\n')
    summary = validate_files([(path, "train")], Options(), None)
    assert summary.records_out == 1 and summary.counts.get("control_chars") == 1
