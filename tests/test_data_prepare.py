"""Prepare: dedup (exact + MinHash near-dup), hash split stability, leakage, PII, versions, stats, token lengths."""

from __future__ import annotations

import json
import random

import pytest

from cloudft.data.pipeline import Options
from cloudft.data.stats import collect
from cloudft.data.store import prepare_files, validate_files
from cloudft.data.tokens import TokenCounter
from cloudft.data.version import dataset_version, write_dataset
from cloudft.errors import CloudftError
from data_fixtures import REPO, sft_records, write_jsonl


def _read(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_near_duplicates_removed_exact_kept_distinct(tmp_path):
    recs = sft_records(40)
    base = recs[5]
    near = {"prompt": base["prompt"], "completion": base["completion"].replace("Answer", "Reply")}
    path = write_jsonl(tmp_path / "d.jsonl", recs + [near])
    s, m = prepare_files([(path, "train")], Options(near_dup=0.7), tmp_path / "o")
    assert [(p.line, p.reason) for p in s.problems if p.reason == "near_duplicate"] == [(41, "near_duplicate")]
    assert "d.jsonl:6" in s.problems[0].message
    assert m["splits"]["train"]["records"] == 40
    s_off, _ = prepare_files([(path, "train")], Options(), tmp_path / "o2")
    assert s_off.records_out == 41  # without near-dup the paraphrase stays


def test_hash_split_is_stable_when_data_is_added(tmp_path):
    small = write_jsonl(tmp_path / "small.jsonl", sft_records(300))
    big = write_jsonl(tmp_path / "big.jsonl", list(reversed(sft_records(300))) + sft_records(200, start=300))
    opts = dict(holdout={"validation": 0.2, "test": 0.1})
    prepare_files([(small, "train")], Options(**opts), tmp_path / "a")
    prepare_files([(big, "train")], Options(**opts), tmp_path / "b")
    for split in ("train", "validation", "test"):
        old = {r["prompt"] for r in _read(tmp_path / "a" / f"{split}.jsonl")}
        new = {r["prompt"] for r in _read(tmp_path / "b" / f"{split}.jsonl")}
        assert old and old <= new  # no old record moved to another split
    n_val = len(_read(tmp_path / "b" / "validation.jsonl"))
    assert 0.1 < n_val / 500 < 0.3


def test_leakage_between_files_reported_with_examples(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", sft_records(60))
    leaked = {"prompt": sft_records(60)[7]["prompt"], "completion": " a different answer"}
    val = write_jsonl(tmp_path / "val.jsonl", sft_records(5, start=100) + [leaked, sft_records(60)[3]])
    s = validate_files([(train, "train"), (val, "validation")], Options(), None)
    leaks = [p for p in s.problems if p.reason == "leakage"]
    assert [(p.file.endswith("val.jsonl"), p.line) for p in leaks] == [(True, 6)]
    assert "train.jsonl:8" in leaks[0].message
    assert any(p.reason == "duplicate" and p.line == 7 for p in s.problems)  # exact copy removed from validation
    assert any(w.startswith("leakage between splits") and "val.jsonl:6" in w for w in s.warnings)


def test_pii_warnings(tmp_path):
    fake_key = "AKIA" + "ABCDEFGHIJKLMNOP"  # built at run time so no credential-shaped string is committed
    recs = sft_records(3) + [{"prompt": "mail bob@example.com", "completion": " call 555-123-4567"},
                             {"prompt": f"key {fake_key}", "completion": " ok"}]
    path = write_jsonl(tmp_path / "p.jsonl", recs)
    s = validate_files([(path, "train")], Options(pii=True), None)
    pii = {p.line: p.message for p in s.problems if p.reason == "pii"}
    assert set(pii) == {4, 5} and "email address" in pii[4] and "phone number" in pii[4]
    assert "AWS access key id" in pii[5]
    assert s.records_out == 5  # warnings keep the record


def test_dataset_version_is_order_independent_and_content_sensitive():
    recs = sft_records(20)
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    assert dataset_version(recs) == dataset_version(shuffled)
    changed = recs[:-1] + [{**recs[-1], "completion": recs[-1]["completion"] + "!"}]
    assert dataset_version(changed) != dataset_version(recs)
    assert dataset_version([{"b": 1, "a": 2}]) == dataset_version([{"a": 2, "b": 1}])


def test_write_dataset_api(tmp_path):
    prefs = [{"prompt": f"q{i}", "chosen": f" good {i}", "rejected": f" bad {i}"} for i in range(100)]
    m = write_dataset(prefs, tmp_path / "ds", format="preference", sources=["label-session-1"],
                      splits={"validation": 0.2})
    assert m["splits"]["train"]["records"] + m["splits"]["validation"]["records"] == 100
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text()) == m
    assert m["version"] in (tmp_path / "ds" / "README.md").read_text()
    rows = _read(tmp_path / "ds" / "train.jsonl") + _read(tmp_path / "ds" / "validation.jsonl")
    assert dataset_version(rows) != m["version"]  # the dataset version covers splits + format
    assert m["splits"]["train"]["version"] == dataset_version(_read(tmp_path / "ds" / "train.jsonl"))
    with pytest.raises(CloudftError, match="record 2"):
        write_dataset([prefs[0], {"prompt": "q", "chosen": "same", "rejected": "same"}], tmp_path / "bad",
                      format="preference", sources=[])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from train_entry.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", data=[REPO / "examples/data/quickstart.jsonl"])


def test_token_lengths_use_the_real_tokenizer(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_model)
    counter, note = TokenCounter.for_model(str(tiny_model))
    assert counter is not None and note.endswith("tokenizer.json")
    msgs = {"messages": [{"role": "user", "content": "Compute 12 + 30."},
                         {"role": "assistant", "content": "The sum is 42."}]}
    pc = {"prompt": "Compute 12 + 30.", "completion": " The sum is 42."}
    expected_chat = len(hf.apply_chat_template(msgs["messages"], tokenize=True, return_dict=True)["input_ids"])
    assert counter.lengths([msgs, pc]) == [expected_chat, len(hf(pc["prompt"] + pc["completion"])["input_ids"])]
    # a record over max_length in real tokens is rejected with its count
    long = {"prompt": "Compute 1 + 1. " * 20, "completion": " The sum is 2."}
    n = counter.lengths([long])[0]
    path = write_jsonl(tmp_path / "l.jsonl", [pc, long])
    s = validate_files([(path, "train")], Options(max_length=n - 1, counter=counter), None)
    assert [(p.line, p.reason, p.message) for p in s.problems] == [(2, "too_long", f"{n} tokens, max_length is {n - 1}")]


def test_stats_percentiles_roles_and_labels(tmp_path, tiny_model):
    chats = [{"messages": [{"role": "user", "content": "hi " * (i + 1)}, {"role": "assistant", "content": "ok"}]}
             for i in range(10)]
    st = collect(chats)
    r = st.result()
    assert r["roles"] == {"user": 10, "assistant": 10} and r["user_turns"]["p50"] == 1
    assert r["length_unit"] == "characters" and r["length"]["min"] < r["length"]["max"]
    kto = [{"prompt": "p", "completion": f" c{i}", "label": i % 4 == 0} for i in range(8)]
    assert collect(kto).result()["labels"] == {"desirable": 2, "undesirable": 6}
    counter, _ = TokenCounter.for_model(str(tiny_model))
    tok = collect(chats, counter)
    assert tok.result()["length_unit"] == "tokens" and list(tok.lengths) == counter.lengths(chats)
    png = tok.histogram(tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
