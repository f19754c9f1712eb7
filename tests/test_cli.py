"""The CLI end to end on the local provider: init, validate, plan, submit, runs, status, logs, stop, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import EXAMPLE_DATA, REPO

HEAVY = ("torch", "transformers", "sagemaker", "azure", "pulumi", "boto3", "datasets", "trl", "peft")


def cloudft(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "cloudft.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))
    if check and proc.returncode != 0:
        raise AssertionError(f"cloudft {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_spec(tmp_path: Path, model: Path, **training) -> Path:
    data = tmp_path / "train.jsonl"
    data.write_text((EXAMPLE_DATA / "quickstart.jsonl").read_text())
    t = {"max_steps": 6, "per_device_batch_size": 8, "max_length": 64, "logging_steps": 1,
         "learning_rate": 0.01, "lr_scheduler": "constant", "warmup_ratio": 0.0, **training}
    lines = "\n".join(f"  {k}: {v}" for k, v in t.items())
    spec = tmp_path / "job.yaml"
    spec.write_text(f"""name: cli-test
base_model: {model}
peft: {{type: lora, r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}}
data: {{train: train.jsonl}}
training:
{lines}
eval: {{enabled: false}}
outputs: {{dir: runs}}
""")
    return spec


@pytest.mark.parametrize("argv", [["--help"], ["validate", str(REPO / "examples" / "quickstart.yaml")],
                                  ["plan", str(REPO / "examples" / "lora-llama3-8b.yaml"), "--json"]])
def test_light_commands_import_no_heavy_library(argv):
    code = (
        "import sys\nfrom cloudft.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().splitlines()[-1] == "HEAVY=", out


def test_init_writes_a_spec_that_validates(tmp_path):
    target = tmp_path / "new.yaml"
    cloudft("init", str(target))
    assert "base_model" in target.read_text()
    assert "ok" in cloudft("validate", str(target)).stdout
    again = cloudft("init", str(target), check=False)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_bad_spec_exits_2_with_location_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbase_model: m\ndata: {train: a}\npeft: {rank: 8}\n")
    proc = cloudft("validate", str(bad), check=False)
    assert proc.returncode == 2
    assert f"{bad}:4:8: peft.rank: unknown key 'rank'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_schema_is_json():
    schema = json.loads(cloudft("schema").stdout)
    assert "peft" in schema["properties"]
    run_schema = json.loads(cloudft("schema", "--run-config").stdout)
    assert "outputs" in run_schema["properties"]


def test_plan_json_has_one_run_config_per_stage(tmp_path, tiny_model):
    spec = write_spec(tmp_path, tiny_model)
    plan = json.loads(cloudft("plan", str(spec), "--json").stdout)
    (stage,) = plan["stages"]
    rc = stage["run_config"]
    assert rc["base_model"] == str(tiny_model)
    version = rc["dataset_versions"]["train"]
    assert len(version) == 64
    assert "/datasets/" in rc["data"]["train"]  # the canonical, content-addressed copy
    assert Path(rc["data"]["train"]).is_file()
    assert rc["outputs"]["output_dir"].startswith(str(tmp_path / "runs"))
    assert rc["training"]["max_steps"] == 6
    table = cloudft("plan", str(spec)).stdout
    assert "cli-test" in table and "sft" in table


def test_submit_runs_status_logs_report_flow(tmp_path, tiny_model):
    spec = write_spec(tmp_path, tiny_model)
    proc = cloudft("submit", str(spec), "--provider", "local")
    assert "completed" in proc.stdout and "adapter:" in proc.stdout
    runs = json.loads(cloudft("runs", "--json").stdout)
    assert len(runs) == 1 and runs[0]["status"] == "completed"
    run_id = runs[0]["run_id"]
    status = json.loads(cloudft("status", run_id[:20], "--json").stdout)  # a unique prefix is enough
    assert status["exit_code"] == 0
    raw = cloudft("logs", run_id, "--raw").stdout
    assert '"event": "train_start"' in raw and '"event": "done"' in raw
    logs = cloudft("logs", run_id).stdout
    assert "##cloudft" not in logs and "step 6/6  loss" in logs and "== stage 0 sft: training 6 steps" in logs
    out = Path(cloudft("artifacts", run_id).stdout.strip())
    assert (out / "adapter_model.safetensors").is_file() and (out / "metrics.json").is_file()

    # the same spec and data again: the finished work is reused, not trained one step further
    from safetensors.torch import load_file

    cloudft("submit", str(spec))
    again = json.loads(cloudft("runs", "--json").stdout)[0]
    assert again["run_id"] != run_id
    assert "already trained to step 6" in cloudft("logs", again["run_id"]).stdout
    first = load_file(str(out / "adapter_model.safetensors"))
    second = load_file(str(Path(again["run_dir"]) / "0-sft" / "output" / "adapter_model.safetensors"))
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)


def test_stop_checkpoints_and_resubmit_resumes(tmp_path, tiny_model):
    spec = write_spec(tmp_path, tiny_model, max_steps=100000, save_steps=100000)
    info = json.loads(cloudft("submit", str(spec), "--detach", "--json").stdout)
    run_id = info["run_id"]
    log = Path(info["run_dir"]) / "log.txt"
    deadline = time.time() + 120
    while time.time() < deadline and '"event": "step"' not in (log.read_text() if log.exists() else ""):
        time.sleep(0.5)
    assert '"event": "step"' in log.read_text(), log.read_text()
    assert "stopped" in cloudft("stop", run_id).stdout
    status = json.loads(cloudft("status", run_id, "--json").stdout)
    assert status["status"] == "stopped" and status["exit_code"] == 143
    plan = json.loads((Path(info["run_dir"]) / "plan.json").read_text())
    ckpt_dir = Path(plan["stages"][0]["run_config"]["outputs"]["checkpoint_dir"])
    ckpts = sorted(ckpt_dir.glob("checkpoint-*/.cloudft-complete"))
    assert ckpts, "SIGTERM did not leave a complete checkpoint"
    stopped_at = int(ckpts[-1].parent.name.split("-")[1])

    # the same spec and data again: the new run resumes from that checkpoint (then stop it too)
    again = json.loads(cloudft("submit", str(spec), "--detach", "--json").stdout)
    log2 = Path(again["run_dir"]) / "log.txt"
    deadline = time.time() + 120
    while time.time() < deadline and '"event": "train_start"' not in (log2.read_text() if log2.exists() else ""):
        time.sleep(0.5)
    start = next(json.loads(line.split("##cloudft ", 1)[1]) for line in log2.read_text().splitlines()
                 if '"train_start"' in line)
    assert start["resumed_from"] >= stopped_at > 0
    cloudft("stop", again["run_id"])


def test_submit_names_the_missing_extra(tmp_path, tiny_model):
    """A provider whose libraries are absent says which extra to install (exit 3, no traceback)."""
    spec = write_spec(tmp_path, tiny_model)
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'trl' else real(name, *a)\n"
        "from cloudft.cli.main import main\n"
        f"main(['submit', {str(spec)!r}])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "pip install 'cloudft[train]'" in proc.stderr and "Traceback" not in proc.stderr


def test_local_secrets_come_from_the_environment_and_never_reach_files(tmp_path, tiny_model, monkeypatch):
    spec = write_spec(tmp_path, tiny_model)
    spec.write_text(spec.read_text() + "secrets: {HF_TOKEN: env:MY_HF_TOKEN}\n")
    monkeypatch.setenv("MY_HF_TOKEN", "hf_s3cr3t_value_never_written")
    cloudft("submit", str(spec))
    run_dir = Path(json.loads(cloudft("runs", "--json").stdout)[0]["run_dir"])
    run_json = json.loads((run_dir / "0-sft" / "run.json").read_text())
    assert run_json["env_secrets"] == ["HF_TOKEN"]
    log = (run_dir / "log.txt").read_text()
    assert "secret env var HF_TOKEN is not set" not in log  # it reached the trainer's environment
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".txt", ".md", ".yaml"):
            assert "hf_s3cr3t_value_never_written" not in path.read_text(errors="replace"), path
    spec.write_text(spec.read_text().replace("env:MY_HF_TOKEN", "secretsmanager:hf"))
    proc = cloudft("validate", str(spec), "--provider", "local", check=False)
    assert proc.returncode == 2 and "secrets.HF_TOKEN" in proc.stderr and "env:VAR" in proc.stderr


def test_user_errors_are_messages_not_tracebacks(tmp_path):
    """Missing cloud credentials, an unwritable init path and a run without a log end in one clear message."""
    import botocore.exceptions
    from azure.core.exceptions import ClientAuthenticationError

    from cloudft.cli.main import cloud_auth_error
    from cloudft.registry import Registry, RunRecord

    assert "aws sso login" in cloud_auth_error(botocore.exceptions.NoCredentialsError()).hint
    assert "az login" in cloud_auth_error(ClientAuthenticationError(message="no token\ndetails")).hint
    assert cloud_auth_error(ValueError("x")) is None
    proc = cloudft("init", str(tmp_path / "missing" / "x.yaml"), check=False)
    assert proc.returncode == 1 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr
    Registry().add(RunRecord(run_id="gone-1", name="gone", provider="local", status="failed",
                             run_dir=str(tmp_path / "gone"), meta={"stages": ["0-sft"]}))
    proc = cloudft("logs", "gone-1", check=False)
    assert proc.returncode == 1 and "has no log" in proc.stderr and "Traceback" not in proc.stderr
