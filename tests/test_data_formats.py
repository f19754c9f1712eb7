"""Every input format and file type through validate/prepare, column mapping, and the real HH-RLHF file."""

from __future__ import annotations

import json

import pytest

from cloudft.data.pipeline import Options
from cloudft.data.store import prepare_files, validate_files
from cloudft.errors import CloudftError
from data_fixtures import (HH_RLHF, sft_records, write_csv, write_json_array, write_jsonl, write_parquet)
from helpers import shared_file

SHAPES = {
    "prompt_completion": ({"prompt": "Say hi", "completion": " hi"}, "sft",
                          {"prompt": "Say hi", "completion": " hi"}),
    "prompt_response": ({"prompt": "Say hi", "response": " hi"}, "sft", {"prompt": "Say hi", "completion": " hi"}),
    "alpaca": ({"instruction": "Translate", "input": "chat", "output": "cat"}, "sft",
               {"prompt": "Translate\n\nchat", "completion": "cat"}),
    "messages": ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                               {"role": "assistant", "content": "a"}]}, "sft",
                 {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                               {"role": "assistant", "content": "a"}]}),
    "sharegpt": ({"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}]}, "sft",
                 {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}),
    "text": ({"text": "plain text"}, "sft", {"text": "plain text"}),
    "preference": ({"prompt": "2+2", "chosen": " 4", "rejected": " 5"}, "dpo",
                   {"prompt": "2+2", "chosen": " 4", "rejected": " 5"}),
    "preference_implicit_chat": (
        {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
         "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]}, "dpo",
        {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
         "rejected": [{"role": "assistant", "content": "bad"}]}),
    "hh_rlhf": ({"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: fine",
                 "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: go away"}, "reward",
                {"prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                            {"role": "user", "content": "how?"}],
                 "chosen": [{"role": "assistant", "content": "fine"}],
                 "rejected": [{"role": "assistant", "content": "go away"}]}),
    "kto": ({"prompt": "p", "completion": " c", "label": "false"}, "kto", {"prompt": "p", "completion": " c",
                                                                          "label": False}),
}
WRITERS = {
    "jsonl": lambda p, recs: write_jsonl(p.with_suffix(".jsonl"), recs),
    "jsonl.gz": lambda p, recs: write_jsonl(p.with_suffix(".jsonl.gz"), recs, gz=True),
    "json": lambda p, recs: write_json_array(p.with_suffix(".json"), recs),
    "csv": lambda p, recs: write_csv(p.with_suffix(".csv"), recs),
    "parquet": lambda p, recs: write_parquet(p.with_suffix(".parquet"), recs),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_every_shape_and_file_type_normalises(tmp_path, shape, kind):
    record, method, expected = SHAPES[shape]
    if kind == "csv" and shape == "kto":
        record = {**record, "label": "false"}
    path = WRITERS[kind](tmp_path / "data", [record])
    summary, manifest = prepare_files([(path, "train")], Options(method=method), tmp_path / "out")
    assert (summary.records_in, summary.records_out, summary.quarantined) == (1, 1, 0), summary.problems
    out = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert out == [expected]
    assert manifest["splits"]["train"]["records"] == 1


def test_json_array_and_csv_report_source_lines(tmp_path):
    recs = sft_records(3)
    recs[1] = {"prompt": "", "completion": " x"}
    arr = write_json_array(tmp_path / "a.json", recs)  # indent=2: element k starts on line 2 + 4k
    s = validate_files([(arr, "train")], Options(), None)
    assert [(p.line, p.reason) for p in s.problems] == [(6, "empty_prompt")]
    csvp = tmp_path / "c.csv"
    csvp.write_text('prompt,completion\n"multi\nline",ok\n,missing prompt\nx,y,extra\n')
    s = validate_files([(csvp, "train")], Options(), None)
    assert [(p.line, p.reason) for p in s.problems] == [(4, "empty_prompt"), (5, "malformed_row")]
    assert s.records_in == 3 and s.records_out == 1


def test_parquet_reports_record_numbers(tmp_path):
    recs = sft_records(4)
    recs[2] = {"prompt": recs[2]["prompt"], "completion": ""}
    s = validate_files([(write_parquet(tmp_path / "d.parquet", recs), "train")], Options(), None)
    assert [(p.line, p.field, p.reason) for p in s.problems] == [(3, "completion", "empty_field")]


def test_column_mapping_and_pairwise_label(tmp_path):
    rows = [{"question": "q1", "response_j": "good", "response_k": "bad"}]
    path = write_jsonl(tmp_path / "se.jsonl", rows)
    cols = {"prompt": "question", "chosen": "response_j", "rejected": "response_k"}
    prepare_files([(path, "train")], Options(method="dpo", columns=cols), tmp_path / "o1")
    assert json.loads((tmp_path / "o1" / "train.jsonl").read_text()) == {"prompt": "q1", "chosen": "good",
                                                                          "rejected": "bad"}
    rows = [{"q": "q1", "a": "A!", "b": "B!", "winner": "B"}, {"q": "q2", "a": "A2", "b": "B2", "winner": "A"},
            {"q": "q3", "a": "x", "b": "y", "winner": "tie"}]
    path = write_jsonl(tmp_path / "ab.jsonl", rows)
    cols = {"prompt": "q", "response_a": "a", "response_b": "b", "label": "winner", "label_a": "A", "label_b": "B"}
    s, _ = prepare_files([(path, "train")], Options(method="dpo", columns=cols), tmp_path / "o2")
    out = [json.loads(x) for x in (tmp_path / "o2" / "train.jsonl").read_text().splitlines()]
    assert [(r["chosen"], r["rejected"]) for r in out] == [("B!", "A!"), ("A2", "B2")]
    assert [(p.line, p.field, p.reason) for p in s.problems] == [(3, "winner", "wrong_label")]
    # errors name the user's column, not the canonical one
    path = write_jsonl(tmp_path / "se2.jsonl", [{"question": "", "response_j": "g", "response_k": "b"}])
    s = validate_files([(path, "train")], Options(method="dpo", columns={"prompt": "question", "chosen":
                                                                         "response_j", "rejected": "response_k"}))
    assert s.problems[0].field == "question"


def test_unrecognised_shape_shows_keys_and_example_mapping(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "response_j": "a", "response_k": "b"}])
    with pytest.raises(CloudftError) as err:
        validate_files([(path, "train")], Options(method="dpo"))
    assert "['question', 'response_j', 'response_k']" in err.value.message
    assert "prompt: question, chosen: response_j, rejected: response_k" in err.value.hint


def test_method_decides_expected_kind(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", sft_records(3))
    with pytest.raises(CloudftError, match="'dpo' method trains on preference"):
        validate_files([(path, "train")], Options(method="dpo"))
    assert validate_files([(path, "train")], Options(method="rl")).records_out == 3


def test_real_hh_rlhf_file_splits_into_prompt_and_completions(tmp_path):
    s, manifest = prepare_files([(shared_file(HH_RLHF), "train")], Options(method="dpo"), tmp_path / "hh")
    assert s.format == "preference" and s.records_in == 2312
    assert s.records_in == s.records_out + s.quarantined and s.records_out > 2200
    first = json.loads((tmp_path / "hh" / "train.jsonl").open().readline())
    assert first["prompt"][0]["role"] == "user" and first["prompt"][-1]["role"] == "user"
    assert first["chosen"][0]["role"] == "assistant" and first["chosen"] != first["rejected"]
    # the real file has dialogs with empty final replies and mismatched histories: each quarantined with its line
    lines = [json.loads(x) for x in (tmp_path / "hh" / "quarantine.jsonl").read_text().splitlines()]
    assert len(lines) == s.quarantined and all(q["line"] > 0 and q["fix"] for q in lines)
    raw = json.loads(__import__("gzip").open(HH_RLHF, "rt").readlines()[lines[0]["line"] - 1])
    assert raw == json.loads(lines[0]["record"])
