"""Strict spec values: nothing is accepted that a run would choke on, and each refusal names file:line:col,
the field and the fix. Hostile YAML (duplicate keys, recursive aliases, deep nesting) fails cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from cloudft.errors import SpecError
from cloudft.spec import load_spec, load_spec_text
from train_entry.config import DataConfig, RunConfig, TrainingConfig

GOOD = """\
name: demo
base_model: org/model
data:
  train: data/train.jsonl
"""


def problems(text: str) -> list:
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "spec.yaml")
    return info.value.problems


def one(text: str):
    (p,) = problems(text)
    return p


# -- per-stage training overrides are typed --------------------------------------------------------------------

def test_stage_training_values_are_typed_and_located():
    p = one(GOOD + "stages:\n  - method: sft\n    training: {learning_rate: abc}\n  - dpo\n")
    assert (p.file, p.line, p.column, p.field) == ("spec.yaml", 7, 31, "stages.0.training.learning_rate")
    assert "needs a number" in p.message and "'abc'" in p.message
    assert p.fix and "< 1" in p.fix  # the range it takes


@pytest.mark.parametrize("override,field", [
    ("{seed: -3}", "seed"),
    ("{epochs: .inf}", "epochs"),
    ("{packing: 1}", "packing"),
    ("{lr_scheduler: cosin}", "lr_scheduler"),
    ("{max_steps: 0}", "max_steps"),
    ("{learning_rat: 0.1}", "learning_rat"),
])
def test_stage_training_refuses_what_the_top_level_refuses(override, field):
    p = one(GOOD + f"stages:\n  - method: sft\n    training: {override}\n")
    assert p.field == f"stages.0.training.{field}" and p.line == 7


def test_stage_training_keeps_merge_semantics():
    spec = load_spec_text(GOOD + "training: {learning_rate: 1.0e-3, max_length: 512}\n"
                                 "stages:\n  - method: sft\n    training: {learning_rate: 5e-5, seed: 7}\n  - dpo\n")
    stage = spec.stage_list()[0]
    assert stage.training == {"learning_rate": 5e-5, "seed": 7}  # only what the stage sets, typed
    merged = spec.stage_training(0)
    assert isinstance(merged, TrainingConfig)
    assert (merged.learning_rate, merged.seed, merged.max_length) == (5e-5, 7, 512)
    assert spec.stage_training(1) == spec.training
    # the plan's merge (top level model_dump + the stage's dict) gives the same
    assert TrainingConfig.model_validate({**spec.training.model_dump(), **stage.training}) == merged
    # and the spec still serialises (its digest keys checkpoints)
    dumped = spec.model_dump(mode="json")
    assert dumped["stages"][0]["training"] == {"learning_rate": 5e-5, "seed": 7}


def test_stage_training_merge_is_checked_across_fields():
    p = one(GOOD + "training: {max_length: 64}\nstages:\n  - method: dpo\n    training: {max_prompt_length: 100}\n")
    assert p.field == "stages.0.training" and p.line == 8 and "max_prompt_length (100) must be below" in p.message


def test_validate_command_reports_stage_training_with_location(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD + "stages:\n  - method: sft\n    training: {learning_rate: abc}\n")
    proc = subprocess.run([sys.executable, "-m", "cloudft.cli.main", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    out = proc.stdout + proc.stderr
    assert f"{path}:7:31: stages.0.training.learning_rate" in out and "Traceback" not in out


# -- numbers, booleans, ranges ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e999", "-1.0e+400"])
def test_only_finite_floats(value):
    p = one(GOOD + f"compute: {{max_runtime_hours: 2}}\nbudget: {{max_cost_usd: {value}}}\n")
    assert p.field == "budget.max_cost_usd" and "finite" in p.message and p.line == 6


def test_run_config_refuses_non_finite_json(tmp_path):
    body = {"name": "x", "base_model": "m", "data": {"train": "t.jsonl"}, "training": {"learning_rate": "NaN"}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(body).replace('"NaN"', "NaN"))
    with pytest.raises(ValidationError, match="finite"):
        RunConfig.read(path)


def test_yaml_1_2_floats_are_numbers_and_quoted_numbers_are_refused():
    spec = load_spec_text(GOOD + "training: {learning_rate: 1e-4, weight_decay: 1E-2, epochs: 3e0}\n")
    assert (spec.training.learning_rate, spec.training.weight_decay, spec.training.epochs) == (1e-4, 0.01, 3.0)
    p = one(GOOD + "training: {learning_rate: '1e-4'}\n")
    assert p.field == "training.learning_rate" and "remove the quotes" in p.message


@pytest.mark.parametrize("value,ok", [(0, True), (2**32 - 1, True), (-1, False), (2**32, False), (10**30, False)])
def test_seed_range(value, ok):
    text = GOOD + f"training: {{seed: {value}}}\n"
    if ok:
        assert load_spec_text(text).training.seed == value
    else:
        p = one(text)
        assert p.field == "training.seed" and "4294967295" in p.fix


@pytest.mark.parametrize("section,value,needle", [
    ("training: {epochs: true}", "epochs", "is a boolean"),
    ("peft: {r: false}", "r", "is a boolean"),
    ("training: {packing: 1}", "packing", "not a boolean"),
    ("eval: {enabled: 'yes'}", "enabled", "not a boolean"),
    ("compute: {spot: 0}", "spot", "not a boolean"),
])
def test_booleans_and_numbers_are_kept_apart(section, value, needle):
    p = one(GOOD + section + "\n")
    assert p.field.endswith(value) and needle in p.message


@pytest.mark.parametrize("value", ["''", "'   '", "' org/model'", '"org/\\tmodel"', '"org/\\0model"'])
def test_base_model_must_be_a_name(value):
    p = one(GOOD.replace("org/model", value))
    assert p.field == "base_model" and p.line == 2


@pytest.mark.parametrize("ref,ok", [
    ("env:HF_TOKEN", True), ("env:", False), ("env:1X", False), ("env:A-B", False),
    ("secretsmanager:prod/hf-token", True), ("secretsmanager:", False), ("secretsmanager:a b", False),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-AbCdEf", True),
    ("arn:aws:secretsmanager:us-east-1:1:secret:hf", False), ("arn:aws:secretsmanager:", False),
    ("keyvault:hf-token", True), ("keyvault:", False), ("keyvault:hf_token", False),
    ("hf_live_value", False),
])
def test_secret_references_are_checked(ref, ok):
    text = GOOD + f"secrets:\n  HF_TOKEN: '{ref}'\n"
    if ok:
        assert load_spec_text(text).secrets == {"HF_TOKEN": ref}
    else:
        p = one(text)
        assert (p.field, p.line) == ("secrets.HF_TOKEN", 6)


@pytest.mark.parametrize("name", ["PATH", "LD_PRELOAD", "CLOUDFT_HOME", "hf_token", "ÉTOKEN"])
def test_secret_names_that_would_break_the_run(name):
    p = one(GOOD + f"secrets:\n  {name}: env:X\n")
    assert p.field == f"secrets.{name}"


def test_near_dup_threshold_range_is_what_the_index_can_build():
    from cloudft.data.dedup import NearDupIndex

    low, high = (DataConfig.model_json_schema()["properties"]["near_dup_threshold"]["anyOf"][0][k]
                 for k in ("minimum", "maximum"))
    assert (low, high) == (0.5, 1.0)
    NearDupIndex(low), NearDupIndex(0.99), NearDupIndex(high)  # both ends of the accepted range build an index
    for value in ("1.01", "0", "0.1"):
        p = one(GOOD.replace("data/train.jsonl", f"x.jsonl\n  near_dup_threshold: {value}"))
        assert p.field == "data.near_dup_threshold"


@pytest.mark.parametrize("text,field", [
    (GOOD.replace("data/train.jsonl", "''"), "data.train"),
    (GOOD + "outputs: {dir: ' '}\n", "outputs.dir"),
    (GOOD + "peft: {target_modules: []}\n", "peft.target_modules"),
    (GOOD + "peft: {target_modules: [q_proj, '']}\n", "peft.target_modules.1"),
    (GOOD + "eval: {prompts: ['  ']}\n", "eval.prompts.0"),
    (GOOD + "training: {per_device_batch_size: 100000000}\n", "training.per_device_batch_size"),
    (GOOD + "training: {max_steps: 99999999999}\n", "training.max_steps"),
    (GOOD + "training: {beta: 1.0e+300}\n", "training.beta"),
    (GOOD + "training: {max_length: 256, max_prompt_length: 256}\n", "training"),
    (GOOD + "compute: {gpus_per_node: 1000}\n", "compute.gpus_per_node"),
    (GOOD + "peft: {alpha: 10000000}\n", "peft.alpha"),
    (GOOD.replace("data/train.jsonl", "data/" + "x" * 300 + ".jsonl"), "data.train"),  # File name too long
    (GOOD.replace("org/model", "~nosuchuser/model"), "base_model"),  # pathlib: RuntimeError
])
def test_other_values_a_run_would_choke_on(text, field):
    assert one(text).field == field


def test_run_config_stage_must_be_within_the_stages():
    with pytest.raises(ValidationError, match="past the last stage"):
        RunConfig(name="x", base_model="m", data={"train": "t"}, stage=2, stage_count=2)


# -- enum errors suggest ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("section,field,bad,guess", [
    ("peft: {type: lorra}", "peft.type", "'lorra'", "lora"),
    ("method: dpoo", "method", "'dpoo'", "dpo"),
    ("training: {optimizer: adamw_torh}", "training.optimizer", "'adamw_torh'", "adamw_torch"),
    ("stages: [sft, dpp]", "stages.1", "'dpp'", "dpo"),
    ("stages: [{method: rewrd}]", "stages.0.method", "'rewrd'", "reward"),
])
def test_enum_errors_echo_the_value_and_suggest_the_closest(section, field, bad, guess):
    p = one(GOOD + section + "\n")
    assert p.field == field and bad in p.message
    assert p.fix.startswith(f"did you mean '{guess}'?")


def test_enum_error_without_a_close_match_lists_the_choices():
    p = one(GOOD + "peft: {type: zzzzzz}\n")
    assert p.fix.startswith("use one of") and "'qlora'" in p.fix


# -- hostile YAML -------------------------------------------------------------------------------------------------

def test_duplicate_keys_name_both_lines():
    ps = problems(GOOD + "training:\n  epochs: 1\n  seed: 3\n  epochs: 2\nname: other\n")
    assert [(p.field, p.line) for p in ps] == [("training.epochs", 8), ("name", 9)]
    assert "first on line 6, again on line 8" in ps[0].message
    assert "first on line 1, again on line 9" in ps[1].message


def test_merge_keys_are_not_duplicates():
    spec = load_spec_text(GOOD + "training:\n  <<: {epochs: 2, seed: 1}\n  seed: 5\n")
    assert (spec.training.epochs, spec.training.seed) == (2.0, 5)


@pytest.mark.parametrize("text", [
    GOOD + "eval:\n  prompts: &a [*a]\n",
    GOOD + "aws: &a {x: *a}\n",
    GOOD + "aws: &a {x: [1, {y: *a}]}\n",
])
def test_recursive_aliases_are_a_located_error(text):
    p = one(text)
    assert "recursive alias" in p.message and p.line is not None


@pytest.mark.parametrize("text,line", [
    (GOOD + "aws: " + "[" * 5000 + "]" * 5000 + "\n", 5),
    (GOOD + "aws: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", 5),
    (GOOD + "aws:\n" + "".join("  " * i + "-\n" for i in range(1, 200)), 69),  # where the 65th level opens
])
def test_deep_nesting_is_a_located_error(text, line):
    p = one(text)
    assert "nests deeper than" in p.message and p.line == line


def test_aliases_cannot_nest_deeper_than_the_limit():
    lines = ["x0: &a0 [1]"] + [f"x{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]" for i in range(1, 40)]
    p = one(GOOD + "aws:\n" + "".join(f"  {line}\n" for line in lines))
    assert "nests deeper than" in p.message


def test_characters_yaml_does_not_allow_are_located():
    p = one(GOOD + "note: \x07\n")
    assert p.line == 5 and "'\\x07' is not allowed" in p.message


def test_spec_files_get_the_same_checks(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD + "name: again\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.problems[0].file == str(path) and info.value.problems[0].line == 5


@pytest.mark.parametrize("ref", ["secretsmanager:hf:token", "arn:aws:secretsmanager:us-east-1:111122223333:secret:hf-AbC:token",
                                 "arn:aws-cn:secretsmanager:cn-north-1:111122223333:secret:hf"])
def test_references_the_launcher_reads_are_accepted(ref):
    """A JSON key after the name, and the other AWS partitions: the spec takes what the job's launcher resolves
    (templates/aws/cloudft_launch.py parse_ref, the one parser)."""
    spec = load_spec_text(GOOD + f"secrets: {{HF_TOKEN: '{ref}'}}\n")
    assert spec.secrets["HF_TOKEN"] == ref
