"""The preflight layer: findings located in the spec, errors refused before anything starts, --force only for
findings marked forceable, and the rule's source carried into the message."""

from __future__ import annotations

import textwrap

import pytest

from cloudft.errors import CloudftError
from cloudft.plan import build_plan
from cloudft.preflight import Finding, enforce, rule, run_rules
from cloudft.spec import load_spec
from helpers import EXAMPLE_DATA


@pytest.fixture
def plan(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_HOME", str(tmp_path / "home"))
    path = tmp_path / "job.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: pre
        base_model: Qwen/Qwen2.5-0.5B-Instruct
        data: {{train: {EXAMPLE_DATA / 'quickstart.jsonl'}}}
        compute:
          instance_type: ml.g5.12xlarge
    """))
    return build_plan(load_spec(path), "aws")


@rule("test.big-instance", "a test rule: its documentation")
def _big(plan):
    if plan.estimate.instance.gpus > 1:
        yield Finding("", "error", "too many GPUs", fix="use one", field="compute.instance_type")


@rule("test.soft", "another source")
def _soft(plan):
    yield Finding("", "error", "no GPU here", fix="add one", forceable=True)
    yield Finding("", "warning", "slow", fix="be patient")


def test_errors_are_refused_with_location_fix_and_source(plan):
    findings = run_rules([_big], plan)
    assert findings == [Finding("test.big-instance", "error", "too many GPUs", "use one",
                                "a test rule: its documentation", "compute.instance_type")]
    with pytest.raises(CloudftError) as err:
        enforce(plan, findings, force=True)  # not forceable: --force does not pass it
    msg = err.value.message
    assert f"{plan.spec.source_path}:5:3: compute.instance_type: too many GPUs" in msg
    assert "fix: use one" in msg and "rule test.big-instance (a test rule: its documentation)" in msg


def test_forceable_errors_pass_with_force_and_warnings_are_returned(plan):
    findings = run_rules([_soft], plan)
    with pytest.raises(CloudftError, match="no GPU here") as err:
        enforce(plan, findings)
    assert "--force" in err.value.hint
    notes = enforce(plan, findings, force=True)
    assert notes == ["preflight (--force): no GPU here", "preflight: slow (be patient)"]
