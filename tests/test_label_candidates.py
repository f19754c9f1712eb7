"""Candidate generation with a tiny real model: a model dir, a PEFT adapter dir, and a run id from the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloudft.cli.label import label_group
from cloudft.errors import CloudftError
from cloudft.label.candidates import Sampling, generate_pairs, load_prompts, resolve_model
from cloudft.label.pairs import load_pairs

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "quickstart.jsonl"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from train_entry.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("label-models")
    base = build_tiny_model(root / "tiny", data=[DATA], vocab_size=300, hidden_size=32, layers=1)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)),
                                LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = root / "adapter"
    peft_model.save_pretrained(adapter)
    return base, adapter


def _prompts(tmp_path):
    p = tmp_path / "prompts.jsonl"
    p.write_text('{"id": "q1", "prompt": "Compute 1 + 2."}\n'
                 '{"prompt": [{"role": "user", "content": "Compute 3 * 4."}]}\n')
    return p


def test_two_samples_from_one_model_dir(tmp_path, models):
    base, _ = models
    s = Sampling(temperature=1.0, max_new_tokens=6, seed=1)
    pairs = list(generate_pairs(load_prompts(_prompts(tmp_path)), str(base), None, s))
    assert [p["prompt_id"] for p in pairs] == ["q1", "q-2"]
    assert all(p["model_a"] == p["model_b"] == str(base) for p in pairs)
    assert pairs[0]["generation"] == {"temperature": 1.0, "top_p": 0.95, "top_k": 0, "max_new_tokens": 6, "seed": 1}
    assert any(p["response_a"] != p["response_b"] for p in pairs)  # sampled, so they differ
    assert isinstance(pairs[1]["prompt"], list)


def test_cli_run_id_and_adapter(tmp_path, models, monkeypatch):
    base, adapter = models
    monkeypatch.setenv("CLOUDFT_HOME", str(tmp_path / "home"))
    from cloudft.registry import Registry, RunRecord

    run_dir = tmp_path / "run"
    (run_dir / "sft").mkdir(parents=True)
    (run_dir / "sft" / "output").symlink_to(adapter, target_is_directory=True)
    Registry().add(RunRecord(run_id="run-abc123", name="demo", provider="local", status="completed",
                             run_dir=str(run_dir), meta={"stages": ["sft"]}))
    assert resolve_model("run-abc") == run_dir / "sft" / "output"
    out = tmp_path / "pairs.jsonl"
    r = CliRunner().invoke(label_group, ["candidates", "--prompts", str(_prompts(tmp_path)), "--model", "run-abc123",
                                         "--model-b", str(base), "--out", str(out), "--max-new-tokens", "5"])
    assert r.exit_code == 0, r.output
    pairs = load_pairs(out)  # the file the app and Ground Truth read
    assert len(pairs) == 2 and pairs[0]["model_a"] == "run-abc123" and pairs[0]["model_b"] == str(base)
    assert json.loads(out.read_text().splitlines()[0])["generation"]["max_new_tokens"] == 5


def test_bad_inputs_are_clear(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"text": "no prompt"}\n')
    with pytest.raises(CloudftError, match="needs a 'prompt'"):
        load_prompts(bad)
    with pytest.raises(CloudftError, match="neither a model directory"):
        resolve_model(str(tmp_path))
    with pytest.raises(CloudftError, match="--temperature must be > 0"):
        Sampling(temperature=0).check()
