"""Job spec loading: every error names file:line:col and the field; hostile YAML fails fast and clearly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloudft.errors import SpecError
from cloudft.spec import JobSpec, json_schema, load_spec, load_spec_text

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
name: demo
base_model: org/model
data:
  train: data/train.jsonl
"""


def _problems(text: str, tmp_path: Path, name: str = "spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return path, info.value.problems


def test_minimal_spec_gets_defaults(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    spec = load_spec(path)
    assert spec.method == "sft" and spec.peft.type == "lora"
    assert spec.training.precision == "auto"
    assert spec.base_dir == tmp_path.resolve()
    assert [s.method for s in spec.stage_list()] == ["sft"]


def test_bad_type_names_line_column_and_field(tmp_path):
    path, probs = _problems(GOOD + "peft:\n  r: lots\n", tmp_path)
    (p,) = probs
    assert (p.file, p.line, p.column, p.field) == (str(path), 6, 6, "peft.r")
    assert "integer" in p.message


def test_unknown_key_suggests_the_right_one(tmp_path):
    _, probs = _problems(GOOD + "trainng:\n  epochs: 2\n", tmp_path)
    (p,) = probs
    assert p.line == 5 and p.column == 1 and p.field == "trainng"
    assert "did you mean 'training'" in p.fix


def test_nested_unknown_key_suggests_within_its_section(tmp_path):
    _, probs = _problems(GOOD + "training:\n  learning_rat: 0.1\n", tmp_path)
    assert probs[0].field == "training.learning_rat" and "learning_rate" in probs[0].fix
    assert probs[0].line == 6


def test_missing_field_points_at_parent(tmp_path):
    _, probs = _problems("name: demo\nbase_model: m\ndata:\n  format: auto\n", tmp_path)
    (p,) = probs
    assert p.field == "data.train" and "missing" in p.message and p.line == 3


def test_enum_error_lists_choices(tmp_path):
    _, probs = _problems(GOOD + "peft:\n  type: lorax\n", tmp_path)
    assert probs[0].field == "peft.type" and "qlora" in probs[0].fix


def test_invalid_yaml_reports_position(tmp_path):
    _, probs = _problems("name: demo\nbase_model: [unclosed\ndata: {train: x}\n", tmp_path)
    assert probs[0].line is not None and "invalid YAML" in probs[0].message


def test_several_problems_reported_together(tmp_path):
    _, probs = _problems("name: Bad Name\nbase_model: m\ndata: {train: x}\ntraining: {epochs: -1, seed: x}\n",
                         tmp_path)
    fields = {p.field for p in probs}
    assert {"name", "training.epochs", "training.seed"} <= fields


@pytest.mark.parametrize("text,needle", [
    ("- a\n- b\n", "a list"),
    ("just a string\n", "a single value"),
    ("", "empty"),
    ("a: 1\n---\nb: 2\n", "several YAML documents"),
])
def test_non_mapping_documents(tmp_path, text, needle):
    _, probs = _problems(text, tmp_path)
    assert needle in probs[0].message


def test_alias_bomb_is_rejected_fast(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    started = time.monotonic()
    _, probs = _problems("\n".join(lines) + "\n", tmp_path)
    assert time.monotonic() - started < 5
    assert "expands to more than" in probs[0].message


def test_huge_binary_and_non_utf8_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "# filler\n" * 200_000)
    with pytest.raises(SpecError) as info:
        load_spec(big)
    assert "must be under" in info.value.problems[0].message
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x7fELF\x00\x01\x02")
    with pytest.raises(SpecError) as info:
        load_spec(binary)
    assert "binary" in info.value.problems[0].message
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: demo\nbase_model: caf\xe9\n")
    with pytest.raises(SpecError) as info:
        load_spec(latin)
    assert "UTF-8" in info.value.problems[0].message and info.value.problems[0].line == 2


def test_secrets_must_be_references():
    with pytest.raises(SpecError) as info:
        load_spec_text(GOOD + "secrets:\n  HF_TOKEN: hf_abcdefghijklmnop\n")
    assert "never the value" in info.value.problems[0].message
    spec = load_spec_text(GOOD + "secrets:\n  HF_TOKEN: arn:aws:secretsmanager:us-east-1:123456789012:secret:hf\n")
    assert spec.secrets["HF_TOKEN"].startswith("arn:")


def test_stages_and_links():
    spec = load_spec_text(GOOD + "stages: [sft, reward, rl]\n")
    assert [s.method for s in spec.stage_list()] == ["sft", "reward", "rl"]
    with pytest.raises(SpecError) as info:
        load_spec_text(GOOD + "stages: [sft, rl]\n")
    assert "reward" in info.value.problems[0].message


def test_provider_section_errors_are_located(tmp_path):
    from pydantic import BaseModel, ConfigDict

    class Section(BaseModel):
        model_config = ConfigDict(extra="forbid")
        region: str

    path = tmp_path / "s.yaml"
    path.write_text(GOOD + "aws:\n  regoin: us-east-1\n")
    spec = load_spec(path)
    with pytest.raises(SpecError) as info:
        spec.provider_section("aws", Section)
    fields = {p.field: p for p in info.value.problems}
    assert fields["aws.regoin"].line == 6 and "region" in fields["aws.regoin"].fix


def test_every_example_validates():
    examples = sorted((REPO / "examples").glob("*.yaml"))
    assert len(examples) >= 7
    for path in examples:
        spec = load_spec(path)
        assert isinstance(spec, JobSpec)


def test_json_schema_covers_sections():
    schema = json_schema()
    assert {"name", "base_model", "peft", "data", "training", "compute"} <= set(schema["properties"])


def test_readme_spec_reference_is_generated_from_the_models():
    from cloudft.specdoc import BEGIN, END, render

    text = (REPO / "README.md").read_text()
    block = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    assert block.strip() == render().strip(), "run `python -m cloudft.specdoc --write`"
