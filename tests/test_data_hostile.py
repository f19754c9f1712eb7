"""Hostile input (issue 15, item 8): every such record is quarantined with its reason, or the file is refused
with an error naming it; never a traceback, never a silent accept. Ends with a hypothesis fuzz of JSONL files."""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudft.cli.data import data_group
from cloudft.data import readers
from cloudft.data.pipeline import Options
from cloudft.data.store import validate_files
from cloudft.errors import CloudftError
from data_fixtures import sft_records, write_jsonl

GOOD = [json.dumps(r) for r in sft_records(3)]


def _validate(path, **opts):
    return validate_files([(path, "train")], Options(**opts), None)


def _errors(summary):
    return [(p.line, p.reason) for p in summary.problems if p.severity == "error"]


@pytest.mark.parametrize("depth", [600, 1100, 5000])
def test_deeply_nested_json_is_quarantined(tmp_path, depth):
    deep = '{"prompt": ' + "[" * depth + "]" * depth + ', "completion": "a"}'
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join([GOOD[0], deep, GOOD[1]]) + "\n")
    s = _validate(path)
    assert s.records_in == 3 and s.records_out == 2
    reason = "wrong_type" if depth < 1000 else "too_deep"  # read but not a prompt, or too deep to read at all
    assert s.quarantined == 1 and _errors(s) == [(2, reason)]
    # the same in a JSON array (the standard library's parser, which recurses)
    arr = tmp_path / "deep.json"
    arr.write_text("[" + ", ".join([GOOD[0], deep]) + "]")
    s = _validate(arr)
    assert s.records_in == 2 and s.records_out == 1 and s.quarantined == 1


def test_deep_tool_arguments_are_refused_before_they_break_the_writer(tmp_path):
    args = "[" * 300 + "]" * 300
    rec = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": '{"a": ' + args + "}"}}]}]}
    s = _validate(write_jsonl(tmp_path / "t.jsonl", [rec]))
    assert _errors(s) == [(1, "too_deep")]


def test_integer_of_more_than_4300_digits_is_quarantined(tmp_path):
    path = tmp_path / "int.jsonl"
    path.write_text("\n".join([GOOD[0], '{"prompt": "q", "completion": "a", "n": ' + "7" * 5000 + "}"]) + "\n")
    s = _validate(path)
    assert _errors(s) == [(2, "invalid_json")] and "4300" in s.problems[0].message


def test_repeated_json_keys_are_quarantined_not_silently_collapsed(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join([
        GOOD[0],
        '{"prompt": "first", "completion": "a", "prompt": "second"}',
        '{"prompt" : "spaced", "completion": "a", "prompt":"again"}',
        '{"messages": [{"role": "user", "content": "q", "role": "assistant"}]}',
        '{"prompt": "a \\"quoted\\": colon", "completion": "fine"}',
    ]) + "\n")
    s = _validate(path)
    assert _errors(s)[:3] == [(2, "duplicate_key"), (3, "duplicate_key"), (4, "duplicate_key")]
    assert s.records_out == 2  # a `\":` inside a string is no repeat
    arr = tmp_path / "dup.json"
    arr.write_text('[{"prompt": "x", "completion": "y", "completion": "z"}, ' + GOOD[1] + "]")
    s = _validate(arr)
    assert [p.reason for p in s.problems] == ["duplicate_key"] and s.records_out == 1


def test_text_after_a_json_array_is_not_dropped_silently(tmp_path):
    arr = tmp_path / "two.json"
    arr.write_text("[" + GOOD[0] + "]\n[" + GOOD[1] + "]\n")
    s = _validate(arr)
    assert s.records_in == 2 and s.records_out == 1
    (p,) = s.problems
    assert (p.line, p.reason) == (2, "invalid_json") and "after the end of the JSON array" in p.message


def test_csv_repeated_headers_refused_and_huge_cells_read_or_quarantined(tmp_path, monkeypatch):
    dup = tmp_path / "dup.csv"
    dup.write_text("prompt,completion,prompt\nq,a,r\n")
    with pytest.raises(CloudftError, match="dup.csv: the header names 'prompt' more than once"):
        _validate(dup)
    big = tmp_path / "big.csv"
    big.write_text("prompt,completion\nq," + "x" * 200_000 + "\nq2,a2\n")  # a cell over the csv default 128 KiB
    s = _validate(big)
    assert (s.records_in, s.records_out, s.quarantined) == (2, 2, 0)
    monkeypatch.setattr(readers, "MAX_CSV_CELL", 150_000)  # a cell over the limit: that row quarantined
    s = _validate(big)  # (each CSV read sets the csv module's limit again, so nothing leaks to other tests)
    assert (s.records_in, s.records_out) == (2, 1) and _errors(s) == [(2, "malformed_row")]


def test_corrupt_or_truncated_gzip_is_a_file_error_naming_the_file(tmp_path):
    good = gzip.compress(("\n".join(GOOD * 400) + "\n").encode())
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(good[: len(good) // 2])
    corrupt = tmp_path / "bad.jsonl.gz"
    corrupt.write_bytes(good[:20] + b"\x00" * 50 + good[70:])
    for path in (truncated, corrupt):
        with pytest.raises(CloudftError, match=f"{path.name}: the gzip data is corrupt or truncated"):
            _validate(path)
        r = CliRunner().invoke(data_group, ["validate", str(path)])
        assert r.exit_code != 0 and "Aborted" not in r.output
        assert isinstance(r.exception, (SystemExit, CloudftError))
        r = CliRunner().invoke(data_group, ["validate", str(path), "--json"])
        assert "corrupt or truncated" in json.loads(r.output)["error"]["message"]


@pytest.mark.parametrize("name,content,what", [
    ("empty.jsonl", b"", "the file is empty"),
    ("blank.jsonl", b"\n  \n\t\n", "has only blank lines"),
    ("header.csv", b"prompt,completion\n", "header row and no records"),
    ("empty.json", b"[ ]", "empty JSON array"),
    ("empty.jsonl.gz", gzip.compress(b"\n\n", mtime=0), "has only blank lines"),
])
def test_files_without_records_are_errors(tmp_path, name, content, what):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CloudftError, match=f"{name}: no records: .*{what}"):
        _validate(path)
    assert CliRunner().invoke(data_group, ["validate", str(path)]).exit_code == 1


def test_cr_only_line_endings_are_lines(tmp_path):
    recs = sft_records(5)
    for name, data in (("mac.jsonl", "\r".join(json.dumps(r) for r in recs) + "\r"),
                       ("mac.json", "[\r" + ",\r".join(json.dumps(r) for r in recs) + "\r]\r"),
                       ("mac.csv", "prompt,completion\r" + "".join(f"{r['prompt']},{r['completion']}\r" for r in recs))):
        path = tmp_path / name
        path.write_bytes(data.encode())
        s = _validate(path)
        assert (s.records_in, s.records_out) == (5, 5), name
    bad = tmp_path / "mac-bad.jsonl"
    bad.write_bytes(("\r".join([json.dumps(recs[0]), "{oops", json.dumps(recs[1])]) + "\r").encode())
    assert _errors(_validate(bad)) == [(2, "invalid_json")]


# -- fuzz ---------------------------------------------------------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["prompt", "completion", "messages", "role", "content", "chosen", "rejected", "label",
                         "text", "tools", "tool_calls", "x"]), children, max_size=5),
    max_leaves=20)
LINE = st.one_of(JSONISH.map(json.dumps), st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
                 st.sampled_from(GOOD + ['{"prompt": "a", "prompt": "b"}', "[" * 1200, "]", "{", "\x00"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=12), fmt=st.sampled_from(["auto", "prompt_completion", "messages",
                                                                          "preference", "sharegpt", "kto"]))
def test_fuzzed_files_never_raise_anything_but_a_located_error(tmp_path, lines, fmt):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes("\n".join(lines).replace("\n\n", "\n").encode("utf-8", "surrogateescape") + b"\n")
    try:
        s = _validate(path, format=fmt, method="any")
    except CloudftError as exc:
        assert "fuzz.jsonl" in exc.message or exc.hint
        return
    assert s.records_in == s.records_out + s.quarantined
    assert s.records_out + s.problem_total > 0
