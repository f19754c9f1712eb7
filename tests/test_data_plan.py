"""The plan's data resolver, its fast path, the pre-submit check, and the `cloudft data` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cloudft.cli.data import data_group
from cloudft.plan import check_before_submit
from cloudft.errors import CloudftError
from cloudft.plan import build_plan
from cloudft.providers.local import LocalProvider
from cloudft.spec import load_spec
from data_fixtures import REPO, broken_corpus, sft_records, write_jsonl, write_spec


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _plan(spec_path):
    return build_plan(load_spec(spec_path), "local", locate=LocalProvider().locate)


def test_plan_resolves_to_canonical_versioned_data(tmp_path, home):
    write_jsonl(tmp_path / "d" / "train.jsonl", sft_records(200))
    spec = write_spec(tmp_path, "d/train.jsonl", extra="  validation_split: 0.2\n")
    plan = _plan(spec)
    d = plan.data[0]
    assert d.dataset_dir.startswith(str(home / "datasets"))
    assert d.format == "prompt_completion" and set(d.versions) == {"train", "validation"}
    assert d.records["train"] + d.records["validation"] == 200 and d.quarantined == 0
    rc = plan.stages[0].run_config
    assert rc.data.train == d.train and rc.data.validation == d.validation
    assert rc.dataset_versions == d.versions
    manifest = json.loads((home / "datasets" / d.dataset_version / "manifest.json").read_text())
    assert manifest["sources"][0]["path"] == str(tmp_path / "d" / "train.jsonl")
    assert d.tokenizer.startswith("skipped: base_model 'some-org/some-model'")


def test_fast_path_by_stat_then_content_hash(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", sft_records(60))
    spec = write_spec(tmp_path, "train.jsonl")
    first = _plan(spec).data[0]
    again = _plan(spec).data[0]
    assert (first.cached, again.cached) == (False, True) and again.versions == first.versions
    os.utime(data, ns=(1, 1))  # touched, same bytes: the content hash still hits
    assert _plan(spec).data[0].cached is True
    write_jsonl(data, sft_records(61))
    changed = _plan(spec).data[0]
    assert changed.cached is False and changed.versions["train"] != first.versions["train"]


def test_submit_check_refuses_errors_and_force_trains_on_clean_records(tmp_path):
    corpus = broken_corpus(tmp_path / "c")
    spec = write_spec(tmp_path, str(corpus["mixed"]["path"]))
    plan = _plan(spec)
    with pytest.raises(CloudftError) as err:
        check_before_submit(plan)
    msg = err.value.message
    assert "8 records" in msg and "invalid_json: 1" in msg and "control_chars: 2" in msg
    assert plan.data[0].quarantine in msg and "--force" in err.value.hint
    notes = check_before_submit(plan, force=True)
    assert any("--force: training on 3 clean records" in w for w in notes)
    assert any("prompting" in w for w in plan.warnings)  # < 50 examples: the advice is a plan warning
    assert len(plan.to_dict()["warnings"]) == len(set(plan.to_dict()["warnings"]))  # each warning once
    unusable = tmp_path / "unusable.jsonl"
    unusable.write_text('{"prompt": ""}\n{not json\n')
    with pytest.raises(CloudftError, match="no usable training records"):
        check_before_submit(_plan(write_spec(tmp_path, str(unusable))), force=True)
    with pytest.raises(CloudftError, match="no records: the file is empty"):  # refused while planning
        _plan(write_spec(tmp_path, str(corpus["empty"]["path"])))


def test_cloud_uri_passes_through(tmp_path):
    spec = write_spec(tmp_path, "s3://bucket/train.jsonl")
    d = build_plan(load_spec(spec), "aws").data[0]
    assert d.train == "s3://bucket/train.jsonl" and d.versions == {} and not d.local


def test_submit_refuses_before_any_provider_call(tmp_path):
    corpus = broken_corpus(tmp_path / "c")
    spec = write_spec(tmp_path, str(corpus["mixed"]["path"]))
    env = {**os.environ, "CLOUDFT_HOME": str(tmp_path / "h")}
    r = subprocess.run([sys.executable, "-m", "cloudft.cli.main", "submit", str(spec), "--provider", "local"],
                       capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 1 and "cannot be used" in r.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_plan_imports_no_torch_transformers_or_datasets(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", sft_records(10))
    spec = write_spec(tmp_path, "train.jsonl")
    code = ("import sys; from cloudft.plan import build_plan; from cloudft.spec import load_spec; "
            f"build_plan(load_spec({str(spec)!r}), 'local'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'datasets')))")
    env = {**os.environ, "CLOUDFT_HOME": str(tmp_path / "h")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cli_validate_json_strict_prepare_and_stats(tmp_path):
    runner = CliRunner()
    corpus = broken_corpus(tmp_path / "c")
    r = runner.invoke(data_group, ["validate", str(corpus["mixed"]["path"]), "--json"])
    assert r.exit_code == 1
    summary = json.loads(r.output)
    assert (summary["records_in"], summary["records_out"], summary["quarantined"]) == (12, 3, 9)
    assert {"file", "line", "field", "reason"} <= set(summary["problems"][0])
    # duplicates only: ok by default, a failure with --strict
    dup = write_jsonl(tmp_path / "dup.jsonl", sft_records(3) + sft_records(1))
    assert runner.invoke(data_group, ["validate", str(dup)]).exit_code == 0
    assert runner.invoke(data_group, ["validate", str(dup), "--strict"]).exit_code == 1
    # prepare into the store, then stats on the prepared directory
    data = write_jsonl(tmp_path / "t.jsonl", sft_records(100))
    r = runner.invoke(data_group, ["prepare", str(data), "--validation-split", "0.2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["records_out"] == 100 and set(out["manifest"]["splits"]) == {"train", "validation"}
    png = tmp_path / "len.png"
    r = runner.invoke(data_group, ["stats", out["dataset_dir"], "--png", str(png), "--json"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    assert stats["records"] == 100 and stats["splits"] == out["splits"] and png.stat().st_size > 1000
