"""Data as users bring it (issue 15): every source format of the registry from its published description,
detection by evidence, mappings that read the data, templated and integer-label mappings, unused columns,
near-duplicates of preference pairs, and `data validate --json` on a refused file."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cloudft.cli.data import data_group
from cloudft.data.formats import REGISTRY, rank
from cloudft.data.pipeline import Options
from cloudft.data.store import prepare_files, validate_files
from cloudft.errors import CloudftError
from data_fixtures import write_csv, write_json_array, write_jsonl, write_spec
from format_fixtures import (AZUREML_TEXT_GENERATION, LF_KTO_MESSAGES, LF_SHAREGPT_RANKING, OPENAI_TOOLS,
                             SAGEMAKER_DOLLY, SOURCES)


def _read(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _prepare(tmp_path, records, method, writer=write_jsonl, **opts):
    suffix = {write_json_array: "json", write_csv: "csv"}.get(writer, "jsonl")
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = writer(tmp_path / f"in.{suffix}", records)
    s, _ = prepare_files([(path, "train")], Options(method=method, **opts), tmp_path / "out")
    return s, _read(tmp_path / "out" / "train.jsonl") if (tmp_path / "out" / "train.jsonl").exists() else []


def test_every_registered_format_has_a_published_fixture_and_its_example_detects_as_itself():
    canonical_only = {"prompt_completion", "text"}  # TRL's own basic types: covered by test_data_formats.py
    assert set(REGISTRY) - canonical_only - {"hh_rlhf"} <= set(SOURCES)
    for name, fmt in REGISTRY.items():
        assert fmt.reference.startswith("https://") and fmt.origin, name
        assert rank([fmt.example]).best == name, name


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_formats_convert_as_their_descriptions_say(tmp_path, name):
    records, method, expected = SOURCES[name]
    s, out = _prepare(tmp_path, records, method, writer=write_json_array)  # LLaMA-Factory writes JSON arrays
    assert s.records_in == len(records) and s.quarantined == 0, [p.render() for p in s.problems]
    assert s.format == REGISTRY[name].canonical
    assert expected in out, out


def test_1_llamafactory_ranking_is_preference_not_sft(tmp_path):
    """Before: read as SFT sharegpt, every record quarantined with a turn-order fix."""
    s, out = _prepare(tmp_path, LF_SHAREGPT_RANKING, "dpo")
    assert (s.format, s.records_out, s.quarantined) == ("preference", 2, 0)
    assert out[1]["prompt"][-1] == {"role": "user", "content": "And 3+3?"} and out[1]["chosen"][0]["content"] == "6"
    with pytest.raises(CloudftError, match="sharegpt_preference records .preference., but the 'sft' method"):
        validate_files([(write_jsonl(tmp_path / "r.jsonl", LF_SHAREGPT_RANKING), "train")], Options(method="sft"))


def test_2_messages_with_a_label_are_kto_and_never_sft_targets(tmp_path):
    """Before: read as SFT messages; the label dropped and undesirable answers trained on, silently."""
    s, out = _prepare(tmp_path, LF_KTO_MESSAGES, "kto")
    assert s.format == "kto" and [r["label"] for r in out] == [False, True]
    path = write_jsonl(tmp_path / "k.jsonl", LF_KTO_MESSAGES)
    with pytest.raises(CloudftError, match="messages_kto records .kto., but the 'sft' method"):
        validate_files([(path, "train")], Options(method="sft"))
    # forcing the plain messages format does not drop the label either: it is refused as a target
    with pytest.raises(CloudftError, match="label: looks like a label or a target"):
        validate_files([(path, "train")], Options(method="sft", format="messages"))


def test_3_azureml_text_ground_truth_keeps_the_target(tmp_path):
    """Before: read as plain text; ground_truth vanished."""
    s, out = _prepare(tmp_path, AZUREML_TEXT_GENERATION, "sft")
    assert s.format == "prompt_completion"
    assert out[0] == {"prompt": "The meaning of life is", "completion": " being content and living it to the fullest"}


PAIRWISE = [{"input": f"Question {i}: which planet is number {i % 8 + 1}?", "output_1": f"answer one {i}",
             "output_2": f"answer two {i}", "label": 1 + (i % 3 == 0)} for i in range(12)]


def test_4_mapping_hint_reads_the_label_and_following_it_keeps_pairs_right(tmp_path):
    """Before: the hint paired keys in file order and left `label` unused (inverted pairs when followed)."""
    path = write_jsonl(tmp_path / "pw.jsonl", PAIRWISE)
    with pytest.raises(CloudftError) as err:
        validate_files([(path, "train")], Options(method="dpo"))
    hint = err.value.hint
    assert "response_a: output_1, response_b: output_2, label: label, label_a: 1, label_b: 2" in hint
    assert "prompt: input" in hint
    cols = {"prompt": "input", "response_a": "output_1", "response_b": "output_2", "label": "label",
            "label_a": 1, "label_b": 2}
    s, out = _prepare(tmp_path, PAIRWISE, "dpo", columns=cols)
    assert s.records_out == 12
    for rec, row in zip(out, PAIRWISE):
        better = row["output_1"] if row["label"] == 1 else row["output_2"]
        assert rec["chosen"] == better  # never inverted


def test_4_label_values_that_do_not_match_the_columns_are_flagged_unsure(tmp_path):
    rows = [{"prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}", "winner": i % 2} for i in range(6)]
    with pytest.raises(CloudftError) as err:
        validate_files([(write_jsonl(tmp_path / "u.jsonl", rows), "train")], Options(method="dpo"))
    assert "label_a: \"<value meaning A is better>\"" in err.value.hint and "unsure which winner value" in err.value.hint


def test_5_templated_prompt_keeps_alpaca_input_in_pairwise_mappings(tmp_path):
    """Before: a pairwise mapping could not express instruction + input; the input was lost."""
    rows = [{"instruction": "Translate to French.", "input": f"word {i}", "a": f"mot {i}", "b": f"wrong {i}",
             "pref": "A"} for i in range(3)] + [{"instruction": "Say hi.", "input": "", "a": "hi", "b": "no",
                                                 "pref": "B"}]
    cols = {"prompt": "{instruction}\n\n{input}", "response_a": "a", "response_b": "b", "label": "pref",
            "label_a": "A", "label_b": "B"}
    s, out = _prepare(tmp_path, rows, "dpo", columns=cols)
    assert s.records_out == 4
    assert [r["prompt"] for r in out] == ["Translate to French.\n\nword 0", "Translate to French.\n\nword 1",
                                          "Translate to French.\n\nword 2", "Say hi."]
    assert out[3]["chosen"] == "no"
    # the columns a template reads are used, not reported as unused
    assert not [p for p in s.problems if p.reason == "unused_column"]
    # SageMaker's template.json maps one to one onto a templated mapping
    tmpl = {"prompt": "### Instruction:\n{instruction}\n\n### Input:\n{context}\n\n", "completion": " {response}"}
    s, out = _prepare(tmp_path / "sm", SAGEMAKER_DOLLY, "sft", columns=tmpl, ignore=("category",))
    assert out[0]["prompt"].startswith("### Instruction:\nSummarise the text.\n\n### Input:\nCats sleep")
    assert out[0]["completion"] == " Cats sleep a lot." and s.warnings[-1].startswith("only 2 training examples")


def test_5_bad_templates_are_config_errors(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "output": "y"}])
    for cols, match in (({"prompt": "{instruction!r}"}, "not a plain column name"),
                        ({"prompt": "{instruction"}, "not a valid template"),
                        ({"nonsense": "instruction"}, "not a name any format reads"),
                        ({"response_a": "a", "response_b": "b"}, "pairwise mapping needs label, label_a, label_b")):
        with pytest.raises(CloudftError, match=match):
            validate_files([(path, "train")], Options(columns=cols))


def test_6_tool_calls_are_validated_not_rejected_as_unknown_roles(tmp_path):
    """Before: function_call/observation and the tool role were unknown roles; `tools` was dropped."""
    s, out = _prepare(tmp_path, OPENAI_TOOLS, "sft")
    assert (s.records_out, s.quarantined) == (3, 0)
    assert json.loads(out[0]["tools"])[0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    assert list(json.loads(out[0]["tools"])[0]) == ["type", "function"]  # the schema's own key order is kept
    assert json.loads(out[0]["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert out[2]["messages"][1] == {"role": "assistant", "content": "Yo.", "weight": 0}
    bad = [
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "launch", "arguments": "{}"}}]}], "tools": [OPENAI_TOOLS[0]["tools"][0]]},
        {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "out of turn"},
                      {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}]}]},
    ]
    s = validate_files([(write_jsonl(tmp_path / "bad.jsonl", OPENAI_TOOLS + bad), "train")], Options(method="sft"))
    assert [(p.line, p.reason) for p in s.problems if p.severity == "error"] == [
        (4, "unknown_tool"), (5, "turn_order"), (6, "wrong_type")]


def test_7_unused_columns_reported_by_name_and_target_like_ones_refused(tmp_path):
    """Before: columns no format used vanished without a word."""
    rows = [{**r, "id": i, "source": "web"} for i, r in enumerate(AZUREML_TEXT_GENERATION * 3)]
    s = validate_files([(write_jsonl(tmp_path / "x.jsonl", rows), "train")], Options(method="sft"))
    assert sorted(p.field for p in s.problems if p.reason == "unused_column") == ["id", "source"]
    assert any("id (6)" in w and "source (6)" in w for w in s.warnings)
    # a target-like column is refused, and passes once mapped or ignored on purpose
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "score": i % 5} for i in range(5)]
    path = write_jsonl(tmp_path / "scored.jsonl", rows)
    with pytest.raises(CloudftError) as err:
        validate_files([(path, "train")], Options(method="sft"))
    assert "score: looks like a label or a target" in err.value.message and "ignore_columns" in err.value.hint
    assert validate_files([(path, "train")], Options(method="sft", ignore=("score",))).records_out == 5
    # a target-like column first seen after the detection window quarantines that record, with its reason
    late = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(120)] + [{"prompt": "q", "completion": "a",
                                                                               "reward": 1}]
    s = validate_files([(write_jsonl(tmp_path / "late.jsonl", late), "train")], Options(method="sft"))
    assert [(p.line, p.field, p.reason) for p in s.problems if p.severity == "error"] == [(121, "reward",
                                                                                           "unused_target")]


def test_7_ignore_columns_keeps_its_name_from_yaml_to_run_config_and_cli(tmp_path):
    from cloudft.plan import build_plan
    from cloudft.spec import load_spec

    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "rating": 3} for i in range(5)]
    write_jsonl(tmp_path / "t.jsonl", rows)
    spec = write_spec(tmp_path, "t.jsonl", extra="  ignore_columns: [rating]\n")
    plan = build_plan(load_spec(spec), "local")
    assert plan.stages[0].run_config.data.ignore_columns == ["rating"]
    assert plan.data[0].records["train"] == 5
    r = CliRunner().invoke(data_group, ["validate", str(tmp_path / "t.jsonl"), "--json"])
    assert r.exit_code == 1 and "rating" in json.loads(r.output)["error"]["message"]
    r = CliRunner().invoke(data_group, ["validate", str(tmp_path / "t.jsonl"), "--ignore-columns", "rating"])
    assert r.exit_code == 0, r.output


def _pairs_with_a_long_prompt(n: int) -> list[dict]:
    context = " ".join(f"word{k}" for k in range(400))  # the same long document in every pair
    return [{"prompt": f"{context}\n\nQuestion {i}: summarise part {i}.", "chosen": f"Part {i} is about {i * 7}.",
             "rejected": f"I cannot help with item {i}."} for i in range(n)]


def test_9_near_dup_compares_whole_pairs_and_takes_high_thresholds(tmp_path):
    """Before: distinct pairs sharing a long prompt were dropped at 0.9; 0.99-1.0 crashed."""
    pairs = _pairs_with_a_long_prompt(20)
    copy = {**pairs[3], "chosen": pairs[3]["chosen"] + " "}  # the same pair, bar a space
    s, out = _prepare(tmp_path, pairs + [copy], "dpo", near_dup=0.9)
    assert s.records_out == 20 and [(p.line, p.reason) for p in s.problems] == [(21, "near_duplicate")]
    for threshold in (0.99, 1.0):
        s, out = _prepare(tmp_path / str(threshold), pairs + [copy], "dpo", near_dup=threshold)
        assert s.records_out == 20  # identical text after tokenising into words: still a near-duplicate
    r = CliRunner().invoke(data_group, ["prepare", str(tmp_path / "in.jsonl"), "--near-dup", "1.5"])
    assert r.exit_code != 0 and "--near-dup 1.5" in str(r.exception or r.output)


def test_10_integer_label_values_in_yaml_columns(tmp_path):
    """Before: `label_a: 1` was rejected by the spec schema."""
    from cloudft.spec import load_spec

    write_jsonl(tmp_path / "pw.jsonl", PAIRWISE)
    spec = write_spec(tmp_path, "pw.jsonl", method="dpo", extra=(
        "  columns: {prompt: input, response_a: output_1, response_b: output_2, label: label, label_a: 1,"
        " label_b: 2}\n"))
    data = load_spec(spec).data
    assert data.columns["label_a"] == 1 and data.columns["label_b"] == 2
    r = CliRunner().invoke(data_group, ["validate", str(spec), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["records_out"] == 12
    bad = write_spec(tmp_path, "pw.jsonl", method="dpo", extra="  columns: {prompt: 5}\n")
    with pytest.raises(CloudftError) as err:
        load_spec(bad)
    assert "only label_a and label_b take numbers" in str(err.value)


def test_11_validate_json_always_prints_the_summary(tmp_path):
    """Before: a refused shape printed nothing with --json."""
    path = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "answer_text": "a"}])
    r = CliRunner().invoke(data_group, ["validate", str(path), "--json"])
    assert r.exit_code == 1
    out = json.loads(r.output)
    assert out["records_in"] == 0 and "fit no known data format" in out["error"]["message"]
    assert out["error"]["hint"] and out["errors"] >= 1
    empty = tmp_path / "empty.csv"
    empty.write_text("prompt,completion\n")
    out = json.loads(CliRunner().invoke(data_group, ["validate", str(empty), "--json"]).output)
    assert "header row and no records" in out["error"]["message"]


def test_detection_says_when_it_is_unsure(tmp_path):
    mixed = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(5)] + \
            [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
             for i in range(5)] + [{"text": f"t{i}"} for i in range(5)]
    with pytest.raises(CloudftError) as err:
        validate_files([(write_jsonl(tmp_path / "mix.jsonl", mixed), "train")], Options())
    assert "cannot tell the format" in err.value.message and "a mix of formats" in err.value.message
    assert "set data.format" in err.value.hint


def test_csv_cells_holding_json_work_for_new_formats(tmp_path):
    rows = [{"messages": r["messages"], "label": r["label"]} for r in LF_KTO_MESSAGES]
    s, out = _prepare(tmp_path, rows, "kto", writer=write_csv)
    assert s.records_out == 2 and out[0]["label"] is False


def test_docs_table_is_generated_from_the_registry():
    from cloudft.data.formats.doc import BEGIN, END, render
    from helpers import REPO

    text = (REPO / "docs" / "data.md").read_text()
    block = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    assert block.strip() == render().strip(), "run `python -m cloudft.data.formats.doc --write`"
    assert all(f"| `{name}` |" in block for name in REGISTRY)


def test_run_config_formats_are_the_registry():
    from train_entry.config import DataFormat

    assert {f.value for f in DataFormat} == {"auto", *REGISTRY}
