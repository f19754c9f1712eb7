"""Multi-stage specs on the local provider: each stage starts from the right earlier output."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import EXAMPLE_DATA
from test_cli import cloudft


def test_sft_reward_rl_stages_run_in_order_and_link(tmp_path, tiny_model):
    for name in ("quickstart.jsonl", "preferences.jsonl"):
        (tmp_path / name).write_text((EXAMPLE_DATA / name).read_text())
    spec = tmp_path / "rlhf.yaml"
    spec.write_text(f"""name: rlhf
base_model: {tiny_model}
stages:
  - method: sft
    data: {{train: quickstart.jsonl}}
  - method: reward
    data: {{train: preferences.jsonl}}
  - method: rl
    data: {{train: quickstart.jsonl}}
    training: {{per_device_batch_size: 4, num_generations: 2, max_new_tokens: 8}}
peft: {{type: lora, r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}}
data: {{train: quickstart.jsonl}}
training: {{max_steps: 2, per_device_batch_size: 4, max_length: 64, logging_steps: 1, learning_rate: 0.001}}
eval: {{enabled: false}}
""")
    plan = json.loads(cloudft("plan", str(spec), "--json").stdout)
    outputs = [s["run_config"]["outputs"] for s in plan["stages"]]
    rcs = [s["run_config"] for s in plan["stages"]]
    assert [rc["method"] for rc in rcs] == ["sft", "reward", "rl"]
    assert outputs[1]["init_adapter"] is None  # the reward model starts from the base
    assert outputs[2]["init_adapter"] == outputs[0]["output_dir"]  # the policy continues the SFT adapter
    assert rcs[2]["reward_model"] == outputs[1]["output_dir"]

    proc = cloudft("submit", str(spec), timeout=600)
    assert "completed" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.count("note: tiny model with random weights") == 1  # once per run, not per stage
    run = json.loads(cloudft("runs", "--json").stdout)[0]
    log = (Path(run["run_dir"]) / "log.txt").read_text()
    starts = [json.loads(line.split("##cloudft ", 1)[1]) for line in log.splitlines() if '"train_start"' in line]
    assert [s["method"] for s in starts] == ["sft", "reward", "rl"]
    for stage in ("0-sft", "1-reward", "2-rl"):
        assert (Path(run["run_dir"]) / stage / "output" / "metrics.json").is_file(), stage
    assert "starting from the adapter in" in log
