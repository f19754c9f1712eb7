"""The SageMaker container contract without Docker: the `code` channel cloudft stages (train_entry,
run.json, the launcher, a wheelhouse) runs in a temp dir laid out like /opt/ml and trains the tiny model, in a
Python where the report's optional packages cannot be imported, as on the Hugging Face training image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from aws_fixtures import BUCKET, EXAMPLES, plan_for
from helpers import write_wheel

#: the report's optional packages, hidden as on the HF image: an import of a module whose sys.modules entry is
#: None raises ModuleNotFoundError, and importlib.util.find_spec answers None (Python's import system docs)
HIDE = ("matplotlib", "rouge_score", "sacrebleu")
RUN_HIDDEN = ("import runpy, sys\n"
              f"for name in {HIDE!r}:\n"
              "    sys.modules[name] = None\n"
              "runpy.run_path('cloudft_launch.py', run_name='__main__')\n")


def _opt_ml(root: Path, plan, wheelhouse: Path) -> Path:
    """/opt/ml as SageMaker lays it out: config JSONs, one folder per channel, model and checkpoint dirs."""
    from cloudft.providers.aws.staging import stage_source_dir

    stage = plan.stages[0]
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text("{}")
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"TrainingInputMode": "File"},
                                                             "validation": {"TrainingInputMode": "File"},
                                                             "code": {"TrainingInputMode": "File"}}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (config / "checkpointconfig.json").write_text(json.dumps({"LocalPath": str(root / "checkpoints"),
                                                              "S3Uri": stage.locations.checkpoint_uri}))
    for split in ("train", "validation"):
        local = getattr(plan.data[0], split)
        if local:
            channel = root / "input" / "data" / split
            channel.mkdir(parents=True)
            shutil.copy(local, channel / Path(getattr(stage.run_config.data, split)).name)
    (root / "model").mkdir()
    (root / "checkpoints").mkdir()
    assert stage.run_config.distributed.launcher == "none"  # one process on the planned instance
    return stage_source_dir(root / "input" / "data" / "code", stage.run_config, wheelhouse)


def test_staged_code_channel_trains_the_tiny_model_in_an_opt_ml_layout(tmp_path, tiny_model, monkeypatch):
    spec = tmp_path / "spec.yaml"
    shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    spec.write_text(f"""name: contract
base_model: {tiny_model}
data: {{train: data/quickstart.jsonl, validation_split: 0.2}}
peft: {{type: lora, r: 4, alpha: 8, target_modules: [q_proj, v_proj]}}
training: {{max_steps: 2, per_device_batch_size: 2, max_length: 64, logging_steps: 1, packing: false}}
eval: {{max_samples: 4, max_new_tokens: 4}}
aws: {{region: us-east-1, bucket: {BUCKET}, role_arn: 'arn:aws:iam::111122223333:role/r'}}
""")
    _, plan = plan_for(spec)
    root = tmp_path / "opt-ml"
    # a one-wheel wheelhouse (the real trl/datasets/accelerate wheels are not on this machine)
    probe = write_wheel(tmp_path / "wheels", "cloudft-probe", "1.0", ["packaging>=20"],
                        {"cloudft_probe/__init__.py": "VALUE = 42\n"})
    code = _opt_ml(root, plan, probe.parent)
    run = json.loads((code / "run.json").read_text())
    assert run["data"]["train"].startswith("/opt/ml/input/data/train/")  # the container's view
    assert run["outputs"]["output_dir"] is None and run["outputs"]["checkpoint_dir"] is None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "CLOUDFT_SECRET"))}
    env.update(CLOUDFT_SM_ROOT=str(root), TRAINING_JOB_NAME="cft-contract-abc-1", HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="",
               PIP_INDEX_URL="http://127.0.0.1:9/simple")  # an index, if anything asked one, that answers nothing
    proc = subprocess.run([sys.executable, "-c", RUN_HIDDEN], cwd=str(code), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = root / "model"
    assert (out / "adapter_config.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "train_loss" in metrics and "val_loss_tuned" in metrics
    # the wheelhouse was installed from the channel, without an index, first on the path
    assert "installed cloudft_probe-1.0-py3-none-any.whl from the code channel" in proc.stdout
    assert (root / "cloudft-packages" / "cloudft_probe" / "__init__.py").is_file()
    # without the report's optional packages: no plots and no ROUGE-L / BLEU, and the report says why
    report = (out / "report.md").read_text()
    assert "No plots: matplotlib cannot be imported" in report and not list(out.glob("*.png"))
    assert "ROUGE-L not computed: rouge-score cannot be imported" in report
    assert "BLEU not computed: sacrebleu cannot be imported" in report
    assert not [k for k in metrics if k.startswith(("rougeL", "bleu"))]
    events = [json.loads(line.split("##cloudft ", 1)[1]) for line in proc.stdout.splitlines() if "##cloudft " in line]
    assert any(e.get("event") == "done" for e in events)
