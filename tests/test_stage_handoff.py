"""Stage hand-off at the train_entry level, for every method sequence, with full fine-tuning
(`peft.type: none`, the earlier stage's full weights passed as `outputs.init_model`) and with an adapter
(`outputs.init_adapter`).

Each later stage trains 2 steps at a learning rate too small to move the weights visibly, so its output must
equal the weights it started from: the earlier stage's, never the bare base model's. The reference model of
DPO and KTO is those starting weights too: at step 1 the policy equals its reference, so the implicit rewards
are 0 (DPO loss ln 2, KTO loss 0.5).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from methods_fixtures import kto_data, metrics_of, preference_split, run_stage, write_config

from helpers import EXAMPLE_DATA, read_jsonl

FAST = {"max_steps": 2, "max_length": 48}
STILL = {**FAST, "learning_rate": 1e-9}  # the stage trains, but its weights stay where they started
SEQUENCES = {  # every shape the spec's stage links produce: policy -> policy (twice), and sft -> reward -> rl
    "sft-dpo": ["dpo"],
    "sft-orpo": ["orpo"],
    "sft-kto": ["kto"],
    "sft-reward-rl": ["reward", "rl"],
    "sft-dpo-kto": ["dpo", "kto"],
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("handoff")


@pytest.fixture(scope="module")
def data(work):
    pref_train, pref_val = preference_split(work, n_train=8, n_val=4)
    return {"sft": EXAMPLE_DATA / "quickstart.jsonl", "dpo": pref_train, "orpo": pref_train,
            "reward": pref_train, "kto": kto_data(work, n=6)[0], "rl": pref_train}


PEFT = {"none": {"type": "none"}, "lora": {"type": "lora", "target_modules": ["q_proj", "v_proj"]}}


@pytest.fixture(scope="module", params=list(PEFT))
def sft_stage(request, work, tiny_model, data):
    """The first stage, once per PEFT type: (peft, output dir)."""
    peft = request.param
    cfg = write_config(work, f"sft-{peft}", tiny_model, "sft", data["sft"], peft=PEFT[peft],
                       training={**FAST, "learning_rate": 1e-2}, eval={"enabled": False})
    rc, out = run_stage(cfg)
    assert rc == 0
    return peft, out


def weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (out / "adapter_config.json").is_file() else "model.safetensors"
    return load_file(str(out / name))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys=None) -> bool:
    keys = keys or (set(a) & set(b))
    return bool(keys) and all(torch.allclose(a[k], b[k], atol=1e-6) for k in keys)


def first_row(out: Path) -> dict:
    return next(r for r in read_jsonl(out / "train_log.jsonl") if "loss" in r)


@pytest.mark.parametrize("sequence", list(SEQUENCES))
def test_stage_hand_off(sequence, sft_stage, work, tiny_model, data):
    peft, sft_out = sft_stage
    base = weights(tiny_model)
    link = "init_model" if peft == "none" else "init_adapter"
    policy_out, reward_out = sft_out, None
    assert metrics_of(sft_out)["artifact"] == ("full_weights" if peft == "none" else "adapter")
    for method in SEQUENCES[sequence]:
        name = f"{sequence}-{peft}-{method}"
        links = {"outputs": {link: str(policy_out)}} if method != "reward" else {}  # reward starts from base
        if method == "rl":
            links["reward_model"] = str(reward_out)
        training = {**STILL, "num_generations": 2, "max_new_tokens": 8} if method == "rl" else STILL
        cfg = write_config(work, name, tiny_model, method, data[method], peft=PEFT[peft], training=training,
                           eval={"enabled": False}, **links)
        rc, out = run_stage(cfg)
        assert rc == 0, name
        m = metrics_of(out)
        assert m["peft"] == peft
        if method == "reward":
            assert m["artifact"] == "reward_model"
            assert m["reward_weights"] == ("full_weights" if peft == "none" else "adapter")
            reward_out = out
            continue
        assert m[link] == str(policy_out)
        assert m["artifact"] == ("full_weights" if peft == "none" else "adapter"), name
        started, now = weights(policy_out), weights(out)
        assert same(now, started), f"{name} did not start from the earlier stage's weights"
        if peft == "none":
            assert not same(now, base), f"{name} started from the base model"
            assert "model.safetensors" in {p.name for p in out.iterdir()}
            assert not (out / "adapter_config.json").exists()
        else:
            assert set(now) == set(started)  # the same adapter, continued
        if method in ("dpo", "kto"):  # the reference is the starting point: policy == reference at step 1
            first = first_row(out)
            assert first["rewards/chosen"] == pytest.approx(0, abs=1e-4), name
            assert first["rewards/rejected"] == pytest.approx(0, abs=1e-4), name
            assert first["loss"] == pytest.approx(math.log(2) if method == "dpo" else 0.5, abs=1e-4)
        policy_out = out
    report = (policy_out / "report.md").read_text()
    assert f"- output: {'full weights' if peft == 'none' else 'lora adapter'} in `{policy_out}`" in report


def test_full_weights_passed_as_an_adapter_is_a_config_error(sft_stage, work, tiny_model, data, capsys):
    """The bug the plan used to hit: stage 1's full weights given to stage 2 as an adapter."""
    peft, sft_out = sft_stage
    wrong = "init_adapter" if peft == "none" else "init_model"
    right = "init_model" if peft == "none" else "init_adapter"
    cfg = write_config(work, f"wrong-{peft}", tiny_model, "dpo", data["dpo"], peft=PEFT[peft],
                       outputs={wrong: str(sft_out)}, training=STILL, eval={"enabled": False})
    rc, _ = run_stage(cfg)
    assert rc == 2
    out = capsys.readouterr().out
    assert f"pass it as outputs.{right}" in out
    failed = [json.loads(line.split("##cloudft ", 1)[1]) for line in out.splitlines() if '"failed"' in line]
    assert [f["kind"] for f in failed] == ["config"]
