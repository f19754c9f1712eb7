"""The SageMaker container contract without Docker: the `code` channel cloudft stages (train_entry,
run.json, the launcher) runs in a temp dir laid out like /opt/ml and trains the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from aws_fixtures import BUCKET, EXAMPLES, plan_for


def _opt_ml(root: Path, plan) -> Path:
    """/opt/ml as SageMaker lays it out: config JSONs, one folder per channel, model and checkpoint dirs."""
    from cloudft.providers.aws.staging import stage_source_dir

    stage = plan.stages[0]
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text("{}")
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"TrainingInputMode": "File"},
                                                             "code": {"TrainingInputMode": "File"}}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (config / "checkpointconfig.json").write_text(json.dumps({"LocalPath": str(root / "checkpoints"),
                                                              "S3Uri": stage.locations.checkpoint_uri}))
    train_channel = root / "input" / "data" / "train"
    train_channel.mkdir(parents=True)
    local = Path(plan.data[0].train)
    shutil.copy(local, train_channel / Path(stage.run_config.data.train).name)
    (root / "model").mkdir()
    (root / "checkpoints").mkdir()
    assert stage.run_config.distributed.launcher == "none"  # one process on the planned instance
    return stage_source_dir(root / "input" / "data" / "code", stage.run_config, with_requirements=True)


def test_staged_code_channel_trains_the_tiny_model_in_an_opt_ml_layout(tmp_path, tiny_model, monkeypatch):
    spec = tmp_path / "spec.yaml"
    shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    spec.write_text(f"""name: contract
base_model: {tiny_model}
data: {{train: data/quickstart.jsonl}}
peft: {{type: lora, r: 4, alpha: 8, target_modules: [q_proj, v_proj]}}
training: {{max_steps: 2, per_device_batch_size: 2, max_length: 64, logging_steps: 1, packing: false}}
eval: {{max_samples: 4, max_new_tokens: 4}}
aws: {{region: us-east-1, bucket: {BUCKET}, role_arn: 'arn:aws:iam::111122223333:role/r'}}
""")
    _, plan = plan_for(spec)
    root = tmp_path / "opt-ml"
    code = _opt_ml(root, plan)
    run = json.loads((code / "run.json").read_text())
    assert run["data"]["train"].startswith("/opt/ml/input/data/train/")  # the container's view
    assert run["outputs"]["output_dir"] is None and run["outputs"]["checkpoint_dir"] is None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "CLOUDFT_SECRET"))}
    env.update(CLOUDFT_SM_ROOT=str(root), TRAINING_JOB_NAME="cft-contract-abc-1", HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(code / "cloudft_launch.py")], cwd=str(code), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = root / "model"
    assert (out / "adapter_config.json").exists()
    assert "train_loss" in json.loads((out / "metrics.json").read_text())
    assert (out / "report.md").exists()
    events = [json.loads(line.split("##cloudft ", 1)[1]) for line in proc.stdout.splitlines() if "##cloudft " in line]
    assert any(e.get("event") == "done" for e in events)
