"""train_entry run the way Azure ML runs it: from the staged code snapshot, data and outputs passed on the
command line as folders (what `${{inputs.x}}` / `${{outputs.y}}` resolve to), trains the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from cloudft.plan import build_plan
from cloudft.providers.azure import AzureProvider
from cloudft.spec import load_spec_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "quickstart.jsonl"


def test_staged_snapshot_trains_tiny_model_with_folder_inputs(tmp_path, monkeypatch):
    from train_entry.tiny import build_tiny_model

    monkeypatch.setenv("CLOUDFT_HOME", str(tmp_path / "home"))
    tiny = tmp_path / "tiny"
    build_tiny_model(tiny, data=[DATA])
    spec_text = yaml.safe_dump({
        "name": "azure-tiny", "base_model": str(tiny), "method": "sft",
        "data": {"train": str(DATA), "format": "prompt_completion"},
        "training": {"max_steps": 2, "per_device_batch_size": 2, "max_length": 64},
        "eval": {"enabled": False},
        "compute": {"instance_type": "Standard_NC4as_T4_v3"},
        "azure": {"subscription_id": "s", "resource_group": "rg", "workspace": "ws"},
    })
    prov = AzureProvider()
    spec = load_spec_text(spec_text, str(tmp_path / "spec.yaml"))
    prov.validate(spec)
    out = tmp_path / "dry"
    prov.submit(build_plan(spec, "azure", locate=prov.locate), dry_run=True, out_dir=str(out))
    job = yaml.safe_load((out / "job.yml").read_text())

    # what Azure ML mounts: an input folder holding the data file, empty output folders
    mounts = tmp_path / "mnt"
    (mounts / "train").mkdir(parents=True)
    shutil.copy(DATA, mounts / "train" / "train.jsonl")
    values = {"inputs.train": mounts / "train", "outputs.adapter": mounts / "adapter",
              "outputs.checkpoints": mounts / "checkpoints"}
    command = job["command"]
    for key, path in values.items():
        command = command.replace("${{%s}}" % key, str(path))
    assert "${{" not in command and "torchrun" not in command
    env = dict(os.environ, PYTHONPATH="", MLFLOW_TRACKING_URI=f"file:{tmp_path / 'mlruns'}",
               MLFLOW_ALLOW_FILE_STORE="true", HF_HUB_OFFLINE="1", **{k: str(v) for k, v in job["environment_variables"].items()})
    argv = command.split()
    argv[0] = sys.executable  # the environment's python
    proc = subprocess.run(argv, cwd=out / "code", env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (mounts / "adapter" / "adapter_config.json").exists()
    assert json.loads((mounts / "adapter" / "metrics.json").read_text())
    assert '"event": "done"' in proc.stdout or "done" in proc.stdout
